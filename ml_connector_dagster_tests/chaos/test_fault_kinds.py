"""The fault kinds the chaos harness injects, as each simulator shows them over the real wire format.

Every fault is counted by kind in ``fault_counts`` (and ``GET /_sandbox/faults``), which is what the
chaos report's "faults injected, by kind" adds up.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import PreconditionFailed, RateLimiter
from ml_connector_dagster.core.oauth import ConsentRequired, MemoryTokenStore
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import DEMO_APP_SECRET, DEMO_CLIENT_ID, JiraSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.acumatica.client import ActionFailed, AcumaticaEntity
from ml_connector_dagster.systems.jira.client import REFRESH_TOKEN_KEY, JiraClient
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster_tests.acumatica_sandbox import in_process_client as acumatica_client
from ml_connector_dagster_tests.visma_sandbox import in_process_client as visma_client

GATEWAY = "http://api.jira.test"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "default_sleep", lambda seconds: None)


@pytest.fixture
def jira() -> Iterator[JiraSimulator]:
    simulator = JiraSimulator(seed=3, index_delay_s=0, seed_issues=0)
    yield simulator
    simulator.close()


def jira_client(sim: JiraSimulator) -> JiraClient:
    return JiraClient.connect_oauth(
        GATEWAY,
        GATEWAY,
        DEMO_CLIENT_ID,
        DEMO_APP_SECRET,
        MemoryTokenStore({REFRESH_TOKEN_KEY: sim.demo_refresh_token}),
        transport=InProcessTransport(sim.app),
        rate_limiter=RateLimiter(10_000, 10_000),
    )


def test_each_injected_fault_is_counted_by_kind_and_shown_with_the_plan() -> None:
    sim = VismaSimulator(seed=1, size=5, days=1)
    sim.set_faults(FaultPlan(seed=4, rate_limit_burst=2, error_rate=1, paths=[r"/v1/supplierinvoice"]))
    with httpx.Client(transport=InProcessTransport(sim.app), base_url="http://visma.test") as raw:
        answers = [raw.get("/v1/supplierinvoice").status_code for _ in range(4)]
        shown = raw.get("/_sandbox/faults").json()

    assert answers == [429, 429, 503, 503]
    assert dict(sim.fault_counts) == {"rate_limit_429": 2, "server_error_5xx": 2}
    assert shown["injected"] == {"rate_limit_429": 2, "server_error_5xx": 2}
    sim.close()


def test_a_revoked_refresh_token_is_refused_until_someone_consents_again(jira: JiraSimulator) -> None:
    jira_client(jira).close()  # the app holds a live grant
    jira.set_faults(FaultPlan(revoke_refresh_tokens=True))

    with pytest.raises(ConsentRequired, match="ml-connector auth jira"):
        jira_client(jira)
    assert jira.fault_counts["refresh_token_revoked"] == 1


def test_a_lagging_search_index_hides_new_issues_for_the_planned_delay(jira: JiraSimulator) -> None:
    jira.set_faults(FaultPlan(search_index_delay_s=30))
    with jira_client(jira) as client:
        result = client.bulk_create([{"fields": {"project": {"key": "FIN"}, "issuetype": {"name": "Task"},
                                                 "summary": "Lagging invoice"}}])  # fmt: skip
        (created,) = result.created
        assert list(client.search('project = FIN AND summary ~ "Lagging"', ["summary"])) == []
        jira.clock.advance(31)
        found = list(client.search('project = FIN AND summary ~ "Lagging"', ["summary"]))

    assert [issue["id"] for issue in found] == [created.id]
    assert jira.fault_counts["search_index_delay"] == 1


def test_a_conditional_put_meeting_a_concurrent_edit_answers_412_and_applies_nothing() -> None:
    sim = VismaSimulator(seed=2, size=5, days=1)
    number = sim.collections()["supplier_invoices"][0]["referenceNumber"]
    with visma_client(sim) as client:
        _, etag = client.get(VismaEntity.SUPPLIER_INVOICE, number)
        sim.set_faults(FaultPlan(etag_race_rate=1, methods=["PUT"]))
        with pytest.raises(PreconditionFailed):
            client.update(VismaEntity.SUPPLIER_INVOICE, number, {"note": {"value": "Checked"}}, etag)
        sim.clear_faults()
        current, newer = client.get(VismaEntity.SUPPLIER_INVOICE, number)

    assert newer != etag  # someone else's save landed first
    assert current.get("note") != "Checked"
    assert sim.fault_counts["etag_412_race"] == 1
    sim.close()


def test_an_interrupted_release_fails_and_leaves_the_bill_as_it_was() -> None:
    sim = AcumaticaSimulator(seed=0, size=12, days=1, action_duration_s=0)
    reference = sim.references("Bill", status="Balanced")[0]
    bill_id = sim.bill(reference)["id"]
    sim.set_faults(FaultPlan(action_interrupt_rate=1))
    with acumatica_client(sim) as client:
        location = client.invoke_action(AcumaticaEntity.BILL, "ReleaseBill", {"id": bill_id})
        with pytest.raises(ActionFailed, match="interrupted"):
            client.wait_for_action(location, timeout_s=5, interval_s=0.01, sleep=lambda _: None)

    assert sim.bill(reference)["Status"]["value"] == "Balanced"
    assert sim.fault_counts["action_interrupted"] == 1
    sim.close()
