"""Specification of the Asana client and resource, over the wire against the Asana simulator."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.config import AsanaSettings
from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import AuthenticationFailed, ClientError
from ml_connector_dagster.core.vault import opened_vault
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.asana.client import (
    AsanaClient,
    BatchInterrupted,
    HandshakeFailed,
    PremiumRequired,
)
from ml_connector_dagster.systems.asana.models import (
    BatchAction,
    CustomField,
    EnumOption,
    EnumOptionNotFound,
    custom_field_value,
    custom_field_values,
)
from ml_connector_dagster.systems.asana.resource import AsanaResource
from ml_connector_dagster.systems.asana.webhook import secret_name
from ml_connector_dagster_tests.asana_sandbox import (
    IN_PROCESS_URL,
    RECEIVER_URL,
    pat_client,
    raw_api,
    receiver,
    unlimited,
)


@pytest.fixture
def sim() -> Iterator[AsanaSimulator]:
    simulator = AsanaSimulator(seed=3)
    yield simulator
    simulator.close()


@pytest.fixture
def transport(sim: AsanaSimulator) -> Iterator[InProcessTransport]:
    in_process = InProcessTransport(sim.app)
    yield in_process
    in_process.close()


@pytest.fixture(autouse=True)
def slept(monkeypatch: pytest.MonkeyPatch, sim: AsanaSimulator) -> list[float]:
    """Waiting moves the simulator's clock instead of the test's."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        sim.clock.advance(seconds)

    monkeypatch.setattr(http, "default_sleep", sleep)
    return waits


@pytest.fixture
def client(sim: AsanaSimulator, transport: InProcessTransport) -> Iterator[AsanaClient]:
    with pat_client(sim, transport) as connected:
        yield connected


def requests_to(sim: AsanaSimulator, method: str, suffix: str) -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path.endswith(suffix)]


def draft(sim: AsanaSimulator, visma_id: str, **values: Any) -> dict[str, Any]:
    fields = {f.name: CustomField(gid=f.gid, name=f.name, resource_subtype=f.subtype,
                                  enum_options=[EnumOption(gid=o.gid, name=o.name, enabled=o.enabled) for o in f.options])
              for f in sim.tenant.fields.values()}
    return {"name": f"Purchase order {visma_id}", "projects": [sim.project_gid("Purchase orders")],
            "custom_fields": custom_field_values(fields, {"Visma ID": visma_id, **values})}


def visma_ids(sim: AsanaSimulator) -> list[str]:
    field = sim.field_gid("Visma ID")
    return sorted(t.custom[field] for t in sim.tenant.tasks.values() if field in t.custom)


# -- authentication -------------------------------------------------------------------------------


def test_a_pat_client_acts_as_the_demo_user(client: AsanaClient) -> None:
    assert client.me().email == "ingrid.berg@fjordlys.no"


def test_oauth_refreshes_with_a_form_body_and_keeps_its_refresh_token(sim: AsanaSimulator, transport: InProcessTransport) -> None:
    creds = sim.credentials()
    with AsanaClient.connect_oauth(IN_PROCESS_URL, creds["client_id"], creds["client_secret"], creds["refresh_token"],
                                   transport=transport, rate_limiter=unlimited()) as client:
        client.me()
        sim.set_faults(FaultPlan(expire_tokens=True))
        client.me()
    refreshes = requests_to(sim, "POST", "/-/oauth_token")
    assert len(refreshes) == 2
    assert all(r.headers["content-type"] == "application/x-www-form-urlencoded" for r in refreshes)
    assert refreshes[0].body == {"grant_type": "refresh_token", "client_id": creds["client_id"],
                                 "client_secret": "***", "refresh_token": "***"}


def test_a_wrong_pat_raises_authentication_failed_without_showing_it(sim: AsanaSimulator, transport: InProcessTransport) -> None:
    bad = "2/1/2:not-the-right-secret"
    with (AsanaClient.connect_pat(IN_PROCESS_URL, bad, transport=transport, rate_limiter=unlimited()) as client,
          pytest.raises(AuthenticationFailed) as raised):
        client.me()
    assert "Not Authorized" in str(raised.value) and bad not in str(raised.value) + repr(client)


# -- paging and errors ----------------------------------------------------------------------------


