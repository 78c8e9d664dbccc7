"""The demo as an operator sees it: `dagster dev` in a real (headless) Chromium.

One demo stack for the module (see :mod:`.demo_stack`): Visma and Jira simulators, the webhook
receiver and `dagster dev` on free ports. Once a poll sensor's first run has succeeded, a browser
walks the asset graph, reads a run's log and the sensors, launches a partition backfill from an
asset's page, and saves what it saw to docs/images/ for the README (``ML_CONNECTOR_SCREENSHOTS``
names another folder).

Chromium is Debian's (`apt-get install chromium`), driven by Playwright; `playwright install` is
never needed. Without it the test skips, except under CI, where it fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .demo_stack import PROJECT_ROOT, DemoStack, running_demo
from .webserver_api import (
    active_runs,
    backfill,
    mark_welcome_seen,
    sensor_cursors,
    sensor_runs,
    upstream_keys,
    wait_for,
)

# Generous: on a busy 2-CPU machine every run pays seconds of process start before it works.
pytestmark = [pytest.mark.ui, pytest.mark.timeout(360)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("ML_CONNECTOR_SCREENSHOTS", PROJECT_ROOT / "docs" / "images"))
UI_TIMEOUT_MS = 45_000
VIEWPORT = {"width": 1280, "height": 960}
SENSOR = "visma_supplier_invoices_poll"
VISMA_SOURCES = ("supplier_invoices", "purchase_orders", "customer_invoices", "payments", "supplier_payments",
                 "gl_transactions")
POLL_SENSORS = tuple(f"visma_{source}_poll" for source in VISMA_SOURCES)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def demo(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The stack, once a poll sensor's first run has succeeded: records are flowing with no clicks."""
    with pytest.MonkeyPatch.context() as monkeypatch, running_demo(tmp_path_factory.mktemp("demo"), monkeypatch) as stack:
        try:
            wait_for("a successful run requested by a poll sensor", lambda: _succeeded_runs(stack, *POLL_SENSORS), 120)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{stack.dagster_log_tail()}")
        mark_welcome_seen(stack.ui_url)
        yield stack


@pytest.fixture(scope="module")
def page(chromium: Path, demo: DemoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(chromium), headless=True,
            args=CHROMIUM_ARGS, viewport=VIEWPORT,
        )  # fmt: skip
        try:
            page = context.new_page()
            # The webserver shares two CPUs with `dagster dev`'s runs: allow it time to answer.
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
        finally:
            context.close()


def _succeeded_runs(demo: DemoStack, *sensors: str) -> list[str]:
    return [run["runId"] for sensor in sensors for run in sensor_runs(demo.ui_url, sensor) if run["status"] == "SUCCESS"]


def screenshot(page: Page, name: str, *, height: int | None = None) -> None:
    """Save the page as docs/images/``name``; ``height`` crops a page that is mostly empty below."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
    page.screenshot(path=str(SCREENSHOTS / name), clip=clip)


def test_the_asset_graph_shows_the_visma_sources_feeding_the_jira_issues(page: Page, demo: DemoStack) -> None:
    page.goto(f"{demo.ui_url}/asset-groups")
    expect(page.get_by_text("visma_jira", exact=True).first).to_be_visible()
    page.keyboard.press("Alt+e")  # the graph menu's "Expand all groups" (kept for the next page)
    page.goto(f"{demo.ui_url}/asset-groups~{quote('+group:visma_jira', safe='')}/")  # the flow and its upstream
    expect(page.get_by_text("visma_invoice_issues", exact=True)).to_be_visible()
    page.get_by_text("Hide navigation").click()
    page.get_by_role("button", name="panel_show_right").click()
    page.get_by_role("button", name="zoom_out").click()
    for name in ("supplier_invoices", "purchase_orders", "supplier_payments", "gl_transactions",
                 "visma_invoice_issues", "visma_purchase_order_issues", "webhook_registration"):
        expect(page.get_by_text(name, exact=True)).to_be_in_viewport()
    expect(page.get_by_text("Loading...")).to_have_count(0)
    screenshot(page, "asset-graph.png")
    upstream = upstream_keys(demo.ui_url)
    assert "visma/supplier_invoices" in upstream["jira/visma_invoice_issues"]
    assert "visma/purchase_orders" in upstream["jira/visma_purchase_order_issues"]


def test_a_sensor_run_log_shows_the_invoices_landed_and_their_issues_created(page: Page, demo: DemoStack) -> None:
    run_id = wait_for(f"a successful run of {SENSOR}", lambda: _succeeded_runs(demo, SENSOR), 120)[-1]
    page.goto(f"{demo.ui_url}/runs/{run_id}?logs={quote('type:ASSET_MATERIALIZATION', safe='')}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    # The materializations' own lines (the run's header also names its checks "... on visma / supplier_invoices").
    expect(page.get_by_text("Materialized value visma supplier_invoices")).to_be_visible()
    expect(page.get_by_text("Materialized value jira visma_invoice_issues")).to_be_visible()
    for count in ("read", "inserted", "created"):
        expect(page.get_by_text(count, exact=True).first).to_be_visible()
    screenshot(page, "run-log.png")


def test_the_sensors_are_listed_running_with_their_cursors(page: Page, demo: DemoStack) -> None:
    page.goto(f"{demo.ui_url}/automation")
    for name in (*POLL_SENSORS, "inbox_sensor", "run_failure_alerts", "jira_webhook_refresh_schedule"):
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    cursors = sensor_cursors(demo.ui_url)
    assert all(cursors[name] for name in POLL_SENSORS), cursors
    page.goto(f"{demo.ui_url}/locations/ml_connector/sensors/{SENSOR}")
    expect(page.get_by_text("Cursor", exact=True).first).to_be_visible()
    expect(page.get_by_text(cursors[SENSOR], exact=True).first).to_be_visible()
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()
    expect(page.get_by_text("View logs").first).to_be_visible()  # the tick table has rendered
    screenshot(page, "sensors.png")


def _finished_backfill(demo: DemoStack, backfill_id: str) -> dict[str, object] | None:
    state = backfill(demo.ui_url, backfill_id)
    return None if state["status"] in ("REQUESTED", "CANCELING") else state


def test_a_partition_backfill_launched_from_the_asset_page_succeeds(page: Page, demo: DemoStack) -> None:
    today = datetime.now(UTC).date()
    days = f"[{today - timedelta(days=1)}...{today}]"
    # The sensors' first runs wrote these days' issues: the backfill re-plans them and finds nothing to do.
    wait_for("the sensors' first runs to finish", lambda: not active_runs(demo.ui_url), 150)
    page.goto(f"{demo.ui_url}/assets/jira/visma_invoice_issues?view=partitions")
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    partitions = dialog.get_by_placeholder("No matching partitions")
    partitions.fill(days)
    partitions.press("Enter")
    expect(dialog.get_by_text("2 partitions", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill \w+"))
    backfill_id = toast.inner_text().split()[-1]

    finished = wait_for(f"backfill {backfill_id}", lambda: _finished_backfill(demo, backfill_id), 150)
    assert finished["status"] == "COMPLETED_SUCCESS", finished
    assert sorted(finished["partitionNames"]) == [str(today - timedelta(days=1)), str(today)]
    assert finished["runs"] and {run["status"] for run in finished["runs"]} == {"SUCCESS"}
    page.goto(f"{demo.ui_url}/runs/b/{backfill_id}")
    expect(page.get_by_text("100% completed")).to_be_visible()
    expect(page.get_by_text("jira / visma_invoice_issues").first).to_be_visible()
    screenshot(page, "backfill.png", height=320)
