"""The Acumatica client against the simulator, over the wire: sign-in, reads, upserts and actions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.core.http import AuthenticationFailed, PreconditionFailed, TransportFailure
from ml_connector_dagster.core.oauth import MemoryTokenStore
from ml_connector_dagster.sandbox import acumatica as sandbox
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator, Licence
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.systems.acumatica.client import (
    REFRESH_TOKEN_KEY,
    ActionFailed,
    ActionStatus,
    AcumaticaEntity,
    ApiUserLimitReached,
    EndpointNotFound,
    RecordRejected,
    odata_datetimeoffset,
    odata_string,
)
from ml_connector_dagster.systems.acumatica.models import Bill, from_wire, to_wire, validate_record
from ml_connector_dagster_tests.acumatica_sandbox import IN_PROCESS_URL, in_process_client, raw_http, value

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BILL = AcumaticaEntity.BILL


@pytest.fixture
def sim() -> Iterator[AcumaticaSimulator]:
    simulator = AcumaticaSimulator(size=40, start=START)
    yield simulator
    simulator.close()


@pytest.fixture
def store() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def client(sim: AcumaticaSimulator, store: MemoryTokenStore) -> Iterator[Any]:
    with in_process_client(sim, store=store, page_size=7) as built:
        yield built


def keys(reference: str) -> dict[str, str]:
    return {"Type": "Bill", "ReferenceNbr": reference}


def recorded(client: Any, path_part: str) -> list[dict[str, Any]]:
    calls = client.http.get(f"{IN_PROCESS_URL}/_sandbox/requests").json()
    return [call for call in calls if path_part in call["path"]]


# -- value objects, in one place -------------------------------------------------------------------

plain_values = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.text(max_size=20),
                         st.floats(allow_nan=False, allow_infinity=False))
field_names = st.from_regex(r"[A-Z][A-Za-z]{1,12}", fullmatch=True)


@given(st.dictionaries(field_names, plain_values, max_size=8))
def test_wrapping_then_unwrapping_gives_the_plain_record_back(record: dict[str, Any]) -> None:
    assert from_wire(to_wire(record)) == record


@given(st.dictionaries(field_names, plain_values, max_size=5), st.lists(st.dictionaries(field_names, plain_values,
                                                                                        max_size=4), max_size=3))
def test_detail_rows_round_trip_with_their_bare_ids(header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    record = {**header, "id": "6d19a17c-a254-f111-bb2d-0680a1edd88b",
              "Details": [{**row, "id": f"row-{n}"} for n, row in enumerate(rows)]}
    assert to_wire(record)["id"] == record["id"]
    assert from_wire(to_wire(record)) == record


def test_an_empty_value_object_reads_as_none_and_links_are_dropped() -> None:
    assert from_wire({"id": "x", "rowNumber": 3, "Description": {}, "_links": {"self": "/x"}, "custom": {}}) == {
        "id": "x", "rowNumber": 3, "Description": None}


def test_dates_and_amounts_are_wrapped_as_the_api_reads_them() -> None:
    wire = to_wire({"Date": date(2026, 11, 20), "Amount": Decimal("12.50"),
                    "At": datetime(2026, 11, 20, 10, 0, tzinfo=UTC)}, ZoneInfo("Europe/Oslo"))
    assert wire == {"Date": {"value": "2026-11-20T00:00:00+01:00"}, "Amount": {"value": 12.5},
                    "At": {"value": "2026-11-20T10:00:00.000+00:00"}}


def test_a_date_is_sent_as_the_users_midnight_so_the_instance_files_it_under_that_day(
    sim: AcumaticaSimulator, client: Any
) -> None:
    created = client.insert(BILL, draft(sim) | {"Date": date(2026, 11, 2)})
    assert value(created, "Date").startswith("2026-11-02T00:00:00")


def test_a_date_without_a_zone_is_never_sent() -> None:
    with pytest.raises(ValueError, match="time zone"):
        to_wire({"Date": date(2026, 11, 20)})


def test_a_naive_date_time_is_never_sent() -> None:
    with pytest.raises(ValueError, match="offset"):
        to_wire({"At": datetime(2026, 11, 20, 10, 0)})
    with pytest.raises(ValueError, match="aware"):
        odata_datetimeoffset(datetime(2026, 11, 20, 10, 0))


@given(st.datetimes(timezones=st.timezones(), min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1)))
def test_the_filter_literal_is_utc_with_milliseconds_and_an_explicit_offset(moment: datetime) -> None:
    literal = odata_datetimeoffset(moment)
    assert literal.startswith("datetimeoffset'") and literal.endswith("+00:00'")
    assert abs(datetime.fromisoformat(literal[15:-1]) - moment) < timedelta(milliseconds=1)


@given(st.text(max_size=30))
def test_a_string_literal_doubles_its_quotes(text: str) -> None:
    literal = odata_string(text)
    assert literal[0] == literal[-1] == "'" and literal[1:-1].replace("''", "'") == text


# -- sign-in and the licence -----------------------------------------------------------------------


def test_the_client_signs_in_with_the_password_grant_and_keeps_the_refresh_token(
    sim: AcumaticaSimulator, client: Any, store: MemoryTokenStore
) -> None:
    client.get(AcumaticaEntity.VENDOR, [sim.references("Vendor")[0]])
    grants = [call["body"]["grant_type"] for call in recorded(client, "/identity/connect/token")]
    assert grants == ["password"] and store.load(REFRESH_TOKEN_KEY)


def test_a_second_client_on_the_same_store_refreshes_into_the_same_session(
    sim: AcumaticaSimulator, client: Any, store: MemoryTokenStore
) -> None:
    list(client.iter_pages(AcumaticaEntity.VENDOR))
    with in_process_client(sim, store=store) as second:
        list(second.iter_pages(AcumaticaEntity.VENDOR))
    assert len(sim.active_sessions()) == 1


def test_runs_that_keep_the_refresh_token_never_hit_the_api_user_limit(sim: AcumaticaSimulator,
                                                                        store: MemoryTokenStore) -> None:
    for _ in range(5):
        with in_process_client(sim, store=store) as run:
            list(run.iter_pages(AcumaticaEntity.VENDOR))
    assert len(sim.active_sessions()) == 1


def test_the_third_api_user_is_refused_with_a_clear_error(sim: AcumaticaSimulator) -> None:
    for _ in range(2):
        with in_process_client(sim) as other:  # each with its own store: a session of its own
            list(other.iter_pages(AcumaticaEntity.VENDOR))
    with in_process_client(sim) as third, pytest.raises(ApiUserLimitReached, match="API Login Limit"):
        list(third.iter_pages(AcumaticaEntity.VENDOR))


def test_a_dead_refresh_token_in_the_store_falls_back_to_signing_in(sim: AcumaticaSimulator) -> None:
    store = MemoryTokenStore({REFRESH_TOKEN_KEY: "revoked-long-ago"})
    with in_process_client(sim, store=store) as fresh:
        list(fresh.iter_pages(AcumaticaEntity.VENDOR))
    assert store.load(REFRESH_TOKEN_KEY) not in (None, "revoked-long-ago")


def _password_grants(sim: AcumaticaSimulator) -> int:
    return sum(1 for r in sim.requests if r.path.endswith("/identity/connect/token")
               and (r.body or {}).get("grant_type") == "password")  # fmt: skip


def test_clients_signing_in_at_once_open_one_session(sim: AcumaticaSimulator, store: MemoryTokenStore) -> None:
    """Runs and sensors starting together on an empty store: one signs in, the others join its session."""
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with in_process_client(sim, store=store) as client:
                start.wait(10)
                list(client.iter_pages(AcumaticaEntity.VENDOR))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert _password_grants(sim) == 1 and len(sim.active_sessions()) == 1


def test_a_refresh_refused_while_another_process_rotates_waits_for_the_new_token(
    sim: AcumaticaSimulator, client: Any, store: MemoryTokenStore
) -> None:
    list(client.iter_pages(AcumaticaEntity.VENDOR))
    spent = store.load(REFRESH_TOKEN_KEY)
    with raw_http(sim) as http:  # another process rotates the token; its save lands 0.3 s later
        rotated = http.post("/identity/connect/token", data={
            "grant_type": "refresh_token", "refresh_token": spent, "client_id": sandbox.DEMO_CLIENT_ID,
            "client_secret": sandbox.DEMO_CLIENT_SECRET}).json()["refresh_token"]  # fmt: skip
    saver = threading.Timer(0.3, store.save, args=(REFRESH_TOKEN_KEY, rotated))
    saver.start()

    with in_process_client(sim, store=store) as late:
        list(late.iter_pages(AcumaticaEntity.VENDOR))
    saver.join()

    assert _password_grants(sim) == 1 and len(sim.active_sessions()) == 1


def test_a_claim_left_by_a_client_that_died_signing_in_lapses(sim: AcumaticaSimulator) -> None:
    store = MemoryTokenStore({REFRESH_TOKEN_KEY: f"signing-in until {time.time() - 1:.3f} dead"})
    with in_process_client(sim, store=store) as fresh:
        list(fresh.iter_pages(AcumaticaEntity.VENDOR))
    assert _password_grants(sim) == 1 and not store.load(REFRESH_TOKEN_KEY).startswith("signing-in")


def test_a_failed_sign_in_leaves_no_claim_behind(sim: AcumaticaSimulator, store: MemoryTokenStore) -> None:
    with in_process_client(sim, store=store, password="hunter2-wrong") as wrong, pytest.raises(AuthenticationFailed):
        list(wrong.iter_pages(AcumaticaEntity.VENDOR))
    assert store.load(REFRESH_TOKEN_KEY) == ""


def test_an_access_token_that_dies_early_is_refreshed_and_the_call_goes_on(sim: AcumaticaSimulator, client: Any) -> None:
    list(client.iter_pages(AcumaticaEntity.VENDOR))
    sim.set_faults(FaultPlan(expire_tokens=True))
    assert list(client.iter_pages(AcumaticaEntity.VENDOR))


def test_signing_out_frees_the_slot_and_forgets_the_refresh_token(
    sim: AcumaticaSimulator, client: Any, store: MemoryTokenStore
) -> None:
    list(client.iter_pages(AcumaticaEntity.VENDOR))
    client.sign_out()
    assert sim.active_sessions() == [] and not store.load(REFRESH_TOKEN_KEY)


def test_a_refused_password_never_shows_in_the_error(sim: AcumaticaSimulator) -> None:
    with in_process_client(sim, password="hunter2-wrong") as wrong, pytest.raises(AuthenticationFailed) as caught:
        list(wrong.iter_pages(AcumaticaEntity.VENDOR))
    assert "hunter2-wrong" not in str(caught.value) and sandbox.DEMO_CLIENT_SECRET not in str(caught.value)


# -- the pinned endpoint ---------------------------------------------------------------------------


def test_another_endpoint_version_raises_endpoint_not_found_naming_it(sim: AcumaticaSimulator) -> None:
    with in_process_client(sim, version="23.200.001") as pinned, pytest.raises(EndpointNotFound, match="23.200.001"):
        list(pinned.iter_pages(BILL))


def test_check_endpoint_lists_what_the_instance_offers(sim: AcumaticaSimulator) -> None:
    with in_process_client(sim, version="25.200.001") as pinned, pytest.raises(EndpointNotFound, match="24.200.001"):
        pinned.check_endpoint()


def test_every_url_carries_the_pinned_version(sim: AcumaticaSimulator, client: Any) -> None:
    list(client.iter_pages(BILL))
    assert all(call["path"].startswith("/entity/Default/24.200.001/") for call in recorded(client, "/Bill"))


# -- reads -----------------------------------------------------------------------------------------


def test_iter_changed_reads_every_record_modified_since_page_by_page(sim: AcumaticaSimulator, client: Any) -> None:
    since = START - timedelta(days=4)
    pages = list(client.iter_changed(BILL, since))
    expected = {b["id"] for b in sim.collections()["bills"]
                if datetime.fromisoformat(value(b, "LastModifiedDateTime")) >= since}
    assert {r["id"] for page in pages for r in page} == expected
    assert all(len(page) <= 7 for page in pages) and len(pages) > 1


def test_the_filter_has_a_lower_bound_only_and_until_is_applied_by_the_client(sim: AcumaticaSimulator,
                                                                              client: Any) -> None:
    since, until = START - timedelta(days=6), START - timedelta(days=2)
    found = [r for page in client.iter_changed(BILL, since, until) for r in page]
    filters = [call["query"]["$filter"] for call in recorded(client, "/Bill")]
    assert all(" lt " not in odata for odata in filters)
    assert all(since <= datetime.fromisoformat(value(r, "LastModifiedDateTime")) < until for r in found)


def test_paging_stops_at_the_first_short_page(sim: AcumaticaSimulator, client: Any) -> None:
    list(client.iter_pages(BILL))
    skips = [int(call["query"]["$skip"]) for call in recorded(client, "/Bill")]
    assert skips == list(range(0, 41, 7))


def test_the_next_page_is_asked_for_while_the_caller_works_on_this_one(sim: AcumaticaSimulator, client: Any) -> None:
    pages = client.iter_pages(BILL)
    next(pages)
    deadline = time.monotonic() + 10
    while len(recorded(client, "/Bill")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [int(call["query"]["$skip"]) for call in recorded(client, "/Bill")] == [0, 7]
    pages.close()


def test_expand_brings_the_lines_that_the_model_reads(sim: AcumaticaSimulator, client: Any) -> None:
    record = next(iter(client.iter_pages(BILL, expand=("Details",))))[0]
    bill = validate_record(Bill, from_wire(record))
    assert not isinstance(bill, str) and bill.details


def test_a_record_without_currency_is_named_by_its_api_field() -> None:
    plain = {"id": "x", "Type": "Bill", "ReferenceNbr": "1", "Status": "Open", "Vendor": "V", "CurrencyID": None,
             "Amount": 1.0, "LastModifiedDateTime": "2026-11-20T10:00:00+01:00"}
    assert validate_record(Bill, plain).startswith("CurrencyID")


# -- upserts ---------------------------------------------------------------------------------------


def draft(sim: AcumaticaSimulator) -> dict[str, Any]:
    return {"Vendor": sim.references("Vendor")[0], "Description": "Frakt",
            "Details": [{"TransactionDescription": "Frakt", "Qty": 2, "UnitCost": 150.0, "Account": "6100"}]}


def test_insert_creates_and_update_changes(sim: AcumaticaSimulator, client: Any) -> None:
    created = client.insert(BILL, draft(sim))
    changed = client.update(BILL, {"id": created["id"], "Description": "Frakt desember"})
    assert value(changed, "Description") == "Frakt desember" and changed["id"] == created["id"]


def test_insert_of_an_existing_record_is_a_precondition_failure(sim: AcumaticaSimulator, client: Any) -> None:
    with pytest.raises(PreconditionFailed):
        client.insert(BILL, keys(sim.references("Bill")[0]) | {"Description": "x"})


def test_update_of_a_missing_record_is_a_precondition_failure(client: Any) -> None:
    with pytest.raises(PreconditionFailed):
        client.update(BILL, keys("999999") | {"Description": "x"})


def test_a_broken_rule_raises_record_rejected_with_the_fields_error(sim: AcumaticaSimulator, client: Any) -> None:
    created = client.insert(BILL, draft(sim))
    with pytest.raises(RecordRejected) as rejected:
        client.update(BILL, {"id": created["id"], "Hold": False})  # its control total is still 0
    assert rejected.value.field_errors["Amount"] == "Document is out of balance."


# -- actions ---------------------------------------------------------------------------------------


def test_an_action_is_polled_from_running_to_done(sim: AcumaticaSimulator, client: Any) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    location = client.invoke_action(BILL, "ReleaseBill", keys(reference))
    assert client.action_status(location) is ActionStatus.RUNNING
    sim.clock.advance(2)
    assert client.action_status(location) is ActionStatus.DONE


def test_a_failed_action_raises_with_acumaticas_reason(sim: AcumaticaSimulator, client: Any) -> None:
    location = client.invoke_action(BILL, "ReleaseBill", keys(sim.references("Bill", "Closed")[0]))
    sim.clock.advance(2)
    with pytest.raises(ActionFailed) as failed:
        client.action_status(location)
    assert failed.value.reason == "Document Status is invalid for processing."


def test_an_action_done_at_once_needs_no_polling(sim: AcumaticaSimulator, client: Any) -> None:
    order = sim.references("PurchaseOrder", "Pending Approval")[0]
    location = client.invoke_action(AcumaticaEntity.PURCHASE_ORDER, "Approve", {"Type": "Normal", "OrderNbr": order})
    assert client.action_status(location) is ActionStatus.DONE
    assert value(sim.purchase_order(order), "Status") == "Open"


def test_wait_for_action_gives_up_after_its_timeout(sim: AcumaticaSimulator, client: Any) -> None:
    location = client.invoke_action(BILL, "ReleaseBill", keys(sim.references("Bill", "Balanced")[0]))
    ticks = iter(range(100))
    with pytest.raises(TimeoutError):
        client.wait_for_action(location, timeout_s=3, sleep=lambda _: None, clock=lambda: next(ticks))


def test_an_unanswered_action_may_have_been_applied_and_runs_on(sim: AcumaticaSimulator, client: Any) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    sim.set_faults(FaultPlan(timeout_after_rate=1.0, paths=["/ReleaseBill$"]))
    with pytest.raises(TransportFailure) as lost:
        client.invoke_action(BILL, "ReleaseBill", keys(reference))
    assert lost.value.may_have_been_applied
    assert len(recorded(client, "/Bill/ReleaseBill")) == 1  # sent once: an action is never retried
    sim.clear_faults()
    sim.clock.advance(2)
    assert value(sim.bill(reference), "Status") == "Open"


def test_invoking_again_after_a_lost_answer_fails_as_the_release_is_not_idempotent(
    sim: AcumaticaSimulator, client: Any
) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    sim.set_faults(FaultPlan(timeout_after_rate=1.0, paths=["/ReleaseBill$"]))
    with pytest.raises(TransportFailure):
        client.invoke_action(BILL, "ReleaseBill", keys(reference))
    sim.clear_faults()
    sim.clock.advance(2)
    again = client.invoke_action(BILL, "ReleaseBill", keys(reference))
    sim.clock.advance(2)
    with pytest.raises(ActionFailed, match="invalid for processing"):
        client.action_status(again)


def test_polling_cut_off_by_resets_leaves_the_action_running_to_completion(sim: AcumaticaSimulator,
                                                                          client: Any) -> None:
    reference = sim.references("Bill", "Balanced")[0]
    location = client.invoke_action(BILL, "ReleaseBill", keys(reference))
    sim.set_faults(FaultPlan(reset_rate=1.0, paths=["/status/"]))
    with pytest.raises(TransportFailure):
        client.action_status(location)
    sim.clock.advance(2)
    sim.clear_faults()
    assert client.action_status(location) is ActionStatus.DONE
    assert value(sim.bill(reference), "Status") == "Open"


def test_a_served_instance_under_a_virtual_directory_resolves_the_status_location(store: MemoryTokenStore) -> None:
    sim = AcumaticaSimulator(size=12, start=START, site_path="/AcumaticaDB")
    try:
        with served(sim) as server, in_process_client(
            sim, store=store, base_url=f"{server.base_url}/AcumaticaDB", transport=httpx.HTTPTransport()
        ) as remote:
            location = remote.invoke_action(BILL, "ReleaseBill", keys(sim.references("Bill", "Balanced")[0]))
            assert location.startswith(f"{server.base_url}/AcumaticaDB/entity/")
            assert remote.action_status(location) is ActionStatus.RUNNING
    finally:
        sim.close()


def test_the_concurrent_request_limit_is_absorbed_by_retries(store: MemoryTokenStore) -> None:
    sim = AcumaticaSimulator(size=12, start=START, licence=Licence("Small", api_users=3, concurrent_requests=1))
    try:
        with in_process_client(sim, store=store) as limited:
            list(limited.iter_pages(AcumaticaEntity.VENDOR))  # signs in
            sim.set_faults(FaultPlan(rate_limit_burst=1))
            assert list(limited.iter_pages(AcumaticaEntity.VENDOR))
    finally:
        sim.close()