def test_project_tasks_follow_next_page_to_the_end(client: AsanaClient, sim: AsanaSimulator) -> None:
    client.create_tasks([draft(sim, f"PO{n:04d}") for n in range(230)])
    listed = list(client.project_tasks(sim.project_gid("Purchase orders"), ["name"]))
    assert len(listed) == len({t.gid for t in listed}) == 232
    assert len(requests_to(sim, "GET", "/tasks")) == 3


def test_an_expired_offset_restarts_the_listing_without_repeating_records(client: AsanaClient, sim: AsanaSimulator) -> None:
    client.create_tasks([draft(sim, f"PO{n:04d}") for n in range(150)])
    pages = client.project_tasks(sim.project_gid("Purchase orders"), ["name"])
    first = [next(pages) for _ in range(100)]
    sim.clock.advance(sim.pager.ttl_s + 1)
    rest = list(pages)
    assert len({t.gid for t in first + rest}) == len(first + rest) == 152


def test_asanas_error_message_reaches_the_exception(client: AsanaClient) -> None:
    with pytest.raises(ClientError, match="Not a recognized ID"):
        client.create_task({"name": "x", "projects": ["1"]})


def test_search_raises_premium_required_on_a_free_workspace(client: AsanaClient, sim: AsanaSimulator) -> None:
    with pytest.raises(PremiumRequired):
        client.search_tasks(sim.tenant.workspace_gid, text="PO")


def test_a_read_answered_429_is_retried_after_retry_after(client: AsanaClient, sim: AsanaSimulator,
                                                          slept: list[float]) -> None:
    sim.set_faults(FaultPlan(rate_limit_burst=1, retry_after_s=7))
    assert client.me().name == "Ingrid Berg"
    assert max(slept) >= 7


def test_a_create_answered_429_is_sent_again_once_allowed(client: AsanaClient, sim: AsanaSimulator,
                                                          slept: list[float]) -> None:
    sim.set_faults(FaultPlan(rate_limit_burst=1, retry_after_s=5, methods=["POST"]))
    client.create_task(draft(sim, "PO000041"))
    assert visma_ids(sim) == ["PO000041"] and len(requests_to(sim, "POST", "/tasks")) == 2
    assert sum(slept) == pytest.approx(5, abs=0.5)


# -- tasks, subtasks, custom fields ---------------------------------------------------------------


def test_a_task_is_written_and_read_with_typed_custom_fields(client: AsanaClient, sim: AsanaSimulator) -> None:
    task = client.create_task(draft(sim, "PO000042", Amount=Decimal("1250.50"), Currency="eur", **{"Due date": date(2026, 12, 1)}))
    values = {f.name: f.value for f in client.get_task(task.gid).custom_fields if f.value is not None}
    assert values == {"Visma ID": "PO000042", "Amount": 1250.5, "Currency": "EUR", "Due date": date(2026, 12, 1)}


def test_a_subtask_in_the_project_carries_the_projects_custom_fields(client: AsanaClient, sim: AsanaSimulator) -> None:
    parent = client.create_task(draft(sim, "PO000043"))
    line = client.create_subtask(parent.gid, {"name": "Line 1: Stålplater 3 mm", "projects": [sim.project_gid("Purchase orders")],
                                              "custom_fields": {sim.field_gid("Amount"): 800.0}})
    assert line.parent is not None and line.parent.gid == parent.gid
    assert [t.gid for t in client.subtasks(parent.gid)] == [line.gid]
    assert line.custom(sim.field_gid("Amount")).number_value == 800.0


def test_an_update_changes_only_the_fields_it_names(client: AsanaClient, sim: AsanaSimulator) -> None:
    task = client.create_task(draft(sim, "PO000044", Amount=10))
    updated = client.update_task(task.gid, {"custom_fields": {sim.field_gid("Amount"): 12.0}, "completed": True})
    assert (updated.text(sim.field_gid("Visma ID")), updated.custom(sim.field_gid("Amount")).number_value) == ("PO000044", 12.0)
    assert updated.completed is True


def test_tasks_by_external_id_lists_the_project_once(client: AsanaClient, sim: AsanaSimulator) -> None:
    client.create_tasks([draft(sim, f"PO{n:04d}") for n in range(5)])
    sim.requests.clear()
    found = client.tasks_by_external_id(sim.project_gid("Purchase orders"), sim.field_gid("Visma ID"))
    assert sorted(found) == [f"PO{n:04d}" for n in range(5)]
    assert [r.path.rsplit("/", 1)[-1] for r in sim.requests] == ["tasks"]


