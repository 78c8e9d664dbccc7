"""Every request the Acumatica client sends, checked against Acumatica's own contract.

A realistic workload (sign-in, filtered and paged reads with $expand/$select, reads by keys and
by id, insert/update PUTs, a bill release polled to the end, a PO approval, sign-out) runs against
the simulator; its ``/_sandbox/requests`` recording is validated with openapi-core against
``specs/acumatica-default-24.200.001.openapi.json``: paths, query parameters and their types,
bodies against the entity schemas (value objects). The calls the endpoint's contract does not
describe are checked against what Acumatica documents for them: the identity server's token
requests (OAuth form posts), the action status URLs (exactly the ``Location`` an action answered),
the endpoint list and sign-out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.testing import MockRequest

from ml_connector_dagster.sandbox import acumatica as sandbox
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
from ml_connector_dagster.systems.acumatica.client import AcumaticaClient, AcumaticaEntity
from ml_connector_dagster_tests.acumatica_sandbox import API, IN_PROCESS_URL, in_process_client, value

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "acumatica-default-24.200.001.openapi.json"
SPEC_HOST = "http://localhost"
SPEC_PREFIX = "/24r200"  # the spec's server: http://localhost/24r200/entity/Default/24.200.001
TOKEN_PATH = "/identity/connect/token"
OUTSIDE_THE_CONTRACT = {"/entity", "/entity/auth/logout", TOKEN_PATH}
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@cache
def openapi() -> OpenAPI:
    # Validating the vendor's 2.5 MB document itself costs seconds and is not what this test is about.
    return OpenAPI.from_dict(dict(spec()), config=Config(spec_validator_cls=None))


def workload(client: AcumaticaClient, sim: AcumaticaSimulator) -> list[str]:
    """A day of syncing and acting on exceptions; returns the Locations the actions answered."""
    since = START - timedelta(days=3)
    for entity, expand in ((AcumaticaEntity.BILL, ("Details", "TaxDetails")),
                           (AcumaticaEntity.PURCHASE_ORDER, ("Details",)),
                           (AcumaticaEntity.PAYMENT, ("DocumentsToApply",))):
        for _ in client.iter_changed(entity, since, expand=expand):
            pass
        for _ in client.iter_changed(entity, since, select=("LastModifiedDateTime",)):
            pass
    for _ in client.iter_pages(AcumaticaEntity.VENDOR):
        pass
    client.check_endpoint()
    reference = sim.references("Bill", "Balanced")[0]
    bill = client.get(AcumaticaEntity.BILL, ["Bill", reference], expand=("Details",))
    client.get(AcumaticaEntity.BILL, [bill["id"]])
    created = client.insert(AcumaticaEntity.BILL, {
        "Vendor": sim.references("Vendor")[0], "VendorRef": "F-88121", "Description": "Frakt november",
        "Date": START.date(), "Details": [{"TransactionDescription": "Frakt", "Qty": 2, "UnitCost": 150.0,
                                          "Account": "6100", "TaxCategory": "MVA25"}],
    })
    client.update(AcumaticaEntity.BILL, {"id": created["id"], "Amount": 375.0, "Hold": False})
    client.put(AcumaticaEntity.BILL, {"Type": "Bill", "ReferenceNbr": reference, "Description": "Kontrollert"})
    locations = [client.invoke_action(AcumaticaEntity.BILL, "ReleaseBill", {"Type": "Bill", "ReferenceNbr": reference})]
    client.action_status(locations[0])
    sim.clock.advance(2)
    client.action_status(locations[0])
    order = sim.references("PurchaseOrder", "Pending Approval")[0]
    locations.append(client.invoke_action(AcumaticaEntity.PURCHASE_ORDER, "Approve",
                                          {"Type": "Normal", "OrderNbr": order}))
    payment = sim.references("Payment", "Balanced")[0]
    locations.append(client.invoke_action(AcumaticaEntity.PAYMENT, "ReleasePayment",
                                          {"Type": "Payment", "ReferenceNbr": payment}))
    client.sign_out()
    return locations


@pytest.fixture(scope="module")
def recorded() -> tuple[list[dict[str, Any]], list[str]]:
    sim = AcumaticaSimulator(size=60, start=START)
    try:
        with in_process_client(sim, page_size=9) as client:
            locations = workload(client, sim)
            assert value(sim.bill(sim.references("Bill", "Open")[0]), "Status") == "Open"
            return client.http.get(f"{IN_PROCESS_URL}/_sandbox/requests").json(), locations
    finally:
        sim.close()


def is_status_poll(call: dict[str, Any]) -> bool:
    return "/status/" in call["path"]


def endpoint_calls(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in recorded if c["path"] not in OUTSIDE_THE_CONTRACT and not is_status_poll(c)]


def spec_path(call: dict[str, Any]) -> str:
    """The path as the spec's templates see it: a record read by several keys (``/Bill/Bill/001042``)
    fills the one ``{ids}`` parameter, whose values the spec itself describes as slash-delimited."""
    entity_path, _, rest = call["path"].removeprefix(API + "/").partition("/")
    if call["method"] == "GET" and rest.count("/"):
        rest = rest.replace("/", "%2F")
    return f"{SPEC_PREFIX}{API}/{entity_path}" + (f"/{rest}" if rest else "")


def as_spec_request(call: dict[str, Any]) -> MockRequest:
    headers = {k: v for k, v in call["headers"].items() if k not in ("host", "content-length")}
    body = call["body"]
    return MockRequest(
        SPEC_HOST, call["method"].lower(), spec_path(call), args=call["query"], headers=headers,
        data=None if body is None else json.dumps(body),
        content_type=headers.get("content-type", "application/json").split(";")[0],
    )


def test_the_workload_touches_every_kind_of_call(recorded: tuple[list[dict[str, Any]], list[str]]) -> None:
    calls, _ = recorded
    kinds = {(c["method"], c["path"].rsplit("/", 1)[-1]) for c in calls}
    assert {("GET", "Bill"), ("PUT", "Bill"), ("POST", "ReleaseBill"), ("POST", "Approve"),
            ("POST", "ReleasePayment"), ("POST", "token"), ("POST", "logout")} <= kinds
    assert any(is_status_poll(c) for c in calls)


def test_every_endpoint_request_matches_the_spec(recorded: tuple[list[dict[str, Any]], list[str]]) -> None:
    failures = []
    for call in endpoint_calls(recorded[0]):
        try:
            openapi().validate_request(as_spec_request(call))
        except Exception as error:  # collected, so one run shows every mismatch
            failures.append(f"{call['method']} {call['path']}?{call['query']}: {error}")
    assert failures == []


def test_no_request_carries_a_query_parameter_the_spec_does_not_know(
    recorded: tuple[list[dict[str, Any]], list[str]]
) -> None:
    finder = APICallPathFinder(openapi().spec)
    unknown = set()
    for call in endpoint_calls(recorded[0]):
        found = finder.find(call["method"].lower(), f"{SPEC_HOST}{spec_path(call)}")
        declared = {p["name"] for p in found.operation.get("parameters", []) if p["in"] == "query"}
        unknown |= {(found.path.parts[-1], name) for name in set(call["query"]) - declared}
    assert unknown == set()


def test_every_endpoint_url_carries_the_pinned_version(recorded: tuple[list[dict[str, Any]], list[str]]) -> None:
    assert all(c["path"].startswith(API + "/") for c in endpoint_calls(recorded[0]))


def test_every_api_call_is_authenticated_with_a_bearer_token(recorded: tuple[list[dict[str, Any]], list[str]]) -> None:
    api = [c for c in recorded[0] if c["path"].startswith("/entity/") or is_status_poll(c)]
    assert api and all(c["headers"].get("authorization") == "Bearer ***" for c in api)


def test_token_requests_are_oauth_form_posts_of_the_password_or_refresh_grant(
    recorded: tuple[list[dict[str, Any]], list[str]]
) -> None:
    tokens = [c for c in recorded[0] if c["path"] == TOKEN_PATH]
    assert tokens and all(c["method"] == "POST" for c in tokens)
    for call in tokens:
        assert call["headers"]["content-type"] == "application/x-www-form-urlencoded"
        body = call["body"]
        assert body["client_id"] == sandbox.DEMO_CLIENT_ID and body["client_secret"] == "***"
        if body["grant_type"] == "password":
            assert body == {"grant_type": "password", "client_id": sandbox.DEMO_CLIENT_ID, "client_secret": "***",
                            "username": sandbox.DEMO_USERNAME, "password": "***", "scope": "api offline_access"}
        else:
            assert set(body) == {"grant_type", "client_id", "client_secret", "refresh_token"}
            assert body["grant_type"] == "refresh_token"


def test_status_polls_go_exactly_to_the_locations_the_actions_answered(
    recorded: tuple[list[dict[str, Any]], list[str]]
) -> None:
    calls, locations = recorded
    polled = {f"{IN_PROCESS_URL}{c['path']}" for c in calls if is_status_poll(c)}
    assert polled and all(c["method"] == "GET" and c["body"] is None for c in calls if is_status_poll(c))
    assert polled <= set(locations)


def test_action_bodies_name_the_record_by_value_objects_and_carry_parameters(
    recorded: tuple[list[dict[str, Any]], list[str]]
) -> None:
    actions = [c for c in recorded[0] if c["method"] == "POST" and c["path"].startswith(API)]
    assert actions and all(set(c["body"]) == {"entity", "parameters"} for c in actions)
    assert all(all(set(v) == {"value"} for v in c["body"]["entity"].values()) for c in actions)
