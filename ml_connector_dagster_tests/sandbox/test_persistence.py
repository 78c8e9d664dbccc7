"""A sandbox simulator is a tenant that persists: saved, then restored, it is the same site or company."""

from __future__ import annotations

import logging
import pickle
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector_dagster.sandbox import launch
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.jira import (
    CLOUD_ID,
    DEMO_API_TOKEN,
    DEMO_APP_SECRET,
    DEMO_CLIENT_ID,
    DEMO_EMAIL,
    JiraSimulator,
)
from ml_connector_dagster.sandbox.launch import save_simulator, serve_sandbox, state_file
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import (
    DEMO_CLIENT_ID as VISMA_CLIENT_ID,
)
from ml_connector_dagster.sandbox.visma import (
    DEMO_CLIENT_SECRET as VISMA_CLIENT_SECRET,
)
from ml_connector_dagster.sandbox.visma import (
    DEMO_SCOPE as VISMA_SCOPE,
)
from ml_connector_dagster.sandbox.visma import (
    DEMO_TENANT_ID as VISMA_TENANT_ID,
)
from ml_connector_dagster.sandbox.visma import VismaSimulator

API = f"/ex/jira/{CLOUD_ID}/rest/api/3"
RECEIVER = "https://connector.example/hooks/jira"
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
REUSE_WINDOW_S = 600


class Receiver:
    """A webhook endpoint that records what it got."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return httpx.Response(200)


class Tenants:
    """Builds simulators and closes every one of them at the end of the test."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self._built: list[Simulator] = []

    def jira(self) -> JiraSimulator:
        return self._keep(JiraSimulator(seed_issues=2, webhook_transport=httpx.MockTransport(self.receiver)))

    def visma(self, *, size: int = 60, start: datetime = START) -> VismaSimulator:
        return self._keep(VismaSimulator(seed=7, size=size, start=start))

    def _keep(self, simulator: Any) -> Any:
        self._built.append(simulator)
        return simulator

    def close(self) -> None:
        for simulator in self._built:
            simulator.close()


@pytest.fixture
def tenants() -> Iterator[Tenants]:
    built = Tenants()
    yield built
    built.close()


def client(simulator: Simulator) -> httpx.Client:
    return httpx.Client(transport=InProcessTransport(simulator.app), base_url="http://sandbox.test")


def sandbox_state(simulator: Simulator) -> dict[str, Any]:
    with client(simulator) as http:
        return http.get("/_sandbox/state").json()


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/oauth/token", json={
        "grant_type": "refresh_token", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_APP_SECRET,
        "refresh_token": refresh_token,
    })


def busy_jira_site(sim: JiraSimulator) -> str:
    """Create an issue, comment on it, register a webhook and rotate the demo refresh token.

    Returns the rotated refresh token; the demo one is then past its reuse window.
    """
    with client(sim) as http:
        rotated = refresh(http, sim.credentials()["refresh_token"]).json()
        http.headers["Authorization"] = f"Bearer {rotated['access_token']}"
        registered = http.post(f"{API}/webhook", json={
            "url": RECEIVER, "webhooks": [{"events": ["jira:issue_created"], "jqlFilter": "project = FIN"}],
        })
        assert registered.status_code == 200, registered.text
        created = http.post(f"{API}/issue", json={"fields": {
            "project": {"key": "PROC"}, "issuetype": {"name": "Task"}, "summary": "Invoice 000012 on hold",
        }})
        assert created.status_code == 201, created.text
    sim.add_comment(created.json()["key"], "Released by Kari")
    sim.clock.advance(REUSE_WINDOW_S + 60)
    return rotated["refresh_token"]


def restored_jira(tenants: Tenants, saved: JiraSimulator, path: Path) -> JiraSimulator:
    saved.save_state(path)
    sim = tenants.jira()
    assert sim.restore_state(path)
    return sim


# -- Jira ---------------------------------------------------------------------------------------