def test_tasks_by_external_id_keeps_the_oldest_of_two_duplicates(client: AsanaClient, sim: AsanaSimulator) -> None:
    first = client.create_task(draft(sim, "PO000045"))
    client.create_task(draft(sim, "PO000045"))
    found = client.tasks_by_external_id(sim.project_gid("Purchase orders"), sim.field_gid("Visma ID"))
    assert found["PO000045"].gid == first.gid


# -- enum options ---------------------------------------------------------------------------------


def test_ensure_enum_option_adds_a_missing_option_once(client: AsanaClient, sim: AsanaSimulator) -> None:
    field = sim.field_gid("GL account")
    first = client.ensure_enum_option(field, "7140 Reisekostnad")
    again = client.ensure_enum_option(field, "7140 reisekostnad ")
    assert first.gid == again.gid and len(requests_to(sim, "POST", "/enum_options")) == 1


def test_ensure_enum_option_enables_a_disabled_option_instead_of_adding_one(client: AsanaClient, sim: AsanaSimulator) -> None:
    option = sim.option_gid("Cost center", "110 Oslo")
    client.disable_enum_option(option)
    assert client.ensure_enum_option(sim.field_gid("Cost center"), "110 Oslo") == client.custom_field(
        sim.field_gid("Cost center")).option_named("110 Oslo")
    assert requests_to(sim, "POST", "/enum_options") == []


def test_a_renamed_option_shows_its_new_name_on_the_tasks_holding_it(client: AsanaClient, sim: AsanaSimulator) -> None:
    task = client.create_task(draft(sim, "PO000046", **{"Cost center": "120 Bergen"}))
    client.rename_enum_option(sim.option_gid("Cost center", "120 Bergen"), "120 Bergen og Vestland")
    assert client.get_task(task.gid).custom(sim.field_gid("Cost center")).value == "120 Bergen og Vestland"


def test_a_disabled_option_is_no_longer_offered_for_writes(client: AsanaClient, sim: AsanaSimulator) -> None:
    client.disable_enum_option(sim.option_gid("Review flag", "Disputed"))
    field = client.custom_field(sim.field_gid("Review flag"))
    with pytest.raises(EnumOptionNotFound):
        custom_field_value(field, "Disputed")


# -- batch ----------------------------------------------------------------------------------------


def test_batch_sends_ten_actions_per_request(client: AsanaClient, sim: AsanaSimulator) -> None:
    results = client.create_tasks([draft(sim, f"PO{n:04d}") for n in range(25)])
    assert [r.index for r in results] == list(range(25)) and all(r.status_code == 201 for r in results)
    assert [len(r.body["data"]["actions"]) for r in requests_to(sim, "POST", "/batch")] == [10, 10, 5]


def test_batch_results_map_back_to_each_actions_index(client: AsanaClient, sim: AsanaSimulator) -> None:
    drafts = [draft(sim, f"PO{n:04d}") for n in range(12)]
    drafts[3]["custom_fields"][sim.field_gid("Amount")] = "not a number"
    results = client.create_tasks(drafts)
    assert [r.index for r in results if not r.ok] == [3] and "Number value expected" in results[3].errors[0]
    assert [r.data["name"] for r in results if r.ok] == [d["name"] for i, d in enumerate(drafts) if i != 3]


def test_creates_refused_with_429_are_resent_after_retry_after(client: AsanaClient, sim: AsanaSimulator,
                                                               transport: InProcessTransport, slept: list[float]) -> None:
    with raw_api(transport, sim.credentials()["pat"]) as raw:
        for _ in range(145):
            raw.get("/users/me")
        results = client.create_tasks([draft(sim, f"PO{n:04d}") for n in range(10)])
    assert all(r.status_code == 201 for r in results) and slept
    assert visma_ids(sim) == [f"PO{n:04d}" for n in range(10)]


