"""The J1P client against the simulator: OAuth, configured paths, paging by keyset, filters, 429s."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.config import ConfigError, parse_config
from ml_connector_dagster.core import http as core_http
from ml_connector_dagster.core.http import AuthenticationFailed, NotFound
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jaggaer import (
    DEFAULT_PATHS,
    DEMO_CLIENT_SECRET,
    MAX_PAGE_SIZE,
    TOKEN_TTL_S,
    JaggaerSimulator,
)
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jaggaer.client import JaggaerEntity, format_filter_timestamp, resolve_paths
from ml_connector_dagster.systems.jaggaer.models import Invoice, parse_timestamp, validate_record
from ml_connector_dagster_tests.jaggaer_sandbox import IN_PROCESS_URL, in_process_client, state

START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INVOICES = JaggaerEntity.INVOICES


@pytest.fixture
def sim() -> JaggaerSimulator:
    return JaggaerSimulator(size=120, start=START)


@pytest.fixture(autouse=True)
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries wait on core.http.default_sleep: record instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(core_http, "default_sleep", waits.append)
    return waits


def recorded(sim: JaggaerSimulator, path: str = DEFAULT_PATHS["invoices"]) -> list[dict[str, Any]]:
    with httpx.Client(transport=InProcessTransport(sim.app), base_url=IN_PROCESS_URL) as http:
        return [r for r in http.get("/_sandbox/requests").json() if r["path"] == path]


def ids(pages: Iterator[list[dict[str, Any]]], field: str = "invoiceId") -> list[int]:
    return [record[field] for page in pages for record in page]


def modified(record: dict[str, Any]) -> datetime:
    return parse_timestamp(record["lastModifiedDate"])


class EditingTransport(httpx.BaseTransport):
    """Delivers to the simulator and, after the first list page, lets a user edit a record."""

    def __init__(self, sim: JaggaerSimulator, edit: Any) -> None:
        self.inner = InProcessTransport(sim.app)
        self.edit = edit
        self.pages = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path == DEFAULT_PATHS["invoices"]:
            self.pages += 1
            if self.pages == 1:
                self.edit()
        return response


# -- reading ---------------------------------------------------------------------------------------


def test_every_record_is_read_once_across_pages(sim: JaggaerSimulator) -> None:
    with in_process_client(sim, page_size=25) as client:
        read = ids(client.iter_all(INVOICES))
    assert sorted(read) == sorted(r["invoiceId"] for r in state(sim, "invoices"))
    assert len(read) == len(set(read))


def test_pages_are_asked_from_zero_sorted_by_modification(sim: JaggaerSimulator) -> None:
    with in_process_client(sim, page_size=25) as client:
        next(client.iter_all(INVOICES))
    first = recorded(sim)[0]["query"]
    assert (first["page"], first["sort"]) == ("0", "lastModifiedDate,asc")


def test_a_page_size_the_server_clamps_does_not_end_the_read_early(sim: JaggaerSimulator) -> None:
    with in_process_client(sim, page_size=500) as client:
        read = ids(client.iter_all(INVOICES))
    assert len(read) == 120 > MAX_PAGE_SIZE


def test_a_changed_read_sends_its_window_in_utc_with_an_offset(sim: JaggaerSimulator) -> None:
    since, until = START - timedelta(days=3), START - timedelta(days=1)
    with in_process_client(sim) as client:
        list(client.iter_changed(INVOICES, since, until))
    query = recorded(sim)[0]["query"]
    assert (query["lastModifiedFrom"], query["lastModifiedTo"]) == (
        "2026-11-18T12:00:00.000000+00:00", "2026-11-20T12:00:00.000000+00:00")


def test_a_changed_read_returns_exactly_its_window(sim: JaggaerSimulator) -> None:
    since, until = START - timedelta(days=5), START - timedelta(days=2)
    with in_process_client(sim, page_size=7) as client:
        read = ids(client.iter_changed(INVOICES, since, until))
    expected = [r["invoiceId"] for r in state(sim, "invoices") if since <= modified(r) < until]
    assert sorted(read) == sorted(expected) and len(read) == len(set(read))


def test_a_record_changed_during_the_read_does_not_make_another_one_be_skipped(sim: JaggaerSimulator) -> None:
    since, until = START - timedelta(days=14), START - timedelta(hours=1)
    before = [r for r in state(sim, "invoices") if since <= modified(r) < until]
    moved = before[0]  # edited by a user after the first page: it leaves the window, others shift
    transport = EditingTransport(sim, lambda: sim.update("invoices", moved["invoiceId"], status="PAID"))
    with in_process_client(sim, page_size=10, transport=transport) as client:
        read = set(ids(client.iter_changed(INVOICES, since, until)))
    assert {r["invoiceId"] for r in before} <= read


def test_a_cluster_larger_than_a_page_is_read_whole(sim: JaggaerSimulator) -> None:
    instant = START - timedelta(hours=5)
    cluster = [r["invoiceId"] for r in state(sim, "invoices")[:9]]
    for invoice_id in cluster:
        sim.update("invoices", invoice_id, at=instant)
    with in_process_client(sim, page_size=4) as client:
        read = ids(client.iter_changed(INVOICES, instant))
    assert sorted(read) == sorted(cluster + [r["invoiceId"] for r in state(sim, "invoices") if modified(r) > instant])
    assert len(read) == len(set(read))


# -- a long window in time slices ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def large() -> JaggaerSimulator:
    """1,200 invoices over two weeks: enough pages of 10 for a window to be cut in slices."""
    return JaggaerSimulator(size=1200, start=START, rate_limit_per_minute=1_000_000)


def requests_of(sim: JaggaerSimulator, read: Callable[[], Any]) -> list[dict[str, str]]:
    before = len(sim.requests)
    read()
    return [request.query for request in sim.requests[before:] if request.path == DEFAULT_PATHS["invoices"]]


def test_a_long_window_is_read_in_time_slices_each_record_once(large: JaggaerSimulator) -> None:
    since, until = START - timedelta(days=14), START
    read: list[int] = []
    with in_process_client(large, page_size=10, read_slices=3) as client:
        sliced = requests_of(large, lambda: read.extend(ids(client.iter_changed(INVOICES, since, until))))
    with in_process_client(large, page_size=10, read_slices=1) as client:
        walked = requests_of(large, lambda: list(client.iter_changed(INVOICES, since, until)))
    expected = [r["invoiceId"] for r in state(large, "invoices") if since <= modified(r) < until]
    assert sorted(read) == sorted(expected) and len(read) == len(set(read))
    assert len({query["lastModifiedTo"] for query in sliced}) == 3  # the first walk's rest, and two more slices
    assert len(sliced) <= len(walked) + 3  # a request more per slice at most


def test_a_window_of_few_pages_is_read_in_one_walk(sim: JaggaerSimulator) -> None:
    since, until = START - timedelta(days=14), START
    with in_process_client(sim, page_size=10, read_slices=3) as client:
        queries = requests_of(sim, lambda: list(client.iter_changed(INVOICES, since, until)))
    assert {query["lastModifiedTo"] for query in queries} == {format_filter_timestamp(until)}


def test_an_open_ended_read_is_one_walk_whatever_the_slices(large: JaggaerSimulator) -> None:
    read: list[int] = []
    with in_process_client(large, page_size=10, read_slices=4) as client:
        queries = requests_of(large, lambda: read.extend(ids(client.iter_changed(INVOICES, START - timedelta(days=14)))))
    assert len(read) == len(set(read)) >= 1000
    assert all("lastModifiedTo" not in query for query in queries)


@settings(max_examples=25, deadline=None)
@given(start_h=st.integers(0, 14 * 24), hours=st.integers(1, 14 * 24), page_size=st.integers(3, 40),
       read_slices=st.integers(1, 5))
def test_any_window_in_any_slices_reads_what_a_scan_of_every_record_would(
    large: JaggaerSimulator, start_h: int, hours: int, page_size: int, read_slices: int
) -> None:
    since = START - timedelta(days=14) + timedelta(hours=start_h, microseconds=start_h * 37)
    until = since + timedelta(hours=hours)
    with in_process_client(large, page_size=page_size, read_slices=read_slices) as client:
        read = ids(client.iter_changed(INVOICES, since, until))
    expected = [r["invoiceId"] for r in state(large, "invoices") if since <= modified(r) < until]
    assert sorted(read) == sorted(expected) and len(read) == len(set(read))


def test_a_record_changed_during_a_sliced_read_does_not_make_another_one_be_skipped() -> None:
    sim = JaggaerSimulator(size=600, start=START)
    since, until = START - timedelta(days=14), START + timedelta(hours=1)
    before = [r for r in state(sim, "invoices") if since <= modified(r) < until]
    moved = before[0]  # edited after the first page: it leaves its slice for the last one, the others shift
    transport = EditingTransport(sim, lambda: sim.update("invoices", moved["invoiceId"], status="PAID"))
    with in_process_client(sim, page_size=10, read_slices=3, transport=transport) as client:
        read = ids(client.iter_changed(INVOICES, since, until))
    assert {r["invoiceId"] for r in before} <= set(read)


def test_a_sliced_read_under_server_errors_and_resets_still_reads_every_record_once() -> None:
    sim = JaggaerSimulator(size=600, start=START, rate_limit_per_minute=1_000_000)
    sim.set_faults(FaultPlan(error_rate=0.15, reset_rate=0.05, seed=3, paths=[DEFAULT_PATHS["invoices"]]))
    since, until = START - timedelta(days=14), START
    with in_process_client(sim, page_size=10, read_slices=3) as client:
        read = ids(client.iter_changed(INVOICES, since, until))
    expected = [r["invoiceId"] for r in state(sim, "invoices") if since <= modified(r) < until]
    assert sorted(read) == sorted(expected) and len(read) == len(set(read))
    asked = [request for request in sim.requests if request.path == DEFAULT_PATHS["invoices"]]
    assert len(asked) > len(expected) // 10 + 3 + 5  # failed pages were asked again


def test_get_reads_one_record_and_an_unknown_one_is_not_found(sim: JaggaerSimulator) -> None:
    with in_process_client(sim) as client:
        assert client.get(JaggaerEntity.VENDORS, 310001)["supplierId"] == 310001
        with pytest.raises(NotFound):
            client.get(INVOICES, 1)


def test_records_validate_into_models_and_malformed_ones_name_the_field(sim: JaggaerSimulator) -> None:
    with in_process_client(sim) as client:
        raw = [record for page in client.iter_all(INVOICES) for record in page]
    checked = {str(r["invoiceId"]): validate_record(Invoice, r) for r in raw}
    invalid = {record_id for collection, record_id, _ in sim.invalid_records() if collection == "invoices"}
    assert {record_id for record_id, result in checked.items() if isinstance(result, str)} == invalid
    assert all(result.split(":")[0] in {"totalAmount", "currency"} for result in checked.values() if isinstance(result, str))


# -- OAuth, rate limits ---------------------------------------------------------------------------------


def test_the_token_is_renewed_when_it_expires(sim: JaggaerSimulator) -> None:
    with in_process_client(sim) as client:
        next(client.iter_all(INVOICES))
        sim.clock.advance(TOKEN_TTL_S + 1)  # the cached token dies server-side: 401, then a new token
        assert next(client.iter_all(INVOICES))
    assert len(recorded(sim, sim.token_path)) == 2


def test_a_429_is_retried_after_the_servers_retry_after(sim: JaggaerSimulator, slept: list[float]) -> None:
    with in_process_client(sim) as client:
        next(client.iter_all(INVOICES))
        sim.set_faults(FaultPlan(rate_limit_burst=1, retry_after_s=7))
        assert next(client.iter_all(INVOICES))
    assert max(slept) >= 7


def test_refused_credentials_raise_authentication_failed_without_the_secret(sim: JaggaerSimulator) -> None:
    with in_process_client(sim, client_secret="wrong-secret-4711") as client, pytest.raises(AuthenticationFailed) as raised:
        next(client.iter_all(INVOICES))
    assert "invalid_client" in str(raised.value) and "wrong-secret-4711" not in str(raised.value)


def test_the_client_repr_shows_no_secret(sim: JaggaerSimulator) -> None:
    with in_process_client(sim) as client:
        assert DEMO_CLIENT_SECRET not in repr(client) + repr(client.http.auth)


# -- configured paths -------------------------------------------------------------------------------------


def test_configured_path_templates_are_filled_and_used() -> None:
    custom = JaggaerSimulator(size=20, start=START, paths={"invoices": "/j1p/api/public/fjordlys-no/invoices"})
    templates = {**DEFAULT_PATHS, "invoices": "/j1p/api/public/{org_unit}/invoices"}
    with in_process_client(custom, paths=templates, path_parameters={"org_unit": "fjordlys-no"}) as client:
        assert len(ids(client.iter_all(INVOICES))) == 20


def test_a_placeholder_without_a_value_is_refused_naming_the_entity() -> None:
    with pytest.raises(ValueError, match=r"paths\.vendors: no value for org_unit"):
        resolve_paths({**DEFAULT_PATHS, "vendors": "/api/{org_unit}/suppliers"})


def test_path_parameters_are_url_quoted() -> None:
    paths = resolve_paths({**DEFAULT_PATHS, "vendors": "/api/{org}/suppliers"}, {"org": "a b/c"})
    assert paths[JaggaerEntity.VENDORS] == "/api/a%20b%2Fc/suppliers"


def test_connector_yaml_refuses_a_placeholder_without_a_value() -> None:
    settings = {"base_url": "https://x.jaggaer.com", "token_url": "https://x.jaggaer.com/t",
                "paths": {"invoices": "/api/{tenant}/invoices"}}
    with pytest.raises(ConfigError, match=r"paths\.invoices: no value for tenant"):
        parse_config({"systems": {"jaggaer": settings}})


def test_connector_yaml_refuses_a_relative_path() -> None:
    settings = {"base_url": "https://x.jaggaer.com", "token_url": "https://x.jaggaer.com/t",
                "paths": {"vendors": "suppliers"}}
    with pytest.raises(ConfigError, match=r"systems\.jaggaer\.paths\.vendors"):
        parse_config({"systems": {"jaggaer": settings}})


def test_a_filter_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_filter_timestamp(datetime(2026, 11, 21))
