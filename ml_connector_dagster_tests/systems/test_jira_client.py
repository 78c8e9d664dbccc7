"""Specification of the Jira client and resource, over the wire against the Jira simulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import AuthenticationFailed, ClientError, RateLimiter, TransportFailure
from ml_connector_dagster.core.oauth import MemoryTokenStore, TokenStore
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.core.vault import metadata as vault_metadata
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import (
    CLOUD_ID,
    DEMO_API_TOKEN,
    DEMO_APP_SECRET,
    DEMO_CLIENT_ID,
    DEMO_EMAIL,
    JiraSimulator,
    parse_jql,
)
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import (
    REFRESH_TOKEN_KEY,
    BulkCreateInterrupted,
    CloudIdNotFound,
    FieldNotFound,
    JiraClient,
    StatusUnreachable,
    endpoint_of,
    jql_datetime,
    jql_phrase,
    jql_string,
    seed_refresh_token,
)
from ml_connector_dagster.systems.jira.models import parse_jira_datetime
from ml_connector_dagster.systems.jira.resource import JiraResource

GATEWAY = "http://api.jira.test"
VISMA_ID = "customfield_10040"
AMOUNT = "customfield_10042"


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[JiraSimulator]:
    simulator = JiraSimulator(seed=7)
    yield simulator
    simulator.close()


@pytest.fixture
def transport(sim: JiraSimulator) -> Iterator[InProcessTransport]:
    in_process = InProcessTransport(sim.app)
    yield in_process
    in_process.close()


@pytest.fixture(autouse=True)
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(http, "default_sleep", waits.append)
    return waits


@pytest.fixture
def store(sim: JiraSimulator) -> MemoryTokenStore:
    return MemoryTokenStore({REFRESH_TOKEN_KEY: sim.demo_refresh_token})


def connect(transport: httpx.BaseTransport, store: TokenStore, **options: Any) -> JiraClient:
    return JiraClient.connect_oauth(
        GATEWAY, GATEWAY, DEMO_CLIENT_ID, DEMO_APP_SECRET, store,
        transport=transport, rate_limiter=RateLimiter(10_000, 10_000), **options,
    )  # fmt: skip


@pytest.fixture
def client(transport: InProcessTransport, store: MemoryTokenStore) -> Iterator[JiraClient]:
    with connect(transport, store) as connected:
        yield connected


def invoice(n: int, external_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"fields": {
        "project": {"key": "FIN"}, "issuetype": {"name": "Task"}, "summary": f"Supplier invoice {n}",
        VISMA_ID: external_id or f"INV-{n:04d}", **fields,
    }}  # fmt: skip


def requests_to(sim: JiraSimulator, method: str, path_suffix: str) -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path.endswith(path_suffix)]


# -- connecting -----------------------------------------------------------------------------------


def test_oauth_calls_go_to_the_cloud_id_resolved_from_accessible_resources(client: JiraClient, sim: JiraSimulator) -> None:
    client.myself()

    assert client.api_base_url == f"{GATEWAY}/ex/jira/{CLOUD_ID}/rest/api/3/"
    assert [r.path for r in sim.requests if r.method == "GET"] == [
        "/oauth/token/accessible-resources", f"/ex/jira/{CLOUD_ID}/rest/api/3/myself",
    ]


def test_a_cloud_id_the_grant_does_not_reach_is_refused_naming_the_reachable_sites(
    transport: InProcessTransport, store: MemoryTokenStore
) -> None:
    with pytest.raises(CloudIdNotFound, match=f"does not reach cloud_id elsewhere.*{CLOUD_ID}"):
        connect(transport, store, cloud_id="elsewhere")


def test_the_rotated_refresh_token_carries_over_a_restart_and_the_spent_one_dies(
    sim: JiraSimulator, transport: InProcessTransport, tmp_path: Any
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    vault_metadata.create_all(engine)
    key = Fernet.generate_key().decode()
    seed_refresh_token(Vault(engine, [key]), sim.demo_refresh_token)

    with connect(transport, Vault(engine, [key])) as first:
        first.myself()
    rotated = Vault(engine, [key]).get(REFRESH_TOKEN_KEY)
    with connect(transport, Vault(engine, [key])) as after_restart:
        after_restart.myself()

    assert rotated not in (None, sim.demo_refresh_token)
    assert Vault(engine, [key]).get(REFRESH_TOKEN_KEY) not in (rotated, sim.demo_refresh_token)
    sim.clock.advance(sim.refresh_reuse_window_s + 1)
    with pytest.raises(AuthenticationFailed, match="invalid_grant"):
        connect(transport, MemoryTokenStore({REFRESH_TOKEN_KEY: sim.demo_refresh_token}))


def test_an_invalid_refresh_token_asks_for_consent_without_showing_the_token(transport: InProcessTransport) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        connect(transport, MemoryTokenStore({REFRESH_TOKEN_KEY: "revoked-refresh-token-4242"}))

    assert "ml-connector auth jira" in str(failure.value)
    assert "revoked-refresh-token-4242" not in str(failure.value)
    assert DEMO_APP_SECRET not in str(failure.value)


def test_seeding_puts_the_initial_refresh_token_only_into_an_empty_store() -> None:
    store = MemoryTokenStore()

    assert seed_refresh_token(store, "first-seed") is True
    assert seed_refresh_token(store, "stale-seed-from-env") is False
    assert store.load(REFRESH_TOKEN_KEY) == "first-seed"


def test_api_token_mode_uses_basic_auth_on_the_site(sim: JiraSimulator, transport: InProcessTransport) -> None:
    with JiraClient.connect_api_token("http://nordic.test", DEMO_EMAIL, DEMO_API_TOKEN, transport=transport) as client:
        me = client.myself()

    assert me.time_zone == "America/Los_Angeles"
    (request,) = sim.requests
    assert request.path == "/rest/api/3/myself"
    assert request.headers["authorization"] == "Basic ***"


def test_a_wrong_api_token_fails_without_echoing_it(transport: InProcessTransport) -> None:
    client = JiraClient.connect_api_token("http://nordic.test", DEMO_EMAIL, "wrong-token-9x", transport=transport)
    with client, pytest.raises(AuthenticationFailed) as failure:
        client.myself()

    assert "wrong-token-9x" not in str(failure.value)


# -- fields ----------------------------------------------------------------------------------------


def test_field_id_resolves_a_custom_field_name_once(client: JiraClient, sim: JiraSimulator) -> None:
    assert client.field_id("Visma ID") == VISMA_ID
    assert client.field_id("Amount") == AMOUNT
    assert len(requests_to(sim, "GET", "/field")) == 1


def test_a_missing_field_is_named_in_the_error(client: JiraClient) -> None:
    with pytest.raises(FieldNotFound, match="no field named 'Acumatica ID'"):
        client.field_id("Acumatica ID")


# -- bulk create ----------------------------------------------------------------------------------


def test_bulk_create_sends_chunks_of_50_and_maps_a_failure_to_the_callers_index(
    client: JiraClient, sim: JiraSimulator
) -> None:
    updates = [invoice(n, **{AMOUNT: 100.0 + n}) for n in range(120)]
    updates[77]["fields"][AMOUNT] = "a lot"

    result = client.bulk_create(updates)

    assert [len(r.body["issueUpdates"]) for r in requests_to(sim, "POST", "/issue/bulk")] == [50, 50, 20]
    (failure,) = result.failed
    assert failure.index == 77
    assert failure.errors == {AMOUNT: "Operation value must be a number"}
    assert [c.index for c in result.created] == [n for n in range(120) if n != 77]
    assert all(sim.issue(c.key)["fields"][VISMA_ID] == f"INV-{c.index:04d}" for c in result.created)


def test_a_non_finite_amount_is_refused_by_name_before_anything_is_sent(client: JiraClient, sim: JiraSimulator) -> None:
    with pytest.raises(ValueError, match=f"field '{AMOUNT}' is nan"):
        client.bulk_create([*(invoice(n) for n in range(60)), invoice(60, **{AMOUNT: float("nan")})])

    assert requests_to(sim, "POST", "/issue/bulk") == []


def test_a_chunk_where_every_element_fails_is_a_result_not_an_exception(client: JiraClient) -> None:
    result = client.bulk_create([invoice(0, summary=""), invoice(1, summary="")])

    assert result.created == []
    assert [f.index for f in result.failed] == [0, 1]
    assert result.failed[0].message == "summary: You must specify a summary of the issue."


def test_a_plain_text_description_is_refused_with_jiras_reason(client: JiraClient) -> None:
    (created,) = client.bulk_create([invoice(1, description=adf.from_plain_text("Due in 30 days"))]).created

    with pytest.raises(ClientError, match="description: Operation value must be an Atlassian Document") as failure:
        client.update_issue(created.key, {"description": "Due in 30 days"})

    assert failure.value.status_code == 400


def test_a_bulk_create_applies_each_elements_transition_and_answers_how_it_went(
    client: JiraClient, sim: JiraSimulator
) -> None:
    start_review, nonsense = {"id": "11"}, {"id": "999"}  # To Do -> In Review; no such transition

    result = client.bulk_create([{**invoice(1), "transition": start_review}, {**invoice(2), "transition": nonsense},
                                 invoice(3)])

    moved, refused, plain = result.created
    assert (moved.transitioned, moved.transition_status) == (True, 204)
    assert (refused.transitioned, refused.transition_status) == (False, 400)
    assert refused.transition_error is not None and "999" in refused.transition_error
    assert (plain.transitioned, plain.transition_status) == (False, None)
    statuses = [sim.issue(c.key)["fields"]["status"]["name"] for c in result.created]
    assert statuses == ["In Review", "To Do", "To Do"]  # a refused transition leaves the issue created, where it starts
    assert requests_to(sim, "POST", "/transitions") == []


@pytest.mark.parametrize(("method", "path", "budget"), [
    ("POST", "/ex/jira/abc-123/rest/api/3/issue/FIN-12/transitions", "POST /rest/api/3/issue/{id}/transitions"),
    ("GET", "/rest/api/3/issue/10042/transitions", "GET /rest/api/3/issue/{id}/transitions"),
    ("POST", "/ex/jira/abc-123/rest/api/3/issue/bulk", "POST /rest/api/3/issue/bulk"),
    ("POST", "/rest/api/3/search/jql", "POST /rest/api/3/search/jql"),
    ("GET", "/oauth/token/accessible-resources", None),
])  # fmt: skip
def test_each_endpoint_and_method_draws_on_its_own_burst_budget(method: str, path: str, budget: str | None) -> None:
    assert endpoint_of(httpx.Request(method, f"https://api.atlassian.com{path}")) == budget


def test_a_lost_bulk_answer_is_not_resent_and_says_the_issues_may_exist(
    client: JiraClient, sim: JiraSimulator
) -> None:
    sim.set_faults(FaultPlan(timeout_after_rate=1.0, paths=[r"/issue/bulk$"]))

    with pytest.raises(TransportFailure) as failure:
        client.bulk_create([invoice(n) for n in range(60)])

    assert isinstance(failure.value, BulkCreateInterrupted)
    assert failure.value.may_have_been_applied
    assert failure.value.in_doubt == list(range(50))
    assert failure.value.not_sent == list(range(50, 60))
    assert len(requests_to(sim, "POST", "/issue/bulk")) == 1
    assert sum(1 for i in sim.issues.values() if i.summary.startswith("Supplier invoice")) == 50


def test_a_throttled_bulk_create_is_resent_once_the_429_has_passed(
    client: JiraClient, sim: JiraSimulator, slept: list[float]
) -> None:
    sim.set_faults(FaultPlan(rate_limit_burst=1, retry_after_s=2, paths=[r"/issue/bulk$"]))

    result = client.bulk_create([invoice(1)])

    assert len(result.created) == 1
    assert len(requests_to(sim, "POST", "/issue/bulk")) == 2
    assert sum(1 for i in sim.issues.values() if i.summary == "Supplier invoice 1") == 1
    # Held back by the shared limiter, not resent at once (plus, on a busy machine, a token's spacing).
    assert 1.9 <= sum(slept) <= 2.5


# -- search and lookups ---------------------------------------------------------------------------


def test_search_follows_next_page_tokens_beyond_100_issues(client: JiraClient, sim: JiraSimulator) -> None:
    client.bulk_create([invoice(n, labels=["paged"]) for n in range(130)])
    sim.reindex()

    found = list(client.search("project = FIN AND labels = paged", ["summary"]))

    assert len(found) == 130
    pages = requests_to(sim, "POST", "/search/jql")
    assert len(pages) == 2
    assert "nextPageToken" not in pages[0].body and pages[1].body["nextPageToken"]


def test_unbounded_jql_is_refused_before_any_request(client: JiraClient, sim: JiraSimulator) -> None:
    before = len(sim.requests)

    with pytest.raises(ValueError, match="unbounded JQL"):
        list(client.search("ORDER BY created DESC"))

    assert len(sim.requests) == before


def test_external_id_lookups_are_batched_into_few_searches(client: JiraClient, sim: JiraSimulator) -> None:
    client.bulk_create([invoice(n) for n in range(95)])
    sim.reindex()
    sim.requests.clear()

    found = client.find_by_external_ids("FIN", VISMA_ID, [f"INV-{n:04d}" for n in range(100)])

    assert sorted(found) == [f"INV-{n:04d}" for n in range(95)]
    assert len(requests_to(sim, "POST", "/search/jql")) == 3  # 100 ids, 40 per query


def test_an_external_id_that_is_a_prefix_of_another_does_not_over_match(client: JiraClient, sim: JiraSimulator) -> None:
    client.bulk_create([invoice(1, "INV-1"), invoice(2, "INV-1-A"), invoice(3, "inv-1 credit")])
    sim.reindex()
    phrase_hits = list(client.search(f"project = FIN AND cf[10040] ~ {jql_phrase('INV-1')}", [VISMA_ID]))

    found = client.find_by_external_ids("FIN", VISMA_ID, ["INV-1"])

    assert len(phrase_hits) == 3  # the phrase match alone over-matches
    assert {k: v.fields.get(VISMA_ID) for k, v in found.items()} == {"INV-1": "INV-1"}


def test_a_just_created_issue_is_found_only_when_reconciled(client: JiraClient) -> None:
    (created,) = client.bulk_create([invoice(5)]).created

    assert client.find_by_external_ids("FIN", VISMA_ID, ["INV-0005"]) == {}
    found = client.find_by_external_ids("FIN", VISMA_ID, ["INV-0005"], reconcile_ids=[created.id])
    assert found["INV-0005"].key == created.key


def test_jql_datetime_bounds_updated_to_the_millisecond_whatever_the_account_zone(
    client: JiraClient, sim: JiraSimulator
) -> None:
    (created,) = client.bulk_create([invoice(9)]).created
    sim.reindex()
    updated = client.get_issue(created.key, ["updated"]).fields.updated
    assert updated is not None
    oslo = updated.astimezone(timezone(timedelta(hours=1)))

    def keys_updated_since(moment: datetime) -> list[str]:
        jql = f"project = FIN AND updated >= {jql_datetime(moment)}"
        return [i["key"] for i in client.search(jql, ["summary"])]

    assert keys_updated_since(oslo - timedelta(milliseconds=1)) == [created.key]
    assert keys_updated_since(oslo + timedelta(milliseconds=1)) == []


def test_jql_datetime_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        jql_datetime(datetime(2026, 11, 21, 12, 0))


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_jql_string_literals_read_back_as_the_same_value(value: str) -> None:
    clause = parse_jql(f"summary ~ {jql_string(value)}").where

    assert clause.values[0].text == value


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_jql_phrases_stay_one_quoted_phrase(value: str) -> None:
    clause = parse_jql(f"cf[10040] ~ {jql_phrase(value)}").where
    operand = clause.values[0].text

    assert operand.startswith('"') and operand.endswith('"')
    assert re.sub(r"\\(.)", r"\1", operand[1:-1]) == value


def test_jira_timestamps_parse_the_same_from_millis_and_from_offset_strings() -> None:
    assert parse_jira_datetime(1_780_000_000_000) == parse_jira_datetime("2026-05-28T20:26:40.000+0000")
    assert parse_jira_datetime("2026-05-28T13:26:40.000-0700") == datetime(2026, 5, 28, 20, 26, 40, tzinfo=UTC)


# -- workflow and comments ------------------------------------------------------------------------


def test_transition_to_status_takes_the_transition_leading_there(client: JiraClient, sim: JiraSimulator) -> None:
    (created,) = client.bulk_create([invoice(1)]).created

    used = client.transition_to_status(created.key, "in review")

    assert used is not None and used.name == "Start review"
    assert sim.issue(created.key)["fields"]["status"]["name"] == "In Review"
    assert client.transition_to_status(created.key, "In Review") is None


def test_an_unreachable_status_names_the_reachable_ones(client: JiraClient) -> None:
    (created,) = client.bulk_create([invoice(1)]).created

    with pytest.raises(StatusUnreachable, match="no transition leads to 'Disputed'; reachable: Done, In Review"):
        client.transition_to_status(created.key, "Disputed")


def test_comments_round_trip_as_adf(client: JiraClient) -> None:
    (created,) = client.bulk_create([invoice(1)]).created
    body = adf.doc(adf.paragraph("Paid 2026-11-20, ", adf.strong("NOK 12 500,00")))

    client.add_comment(created.key, body)
    client.add_comment(created.key, adf.from_plain_text("Second note"))

    assert [c.body for c in client.comments(created.key)] == [body, adf.from_plain_text("Second note")]


# -- webhooks -------------------------------------------------------------------------------------


def test_ensure_webhook_registers_once_across_restarts(
    sim: JiraSimulator, transport: InProcessTransport, store: MemoryTokenStore
) -> None:
    args = ("https://hooks.example.test/jira", ["jira:issue_updated", "jira:issue_created"], "project = FIN")
    with connect(transport, store) as first:
        first_id, _ = first.ensure_webhook(*args)
    with connect(transport, store) as second:
        second_id, _ = second.ensure_webhook(args[0], list(reversed(args[1])), args[2])

    assert first_id == second_id
    assert len(sim.webhooks) == 1
    assert len(requests_to(sim, "POST", "/rest/api/3/webhook")) == 1


def test_ensure_webhook_refresh_extends_the_expiry(client: JiraClient, sim: JiraSimulator) -> None:
    args = ("https://hooks.example.test/jira", ["jira:issue_updated"], "project = FIN")
    _, first_expiry = client.ensure_webhook(*args)
    sim.clock.advance(10 * 86400)

    _, later_expiry = client.ensure_webhook(*args)

    assert later_expiry - first_expiry >= timedelta(days=10)
    assert later_expiry > sim.now() + timedelta(days=29)


def test_ensure_webhook_removes_duplicates_left_by_earlier_runs(client: JiraClient, sim: JiraSimulator) -> None:
    args = ("https://hooks.example.test/jira", ["jira:issue_updated"], "project = FIN")
    kept = client.register_webhook(*args)
    client.register_webhook(*args)

    webhook_id, _ = client.ensure_webhook(*args)

    assert webhook_id == kept
    assert [w.id for w in client.list_webhooks()] == [kept]


# -- rate limits ----------------------------------------------------------------------------------


def test_a_429_with_retry_after_is_waited_out_and_retried(
    client: JiraClient, sim: JiraSimulator, slept: list[float]
) -> None:
    sim.set_faults(FaultPlan(rate_limit_burst=2, retry_after_s=3, paths=[r"/field$"]))

    assert client.field_id("Visma ID") == VISMA_ID
    assert len(requests_to(sim, "GET", "/field")) == 3
    assert max(slept) >= 3


# -- the Dagster resource -------------------------------------------------------------------------


def test_the_resource_keeps_the_rotated_token_in_the_vault_not_the_env_seed(
    sim: JiraSimulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    with served(sim) as server:
        resource = JiraResource(
            sandbox=True, base_url=server.base_url, auth_url=server.base_url, rate_per_s=1000, burst=1000,
            client_id=DEMO_CLIENT_ID, client_secret=DEMO_APP_SECRET, refresh_token=sim.demo_refresh_token,
            db_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        )  # fmt: skip
        with resource.client() as first:
            first.myself()
        sim.clock.advance(sim.refresh_reuse_window_s + 1)  # the env seed is dead now
        with resource.client() as second:
            assert second.myself().display_name == "Ingrid Halvorsen"

    assert DEMO_APP_SECRET not in repr(resource)


def test_the_resource_in_api_token_mode_needs_no_vault(sim: JiraSimulator, transport: InProcessTransport) -> None:
    resource = JiraResource(auth="api_token", site_url="http://nordic.test", email=DEMO_EMAIL, api_token=DEMO_API_TOKEN)

    with resource.client(transport=transport) as client:
        assert client.field_id("Visma ID") == VISMA_ID

    assert DEMO_API_TOKEN not in repr(resource)