def test_a_create_answered_5xx_is_in_doubt_and_not_resent(client: AsanaClient, sim: AsanaSimulator) -> None:
    sim.set_faults(FaultPlan(error_rate=1.0, paths=["^/tasks$"], methods=["POST"]))
    results = client.create_tasks([draft(sim, "PO0001"), draft(sim, "PO0002")])
    assert [(r.status_code, r.in_doubt) for r in results] == [(500, True), (500, True)]
    assert len(requests_to(sim, "POST", "/batch")) == 1


def test_an_idempotent_action_answered_5xx_is_resent(client: AsanaClient, sim: AsanaSimulator) -> None:
    tasks = [client.create_task(draft(sim, f"PO{n:04d}")) for n in range(4)]
    sim.set_faults(FaultPlan(seed=4, error_rate=0.5, paths=["^/tasks/"], methods=["PUT"]))
    results = client.update_tasks({t.gid: {"completed": True} for t in tasks})
    assert all(r.ok for r in results.values()) and len(requests_to(sim, "POST", "/batch")) > 1


def test_a_lost_batch_answer_leaves_its_creates_in_doubt(client: AsanaClient, sim: AsanaSimulator) -> None:
    sim.set_faults(FaultPlan(timeout_after_rate=1.0, paths=["/batch$"]))
    with pytest.raises(BatchInterrupted) as raised:
        client.batch([BatchAction(method="post", relative_path="/tasks", data=draft(sim, "PO1")),
                      BatchAction(method="get", relative_path="/users/me")])
    assert (raised.value.in_doubt, raised.value.not_sent, raised.value.results) == ([0], [1], [])


def test_ensure_tasks_looks_creates_in_doubt_up_before_sending_them_again(client: AsanaClient, sim: AsanaSimulator) -> None:
    sim.set_faults(FaultPlan(seed=8, timeout_after_rate=0.4, error_rate=0.2, paths=["^/tasks$"], methods=["POST"]))
    drafts = {f"PO{n:04d}": draft(sim, f"PO{n:04d}") for n in range(12)}
    outcome = client.ensure_tasks(sim.project_gid("Purchase orders"), sim.field_gid("Visma ID"), drafts)
    assert visma_ids(sim) == sorted(drafts) and sorted(outcome) == sorted(drafts)
    assert outcome.failed == {} and len(requests_to(sim, "GET", "/tasks")) > 1


def test_ensure_tasks_creates_nothing_for_ids_already_there(client: AsanaClient, sim: AsanaSimulator) -> None:
    client.create_task(draft(sim, "PO0001"))
    outcome = client.ensure_tasks(sim.project_gid("Purchase orders"), sim.field_gid("Visma ID"),
                                  {"PO0001": draft(sim, "PO0001"), "PO0002": draft(sim, "PO0002")})
    assert (list(outcome.existing), list(outcome.created)) == (["PO0001"], ["PO0002"])
    assert visma_ids(sim) == ["PO0001", "PO0002"]


# -- project templates ----------------------------------------------------------------------------


def test_instantiating_a_template_waits_for_its_job(client: AsanaClient, sim: AsanaSimulator) -> None:
    template = client.project_templates(sim.tenant.workspace_gid)[0]
    project = client.instantiate_project(template.gid, "PO 4711 Nordic Steel Oy", start_on=date(2026, 12, 1))
    names = [t.name for t in client.project_tasks(project.gid, ["name"])]
    assert names == ["Confirm order with supplier", "Goods received", "Match supplier invoice", "Approve payment"]


# -- webhooks -------------------------------------------------------------------------------------


def hooked_sim(hooks: Any) -> AsanaSimulator:
    return AsanaSimulator(seed=3, webhook_transport=hooks.transport)


