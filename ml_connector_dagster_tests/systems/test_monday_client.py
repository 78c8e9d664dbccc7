"""The monday.com client over the wire against the simulator, and the column-value encoding."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.config import MondaySettings
from ml_connector_dagster.core.http import AuthenticationFailed
from ml_connector_dagster.core.vault import opened_vault
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.monday import GL_BOARD, INVOICE_BOARD, MondaySimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.monday.client import (
    RESET_MARGIN_S,
    BatchInterrupted,
    ComplexityBudget,
    InvalidDocument,
    MondayApiError,
    MondayClient,
)
from ml_connector_dagster.systems.monday.columns import (
    ColumnValueError,
    Link,
    PersonOrTeam,
    date_value,
    decode_column_value,
    encode_column_value,
    encode_column_values,
    numbers_value,
)
from ml_connector_dagster.systems.monday.consent import ACCESS_TOKEN_KEY
from ml_connector_dagster.systems.monday.models import ItemDraft, ItemUpdate
from ml_connector_dagster.systems.monday.resource import MondayResource
from ml_connector_dagster_tests.monday_sandbox import (
    IN_PROCESS_URL,
    VerifyingReceiver,
    monday_client,
    post,
    raw_api,
    sim_sleeper,
)

INVOICE_COLUMNS = {
    "text": "text", "text0": "text", "numbers": "numbers", "dropdown": "dropdown", "date4": "date",
    "status": "status", "text7": "text", "text8": "text", "person": "people", "link": "link",
}  # fmt: skip


@pytest.fixture
def sim() -> Iterator[MondaySimulator]:
    simulator = MondaySimulator()
    yield simulator
    simulator.close()


def drafts(count: int, *, prefix: str = "INV", status: str = "Received") -> list[ItemDraft]:
    return [
        ItemDraft(name=f"{prefix} {n}", column_values=encode_column_values(
            INVOICE_COLUMNS, {"text": f"{prefix}-{n}", "text7": f"{prefix}-V{n}", "numbers": Decimal("100.25") + n,
                              "status": status, "date4": date(2026, 12, 1)}))
        for n in range(count)
    ]  # fmt: skip


def names_on(sim: MondaySimulator, board: int = INVOICE_BOARD) -> list[str]:
    return [item["name"] for item in sim.items_on(board)]


# -- column values: properties ---------------------------------------------------------------------

money = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=4, allow_nan=False)
labels = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(str.strip)


@given(money)
def test_numbers_travel_as_plain_decimal_strings_that_read_back_equal(amount: Decimal) -> None:
    wire = numbers_value(amount)
    assert isinstance(wire, str) and "e" not in wire.lower()
    assert decode_column_value("numbers", json.dumps(wire), wire) == amount


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_floats_are_written_with_their_shortest_digits(amount: float) -> None:
    assert Decimal(numbers_value(amount)) == Decimal(repr(amount))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "12,5", "abc"])
def test_a_value_that_is_not_a_finite_number_is_refused(bad: Any) -> None:
    with pytest.raises(ColumnValueError):
        numbers_value(bad)


@given(st.dates())
def test_a_date_reads_back_as_itself(day: date) -> None:
    wire = date_value(day)
    assert wire == {"date": day.isoformat()}
    assert decode_column_value("date", json.dumps(wire), day.isoformat()) == day


@given(st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.replace(microsecond=0)))
def test_a_moment_is_written_in_utc_and_reads_back_as_itself(moment: datetime) -> None:
    wire = date_value(moment.astimezone(UTC))
    assert decode_column_value("date", json.dumps(wire), None) == moment


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ColumnValueError, match="aware"):
        date_value(datetime(2026, 11, 21, 12, 0))


@given(labels)
def test_a_status_is_written_as_its_label(label: str) -> None:
    assert encode_column_value("status", label) == {"label": label}


@given(st.lists(st.integers(min_value=1, max_value=10**11), min_size=1, max_size=5))
def test_people_are_written_as_persons_and_teams_and_read_back(ids: list[int]) -> None:
    wire = encode_column_value("people", ids)
    assert wire == {"personsAndTeams": [{"id": i, "kind": "person"} for i in ids]}
    assert decode_column_value("people", json.dumps(wire), "") == [PersonOrTeam(i) for i in ids]


@given(st.from_regex(r"https://[a-z]{1,12}\.example/[a-z0-9/]{0,20}", fullmatch=True), labels)
def test_a_link_is_written_with_url_and_text_and_read_back(url: str, text: str) -> None:
    wire = encode_column_value("link", Link(url, text))
    assert wire == {"url": url, "text": text}
    assert decode_column_value("link", json.dumps(wire), None) == Link(url, text)


@given(st.lists(labels, min_size=1, max_size=4))
def test_a_dropdown_is_written_as_its_labels(chosen: list[str]) -> None:
    assert encode_column_value("dropdown", chosen) == {"labels": chosen}


def test_an_encoding_error_names_the_column() -> None:
    with pytest.raises(ColumnValueError, match="'date4'"):
        encode_column_values(INVOICE_COLUMNS, {"date4": "tomorrow"})


def test_none_clears_a_column() -> None:
    assert encode_column_values(INVOICE_COLUMNS, {"status": None, "numbers": None}) == {"status": None, "numbers": None}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=money, day=st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)),
       text=labels, status=st.sampled_from(["Received", "Approved", "Paid"]),
       currencies=st.lists(st.sampled_from(["NOK", "SEK", "EUR"]), min_size=1, max_size=3, unique=True))  # fmt: skip
def test_values_written_through_the_api_read_back_equal(sim: MondaySimulator, amount: Decimal, day: date, text: str,
                                                         status: str, currencies: list[str]) -> None:  # fmt: skip
    values = {"text": text, "numbers": amount, "date4": day, "status": status, "dropdown": currencies,
              "person": [58211419], "link": Link("https://files.example/a.pdf", "PDF")}  # fmt: skip
    with monday_client(sim) as client:
        [outcome] = client.create_items(str(INVOICE_BOARD), [ItemDraft(name="Round trip",
                                        column_values=encode_column_values(INVOICE_COLUMNS, values))]).outcomes  # fmt: skip
    assert outcome.item is not None, outcome.error
    read = {column: outcome.item.value(column) for column in values}
    assert read == {**values, "person": [PersonOrTeam(58211419)]}


# -- batching, complexity, rate limits -------------------------------------------------------------


def test_creates_go_several_to_a_request_as_aliases(sim: MondaySimulator) -> None:
    with monday_client(sim, max_batch=10) as client:
        result = client.create_items(str(INVOICE_BOARD), drafts(25))
    writes = [r for r in sim.requests if r.body and "CreateItems" in r.body["query"]]
    assert len(result.items) == 25 and len(writes) == 3


def test_an_exhausted_budget_mid_batch_is_waited_out_and_nothing_is_lost_or_duplicated() -> None:
    sim = MondaySimulator(complexity_per_minute=65_000)
    slept: list[float] = []
    try:
        sim.budget.spend(40_000)  # another job on the same token spent most of this minute
        with monday_client(sim, budget=ComplexityBudget(65_000), sleep=sim_sleeper(sim, slept), max_batch=4) as client:
            result = client.create_items(str(INVOICE_BOARD), drafts(14))
    finally:
        sim.close()
    created = [name for name in names_on(sim) if name.startswith("INV ")]
    assert [o.ok for o in result.outcomes] == [True] * 14
    assert sorted(created) == sorted(f"INV {n}" for n in range(14))  # each once
    assert slept[0] == pytest.approx(60 + RESET_MARGIN_S, abs=0.5)  # waited retry_in_seconds, then went again


def test_the_client_waits_for_the_reset_before_the_budget_runs_out() -> None:
    sim = MondaySimulator(complexity_per_minute=45_000)
    try:
        with monday_client(sim, budget=ComplexityBudget(45_000), max_batch=4) as client:
            client.create_items(str(INVOICE_BOARD), drafts(12))
        refused = [r for r in sim.requests if r.body and "CreateItems" in r.body["query"]]
    finally:
        sim.close()
    # 4 writes fit a minute: 3 requests, none refused (a refused one would have been sent again).
    assert len(refused) == 3


def test_one_failed_alias_does_not_lose_the_others(sim: MondaySimulator) -> None:
    batch = drafts(2) + drafts(1, prefix="BAD", status="Booked") + drafts(2, prefix="MORE")
    with monday_client(sim) as client:
        result = client.create_items(str(INVOICE_BOARD), batch)
    assert [o.ok for o in result.outcomes] == [True, True, False, True, True]
    assert result.failed[0].index == 2 and result.failed[0].error.code == "ColumnValueException"
    assert "BAD 0" not in names_on(sim)


def test_updates_answer_per_item(sim: MondaySimulator) -> None:
    updates = [ItemUpdate(item_id="1880100001", column_values={"status": {"label": "Paid"}}),
               ItemUpdate(item_id="9", column_values={"status": {"label": "Paid"}})]  # fmt: skip
    with monday_client(sim) as client:
        result = client.update_items(str(INVOICE_BOARD), updates)
    assert result.outcomes[0].item.value("status") == "Paid"
    assert result.outcomes[1].error.code == "InvalidItemIdException"


def test_a_write_on_a_locked_board_is_retried_for_that_alias_only() -> None:
    sim = MondaySimulator(mutation_hold_s=0.2)
    try:
        with raw_api(sim) as api, monday_client(sim, sleep=time.sleep) as client:
            holder = threading.Thread(target=post, args=(api, f'mutation {{ create_item(board_id: {INVOICE_BOARD}, item_name: "UI edit") {{ id }} }}'))
            holder.start()
            deadline = time.monotonic() + 5
            while not sim.board_busy(INVOICE_BOARD) and time.monotonic() < deadline:
                time.sleep(0.005)
            result = client.create_items(str(INVOICE_BOARD), drafts(2))
            holder.join()
        writes = [r for r in sim.requests if r.body and "CreateItems" in r.body["query"]]
    finally:
        sim.close()
    assert [o.ok for o in result.outcomes] == [True, True]
    assert len(writes) >= 2  # refused while locked, then sent again
    assert sorted(n for n in names_on(sim) if n.startswith("INV")) == ["INV 0", "INV 1"]


def test_a_429_is_waited_out_with_retry_after() -> None:
    sim = MondaySimulator(requests_per_minute=2)
    slept: list[float] = []
    try:
        with monday_client(sim, sleep=sim_sleeper(sim, slept)) as client:
            names = [client.me().name for _ in range(3)]
    finally:
        sim.close()
    assert names == ["Ingrid Solberg"] * 3
    assert any(s >= 1 for s in slept)


def test_a_429_on_a_write_is_sent_again_since_nothing_was_applied() -> None:
    sim = MondaySimulator(requests_per_minute=1)
    slept: list[float] = []
    try:
        with monday_client(sim, sleep=sim_sleeper(sim, slept)) as client:
            client.me()
            result = client.create_items(str(INVOICE_BOARD), drafts(2))
    finally:
        sim.close()
    assert [o.ok for o in result.outcomes] == [True, True]
    assert sorted(n for n in names_on(sim) if n.startswith("INV")) == ["INV 0", "INV 1"]
    assert slept and slept[0] >= 1


def test_a_lost_answer_to_a_write_names_the_drafts_in_doubt(sim: MondaySimulator) -> None:
    with monday_client(sim, max_batch=2) as client:
        client.me()
        sim.set_faults(FaultPlan(timeout_after_rate=1.0, methods=["POST"]))
        with pytest.raises(BatchInterrupted) as caught:
            client.create_items(str(INVOICE_BOARD), drafts(5))
    assert (caught.value.in_doubt, caught.value.not_sent) == ([0, 1], [2, 3, 4])
    assert {"INV 0", "INV 1"} <= set(names_on(sim))  # applied: look them up before sending again


# -- the SDL and API versions ------------------------------------------------------------------------


def test_a_document_with_an_unknown_field_is_refused_before_it_is_sent(sim: MondaySimulator) -> None:
    with monday_client(sim) as client:
        before = len(sim.requests)
        with pytest.raises(InvalidDocument, match="invoice_total"):
            client.query("query { boards { id invoice_total } }")
    assert len(sim.requests) == before


def test_the_pinned_api_version_is_sent_and_answered(sim: MondaySimulator) -> None:
    with monday_client(sim, api_version="2026-01") as client:
        version = client.version()
        with pytest.raises(InvalidDocument):  # a 2026-10 field, unknown to 2026-01
            client.query("query { items(ids: [1]) { column_values { is_leaf } } }")
    assert version.value == "2026-01"
    assert {r.headers["api-version"] for r in sim.requests if r.path == "/v2"} == {"2026-01"}


def test_a_read_error_raises_with_mondays_code(sim: MondaySimulator) -> None:
    with monday_client(sim) as client, pytest.raises(MondayApiError) as caught:
        list(client.iter_items(str(INVOICE_BOARD), query_params={"rules": [{"column_id": "nope", "compare_value": ["x"]}]}))
    assert caught.value.code == "InvalidColumnIdException"


# -- reads ---------------------------------------------------------------------------------------------


def test_boards_come_with_columns_in_board_order(sim: MondaySimulator) -> None:
    with monday_client(sim) as client:
        board = client.board(str(INVOICE_BOARD))
    assert [c.title for c in board.columns][:4] == ["Name", "Invoice #", "Supplier", "Total"]
    assert board.column_by_title(" visma  id ").id == "text7"
    assert board.column_by_title("Status").status_labels() == ["Received", "Approved", "Paid"]


def test_iter_items_follows_every_page(sim: MondaySimulator) -> None:
    sim.add_items(GL_BOARD, 1_100)
    with monday_client(sim) as client:
        ids = [item.id for item in client.iter_items(str(GL_BOARD))]
    pages = [r for r in sim.requests if r.body and ("ItemsPage" in r.body["query"] or "NextItemsPage" in r.body["query"])]
    assert len(ids) == len(set(ids)) == 1_100 and len(pages) == 3


def test_lookups_by_column_value_batch_many_values_per_request(sim: MondaySimulator) -> None:
    with monday_client(sim) as client:
        client.create_items(str(INVOICE_BOARD), drafts(3))
        wanted = ["INV-V0", "INV-V2", "600001"] + [f"absent-{n}" for n in range(247)]
        before = len(sim.requests)
        found = client.find_items_by_column_values(str(INVOICE_BOARD), "text7", wanted)
    assert sorted(found) == ["600001", "INV-V0", "INV-V2"]
    assert len(sim.requests) - before == 3  # 250 values, 100 per request


def test_items_can_be_read_by_id(sim: MondaySimulator) -> None:
    with monday_client(sim) as client:
        items = client.items(["1880100001", "1880100002", "404"])
    assert [i.id for i in items] == ["1880100001", "1880100002"]


# -- webhooks ------------------------------------------------------------------------------------------


def test_a_webhook_is_registered_listed_and_deleted() -> None:
    holder: dict[str, MondaySimulator] = {}
    receiver = VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", lambda: holder["sim"].now())
    sim = holder["sim"] = MondaySimulator(webhook_transport=receiver.transport, time_scale=0.001)
    try:
        with monday_client(sim) as client:
            hook = client.create_webhook(str(INVOICE_BOARD), "https://connector.example/webhooks/monday",
                                         "change_specific_column_value", {"columnId": "status"})  # fmt: skip
            listed = client.webhooks(str(INVOICE_BOARD))
            client.delete_webhook(hook.id)
            remaining = client.webhooks(str(INVOICE_BOARD))
    finally:
        sim.close()
    assert [(w.id, w.config) for w in listed] == [(hook.id, {"columnId": "status"})]
    assert remaining == [] and len(receiver.challenges) == 1


# -- secrets and the resource ----------------------------------------------------------------------------


def test_a_wrong_token_fails_without_showing_it(sim: MondaySimulator) -> None:
    transport = InProcessTransport(sim.app)
    wrong = "eyJhbGciOiJIUzI1NiJ9.wrong-token-value-0123456789"
    client = MondayClient.connect(IN_PROCESS_URL, wrong, transport=transport)
    try:
        with pytest.raises(AuthenticationFailed) as caught:
            client.me()
    finally:
        client.close()
        transport.close()
    assert wrong not in str(caught.value) and wrong not in repr(client)


def test_the_resource_reads_its_token_from_the_environment(sim: MondaySimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONDAY_API_TOKEN", sim.api_token)
    settings = MondaySettings(base_url=IN_PROCESS_URL, api_version="2026-10")
    resource = MondayResource.from_settings(settings)
    transport = InProcessTransport(sim.app)
    try:
        with dg.build_resources({"monday": resource}) as resources, resources.monday.client(transport=transport) as client:
            me = client.me()
            shown = repr(resources.monday)
    finally:
        transport.close()
    assert me.id == "58211407"
    assert sim.api_token not in shown


def test_an_oauth_resource_reads_the_token_auth_monday_stored_in_the_vault(
    sim: MondaySimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    monkeypatch.delenv("MONDAY_API_TOKEN", raising=False)
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    oauth_token = sim.issue_token("access", str(sim.user_id), None, scopes=("me:read",)).value
    with opened_vault(db_url, sandbox=True, home=tmp_path) as vault:
        vault.put(ACCESS_TOKEN_KEY, oauth_token)
    settings = MondaySettings(base_url=IN_PROCESS_URL, auth="oauth")
    resource = MondayResource.from_settings(settings).model_copy(update={"db_url": db_url})
    transport = InProcessTransport(sim.app)
    try:
        with resource.client(transport=transport) as client:
            assert client.me().id == str(sim.user_id)
    finally:
        transport.close()
    assert resource.api_token is None and oauth_token not in repr(resource)


def test_an_oauth_resource_without_a_consent_says_to_run_auth_monday(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    resource = MondayResource(auth="oauth", sandbox=True, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(ValueError, match="run `ml-connector auth monday`"), resource.client():
        pass


def test_budget_waits_only_when_the_cost_exceeds_what_is_left() -> None:
    now = [0.0]
    budget = ComplexityBudget(100_000, clock=lambda: now[0])
    slept: list[float] = []
    budget.exhausted(30)
    assert budget.wait_for(10, slept.append) == 30 + RESET_MARGIN_S and budget.remaining() is None
    budget.exhausted(30)
    now[0] += timedelta(seconds=31).total_seconds()
    assert budget.wait_for(10, slept.append) == 0 and slept == [30 + RESET_MARGIN_S]


def test_a_read_outside_the_oauth_grant_fails_with_a_hint_to_consent_again(sim: MondaySimulator) -> None:
    from ml_connector_dagster.systems.monday.ping import fix_hint

    token = sim.issue_token("access", str(sim.user_id), None, scopes=("boards:read",)).value
    transport = InProcessTransport(sim.app)
    client = MondayClient.connect(IN_PROCESS_URL, token, transport=transport)
    try:
        with pytest.raises(MondayApiError) as refused:
            client.me()
    finally:
        client.close()
        transport.close()
    assert refused.value.code == "UserUnauthorizedException"
    hint = fix_hint(refused.value, MondaySettings(base_url=IN_PROCESS_URL, auth="oauth"))
    assert hint is not None and "ml-connector auth monday" in hint and "me:read" in hint
