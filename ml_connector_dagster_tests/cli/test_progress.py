"""Progress bars of long CLI work: on a terminal's stderr only, never in stdout's tables, off with
--no-progress or ML_CONNECTOR_NO_PROGRESS."""

# No ``from __future__ import annotations`` here: Dagster reads the stand-in assets' annotations.
import io
import re
from collections.abc import Iterator

import dagster as dg
import pytest

from ml_connector_dagster import progress
from ml_connector_dagster.progress import NO_PROGRESS_ENV, configure_progress, progress_bar, progress_enabled
from ml_connector_dagster.sandbox.launch import serve_sandbox
from ml_connector_dagster.sync import run_sync

from .conftest import closed_port_url

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")


class Terminal(io.StringIO):
    """What a person's terminal looks like to the process: a TTY."""

    def isatty(self) -> bool:
        return True


@dg.asset(key=["visma", "gl_accounts"])
def accounts() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"read": 3})


@dg.asset(key=["visma", "supplier_invoices"], partitions_def=DAYS)
def invoices() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"read": 5, "inserted": 5})


@dg.asset(key=["jira", "visma_invoice_issues"], partitions_def=DAYS, deps=[invoices])
def issues() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"created": 5})


DEFS = dg.Definitions(assets=[accounts, invoices, issues])


@pytest.fixture(autouse=True)
def progress_as_a_command_starts_it(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(NO_PROGRESS_ENV, raising=False)
    configure_progress(enabled=True)
    yield
    configure_progress(enabled=True)


def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """Make stderr a terminal (in the test's body: pytest's capture resets sys.stderr after fixtures)."""
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    return screen


def test_no_bar_is_drawn_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress_enabled()
    assert list(progress_bar(range(3), desc="work")) == [0, 1, 2]


def test_a_bar_is_drawn_on_a_terminals_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    for _ in progress_bar(range(3), desc="work", unit="job"):
        pass
    assert re.search(r"work: .*0/3", screen.getvalue())


def test_no_progress_switches_the_bars_off(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    configure_progress(enabled=False)
    list(progress_bar(range(3), desc="work"))
    assert screen.getvalue() == ""


def test_the_environment_switches_the_bars_off_for_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal(monkeypatch)
    assert progress_enabled()
    monkeypatch.setenv(NO_PROGRESS_ENV, "1")
    assert not progress_enabled()


def test_sync_counts_its_steps_on_stderr_and_leaves_stdout_to_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    screen = terminal(monkeypatch)
    report = run_sync("2026-03-01", defs=DEFS, instance=dg.DagsterInstance.ephemeral())
    assert report.success and len(report.outcomes) == 3
    drawn = screen.getvalue()
    assert re.search(r"sync: .*\d/3 ", drawn), drawn  # three steps: the accounts, then invoices and issues
    assert capsys.readouterr().out == ""


def test_building_the_sandbox_tenants_shows_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    port = int(closed_port_url().rsplit(":", 1)[1])
    with serve_sandbox(["monday"], ports={"monday": port}, reuse_running=False) as urls:
        assert urls["monday"].endswith(f":{port}")
    assert re.search(r"sandbox: .*0/1", screen.getvalue())


def test_a_step_count_counts_the_ops_of_graph_backed_assets() -> None:
    @dg.op
    def fetch() -> int:
        return 1

    @dg.op
    def push(value: int) -> int:
        return value

    @dg.graph_asset
    def pushed() -> int:
        return push(fetch())

    job = dg.Definitions(assets=[pushed, accounts]).resolve_implicit_global_asset_job_def()
    assert progress.step_count(job) == 3