def test_register_webhook_completes_the_handshake_through_the_receiver(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = hooked_sim(hooks)
        try:
            with InProcessTransport(sim.app) as transport, pat_client(sim, transport) as client:
                webhook = client.register_webhook(sim.project_gid("Purchase orders"), RECEIVER_URL, hooks.ledger)
        finally:
            sim.close()
        assert webhook.active and webhook.hook and hooks.vault.get(secret_name(webhook.hook))
        assert hooks.ledger.get_state(f"asana.webhook.handshake.{webhook.hook}") is None


def test_a_failed_handshake_raises_and_disarms_the_expectation(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = AsanaSimulator(webhook_transport=httpx.MockTransport(lambda r: httpx.Response(500)))
        try:
            with InProcessTransport(sim.app) as transport, pat_client(sim, transport) as client:
                with pytest.raises(HandshakeFailed):
                    client.register_webhook(sim.project_gid("Purchase orders"), RECEIVER_URL, hooks.ledger)
                target = requests_to(sim, "POST", "/webhooks")[0].body["data"]["target"]
        finally:
            sim.close()
        hook = target.rsplit("hook=", 1)[1]
        assert hooks.ledger.get_state(f"asana.webhook.handshake.{hook}") is None


def test_ensure_webhook_registers_once_across_restarts(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = hooked_sim(hooks)
        try:
            with InProcessTransport(sim.app) as transport:
                ids = []
                for _ in range(2):
                    with pat_client(sim, transport) as client:
                        ids.append(client.ensure_webhook(sim.tenant.workspace_gid, sim.project_gid("Purchase orders"),
                                                         RECEIVER_URL, hooks.ledger, hooks.vault).gid)
        finally:
            sim.close()
        assert ids[0] == ids[1] and list(sim.tenant.webhooks) == [ids[0]]


def test_ensure_webhook_replaces_one_whose_secret_was_lost(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = hooked_sim(hooks)
        try:
            with InProcessTransport(sim.app) as transport, pat_client(sim, transport) as client:
                project = sim.project_gid("Purchase orders")
                lost = client.register_webhook(project, RECEIVER_URL, hooks.ledger)
                hooks.vault.delete(secret_name(lost.hook or ""))
                kept = client.ensure_webhook(sim.tenant.workspace_gid, project, RECEIVER_URL, hooks.ledger, hooks.vault)
        finally:
            sim.close()
        assert kept.gid != lost.gid and list(sim.tenant.webhooks) == [kept.gid]


def test_a_change_in_asana_reaches_the_inbox_through_a_registered_webhook(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = hooked_sim(hooks)
        try:
            with InProcessTransport(sim.app) as transport, pat_client(sim, transport) as client:
                client.register_webhook(sim.project_gid("Purchase orders"), RECEIVER_URL, hooks.ledger)
                task = client.create_task(draft(sim, "PO0007"))
                sim.edit_task(task.gid, custom_fields={sim.field_gid("Review flag"): sim.option_gid("Review flag", "Approved")})
                assert sim.flush_webhooks()
        finally:
            sim.close()
        changes = [e.payload for e in hooks.inbox()]
        assert [c["action"] for c in changes] == ["added", "changed"]
        assert changes[1]["change"]["field"] == "custom_fields"


# -- the resource ---------------------------------------------------------------------------------


def test_the_resource_reads_every_secret_from_the_environment() -> None:
    pat = AsanaResource.from_settings(AsanaSettings(base_url="http://127.0.0.1:8805"))
    oauth = AsanaResource.from_settings(AsanaSettings(base_url="http://127.0.0.1:8805", auth="oauth"),
                                        environ={"ASANA_REFRESH_TOKEN": "set"})
    assert pat._convert_to_config_dictionary()["pat"] == {"env": "ASANA_PAT"}
    assert oauth._convert_to_config_dictionary()["refresh_token"] == {"env": "ASANA_REFRESH_TOKEN"}
    assert oauth._convert_to_config_dictionary()["client_secret"] == {"env": "ASANA_CLIENT_SECRET"}


def test_without_the_variable_the_oauth_resource_wires_no_refresh_token() -> None:
    oauth = AsanaResource.from_settings(AsanaSettings(base_url="http://127.0.0.1:8805", auth="oauth"), environ={})
    assert "refresh_token" not in oauth._convert_to_config_dictionary()


@pytest.fixture
def oauth_resource(sim: AsanaSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsanaResource:
    """An OAuth resource on the simulator's app, its Vault in a fresh sandbox ledger under ``tmp_path``."""
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    creds = sim.credentials()
    return AsanaResource(auth="oauth", sandbox=True, base_url=IN_PROCESS_URL, client_id=creds["client_id"],
                         client_secret=creds["client_secret"], db_url=f"sqlite:///{tmp_path / 'ledger.db'}",
                         rate_per_s=1000, burst=1000)


def store_refresh_token(resource: AsanaResource, home: Path, token: str) -> None:
    with opened_vault(resource.db_url, sandbox=True, home=home) as vault:
        vault.put(resource.vault_key, token)


def test_an_oauth_resource_uses_the_refresh_token_in_the_vault_over_the_environments(
    sim: AsanaSimulator, transport: InProcessTransport, oauth_resource: AsanaResource, tmp_path: Path
) -> None:
    consented = sim.issue_token("refresh", sim.tenant.me, None, scopes=("default",), client_id=sim.client_id).value
    store_refresh_token(oauth_resource, tmp_path, consented)
    sim.revoke_token(sim.demo_refresh_token)
    resource = oauth_resource.model_copy(update={"refresh_token": sim.demo_refresh_token})
    with resource.client(transport=transport) as client:
        assert client.me().name == "Ingrid Berg"
    assert consented not in repr(resource)


def test_an_oauth_resource_falls_back_to_the_environments_refresh_token(
    sim: AsanaSimulator, transport: InProcessTransport, oauth_resource: AsanaResource
) -> None:
    resource = oauth_resource.model_copy(update={"refresh_token": sim.demo_refresh_token})
    with resource.client(transport=transport) as client:
        assert client.me().name == "Ingrid Berg"


def test_an_environment_refresh_token_needs_no_vault_key_outside_the_sandbox(
    sim: AsanaSimulator, transport: InProcessTransport, oauth_resource: AsanaResource
) -> None:
    resource = oauth_resource.model_copy(update={"sandbox": False, "refresh_token": sim.demo_refresh_token})
    with resource.client(transport=transport) as client:
        assert client.me().name == "Ingrid Berg"


def test_an_oauth_resource_without_any_refresh_token_says_to_run_auth_asana(oauth_resource: AsanaResource) -> None:
    with pytest.raises(ValueError, match="run `ml-connector auth asana`"), oauth_resource.client():
        pass


def test_the_resource_connects_with_the_sandbox_pat(sim: AsanaSimulator, transport: InProcessTransport,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASANA_PAT", sim.credentials()["pat"])
    resource = AsanaResource.from_settings(AsanaSettings(base_url=IN_PROCESS_URL, rate_per_s=1000, burst=1000))
    with dg.build_resources({"asana": resource}) as built, built.asana.client(transport=transport) as client:
        assert client.me().name == "Ingrid Berg"
        assert sim.credentials()["pat"] not in repr(built.asana) + repr(client)


# -- custom field values (properties) -------------------------------------------------------------

NUMBER = CustomField(gid="1", name="Amount", resource_subtype="number")
DATE = CustomField(gid="2", name="Due date", resource_subtype="date")
TEXT = CustomField(gid="3", name="Vendor", resource_subtype="text")


@given(st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
                 st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**9, max_value=10**9)))
def test_a_number_is_sent_as_a_json_number(value: int | float | Decimal) -> None:
    sent = custom_field_value(NUMBER, value)
    assert isinstance(sent, float) and math.isclose(sent, float(value)) and json.loads(json.dumps(sent)) == sent


@given(st.dates())
def test_a_date_or_datetime_is_sent_as_its_iso_day(day: date) -> None:
    moment = datetime(day.year, day.month, day.day, 23, 59)
    assert custom_field_value(DATE, day) == custom_field_value(DATE, moment) == day.isoformat()


@given(st.text(max_size=1024))
def test_text_up_to_1024_characters_is_sent_as_it_is(text: str) -> None:
    assert custom_field_value(TEXT, text) == text


def test_text_over_1024_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="1024"):
        custom_field_value(TEXT, "x" * 1025)


@given(st.sampled_from(["NOK", "SEK", "EUR"]), st.sampled_from([str.lower, str.upper, lambda s: f"  {s} "]))
def test_an_enum_name_resolves_to_its_enabled_option_whatever_the_case(name: str, spell: Any) -> None:
    options = [EnumOption(gid=f"9{n}", name=n_, enabled=True) for n, n_ in enumerate(["NOK", "SEK", "EUR"])]
    currency = CustomField(gid="4", name="Currency", resource_subtype="enum", enum_options=options)
    assert custom_field_value(currency, spell(name)) == next(o.gid for o in options if o.name == name)


@given(st.booleans() | st.just(math.inf) | st.text(min_size=1))
def test_a_number_field_refuses_what_is_not_a_finite_number(value: Any) -> None:
    with pytest.raises(ValueError):
        custom_field_value(NUMBER, value)