def test_a_restored_jira_site_shows_the_same_issues_comments_and_webhooks(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.jira()
    busy_jira_site(original)
    restored = restored_jira(tenants, original, tmp_path / "jira.state")
    assert sandbox_state(restored) == sandbox_state(original)


def test_the_rotated_refresh_token_works_after_a_restore(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.jira()
    rotated = busy_jira_site(original)
    restored = restored_jira(tenants, original, tmp_path / "jira.state")
    with client(restored) as http:
        assert refresh(http, rotated).status_code == 200


def test_the_original_refresh_token_stays_dead_after_a_restore(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.jira()
    busy_jira_site(original)
    restored = restored_jira(tenants, original, tmp_path / "jira.state")
    with client(restored) as http:
        response = refresh(http, restored.credentials()["refresh_token"])
    assert (response.status_code, response.json()["error"]) == (403, "invalid_grant")


def test_a_restored_site_numbers_new_issues_after_the_saved_ones(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.jira()
    busy_jira_site(original)
    restored = restored_jira(tenants, original, tmp_path / "jira.state")
    auth = httpx.BasicAuth(DEMO_EMAIL, DEMO_API_TOKEN)
    with client(restored) as http:
        created = http.post("/rest/api/3/issue", auth=auth, json={"fields": {
            "project": {"key": "PROC"}, "issuetype": {"name": "Task"}, "summary": "Second invoice",
        }}).json()
    assert created["key"] == "PROC-2"  # PROC-1 was created before the restart
    assert int(created["id"]) > max(int(issue["id"]) for issue in sandbox_state(original)["issues"])


def test_a_restored_webhook_still_delivers(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.jira()
    busy_jira_site(original)
    restored = restored_jira(tenants, original, tmp_path / "jira.state")
    restored.flush_webhooks()
    tenants.receiver.requests.clear()
    auth = httpx.BasicAuth(DEMO_EMAIL, DEMO_API_TOKEN)
    with client(restored) as http:
        http.post("/rest/api/3/issue", auth=auth, json={"fields": {
            "project": {"key": "FIN"}, "issuetype": {"name": "Task"}, "summary": "Matches the webhook filter",
        }})
    assert restored.flush_webhooks()
    assert [str(r.url) for r in tenants.receiver.requests] == [RECEIVER]


# -- Visma --------------------------------------------------------------------------------------


def busy_visma_company(sim: VismaSimulator) -> None:
    sim.clock.advance(90)
    sim.update_supplier_invoice("000003", description="Approved by Kari", status="Closed")
    sim.create_supplier_invoice(supplier_number="10001", description="Frakt november")


def test_a_restored_visma_company_is_identical_even_when_restored_days_later(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.visma()
    busy_visma_company(original)
    original.save_state(tmp_path / "visma.state")
    later = tenants.visma(start=START + timedelta(days=3))
    assert later.restore_state(tmp_path / "visma.state")
    assert sandbox_state(later) == sandbox_state(original)


def test_a_restored_visma_company_numbers_new_records_after_the_saved_ones(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.visma()
    busy_visma_company(original)
    original.save_state(tmp_path / "visma.state")
    restored = tenants.visma(start=START + timedelta(hours=1))
    restored.restore_state(tmp_path / "visma.state")
    created = restored.create_supplier_invoice(supplier_number="10002", description="After the restart")
    assert created["referenceNumber"] == "000062"  # 60 generated, 000061 created before the restart


def test_a_restored_visma_company_still_accepts_its_api_calls(tenants: Tenants, tmp_path: Path) -> None:
    original = tenants.visma()
    busy_visma_company(original)
    original.save_state(tmp_path / "visma.state")
    restored = tenants.visma()
    restored.restore_state(tmp_path / "visma.state")
    with client(restored) as http:
        token = http.post("/connect/token", data={
            "grant_type": "client_credentials", "client_id": VISMA_CLIENT_ID, "client_secret": VISMA_CLIENT_SECRET,
            "scope": VISMA_SCOPE, "tenant_id": VISMA_TENANT_ID,
        }).json()["access_token"]
        response = http.get("/v1/supplierInvoice/000003", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.json()["description"]) == (200, "Approved by Kari")


def test_a_company_saved_with_another_size_starts_fresh_with_a_warning(
    tenants: Tenants, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = tenants.visma(size=60)
    busy_visma_company(original)
    original.save_state(tmp_path / "visma.state")
    other = tenants.visma(size=80)
    fresh = sandbox_state(other)
    with caplog.at_level(logging.WARNING):
        assert not other.restore_state(tmp_path / "visma.state")
    assert sandbox_state(other) == fresh
    assert "other settings (size)" in caplog.text


def test_a_corrupt_state_file_starts_fresh_with_a_warning(
    tenants: Tenants, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "visma.state"
    path.write_bytes(b"\x80\x05not a pickle at all")
    sim = tenants.visma()
    fresh = sandbox_state(sim)
    with caplog.at_level(logging.WARNING):
        assert not sim.restore_state(path)
    assert sandbox_state(sim) == fresh
    assert "unreadable" in caplog.text


def test_a_state_file_of_an_older_state_version_starts_fresh(
    tenants: Tenants, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants.visma().save_state(tmp_path / "visma.state")
    monkeypatch.setattr(VismaSimulator, "state_version", VismaSimulator.state_version + 1)
    assert not tenants.visma().restore_state(tmp_path / "visma.state")


def test_a_state_that_does_not_fit_leaves_the_tenant_as_it_was(tenants: Tenants, tmp_path: Path) -> None:
    path = tmp_path / "visma.state"
    original = tenants.visma()
    busy_visma_company(original)
    original.save_state(path)
    envelope = pickle.loads(path.read_bytes())
    envelope["state"]["table_edits"] = {}  # applied after data_anchor: the restore must undo that
    path.write_bytes(pickle.dumps(envelope))
    sim = tenants.visma(start=START + timedelta(days=1))
    fresh = sandbox_state(sim)
    assert not sim.restore_state(path)
    assert sandbox_state(sim) == fresh


def test_a_missing_state_file_means_a_fresh_tenant(tenants: Tenants, tmp_path: Path) -> None:
    assert not tenants.jira().restore_state(tmp_path / "jira.state")


def test_the_state_file_is_private_and_leaves_no_temporary_files(tenants: Tenants, tmp_path: Path) -> None:
    path = tmp_path / "sandbox" / "jira.state"
    sim = tenants.jira()
    sim.save_state(path)
    sim.save_state(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jira.state"]


# -- serve_sandbox ------------------------------------------------------------------------------


def served_state(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_sandbox/state", timeout=10).json()


def create_over_the_network(urls: dict[str, str]) -> None:
    created = httpx.post(f"{urls['jira']}/rest/api/3/issue", auth=(DEMO_EMAIL, DEMO_API_TOKEN), timeout=10, json={
        "fields": {"project": {"key": "FIN"}, "issuetype": {"name": "Task"}, "summary": "Served and saved"},
    })
    assert created.status_code == 201, created.text
    token = httpx.post(f"{urls['visma']}/connect/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": VISMA_CLIENT_ID, "client_secret": VISMA_CLIENT_SECRET,
        "scope": VISMA_SCOPE, "tenant_id": VISMA_TENANT_ID,
    }).json()["access_token"]
    edited = httpx.put(f"{urls['visma']}/v1/supplierInvoice/000004", timeout=10, json={"hold": {"value": True}},
                       headers={"Authorization": f"Bearer {token}"})
    assert edited.status_code == 204, edited.text


def test_serve_sandbox_saves_on_stop_and_restores_on_the_next_start(tmp_path: Path) -> None:
    ports = {"visma": 0, "jira": 0}
    with serve_sandbox(["visma", "jira"], ports=ports, state_dir=tmp_path, size=40) as urls:
        create_over_the_network(urls)
        before = {name: served_state(url) for name, url in urls.items()}
    with serve_sandbox(["visma", "jira"], ports=ports, state_dir=tmp_path, size=40) as urls:
        after = {name: served_state(url) for name, url in urls.items()}
    assert after == before


def test_serve_sandbox_saves_periodically_while_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "AUTOSAVE_INTERVAL_S", 0.05)
    with serve_sandbox(["jira"], ports={"jira": 0}, state_dir=tmp_path):
        deadline = time.monotonic() + 5
        while not state_file(tmp_path, "jira").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state_file(tmp_path, "jira").exists()


def test_a_failed_save_is_logged_not_raised(
    tenants: Tenants, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING):
        assert not save_simulator(tenants.jira(), blocked)
    assert "could not save" in caplog.text
