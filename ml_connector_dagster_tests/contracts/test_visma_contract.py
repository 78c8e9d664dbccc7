"""Every request the Visma client sends, checked against Visma's published OpenAPI contract.

A realistic workload (token, filtered lists, single reads, a conditional update, a create) runs
against the simulator; its ``/_sandbox/requests`` recording is then validated with openapi-core:
path templates, parameter types, and request bodies against the spec's ``*UpdateDto`` schemas.
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

from ml_connector_dagster.sandbox import visma as sandbox
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity
from ml_connector_dagster.systems.visma.models import as_update_dto
from ml_connector_dagster_tests.visma_sandbox import IN_PROCESS_URL, in_process_client

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "visma-net-v1.swagger.json"
SPEC_HOST = "https://api.finance.visma.net"  # the spec's server; the sandbox's base URL maps onto it
# Sent on purpose beyond the spec: API_NOTES says pageNumber/pageSize are mandatory on every list
# (the spec omits them for /v1/account), and the condition always travels with lastModifiedDateTime
# (/v2/journaltransaction documents the value alone, meaning ">=", which is what we send).
DELIBERATE_EXTRAS = {
    "/v1/account": {"pageNumber", "pageSize"},
    "/v2/journaltransaction": {"lastModifiedDateTimeCondition"},
}


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@cache
def openapi() -> OpenAPI:
    document = dict(spec())
    # openapi-core accepts "3.0.4" as written; validating the vendor's 4 MB document itself costs
    # seconds and is not what this test is about, so the spec validator is switched off.
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


def workload(client: VismaClient, sim: VismaSimulator) -> None:
    """What a day of syncing asks of Visma."""
    since = datetime.now(UTC) - timedelta(days=3)
    for entity in (VismaEntity.SUPPLIER_INVOICE, VismaEntity.PURCHASE_ORDER, VismaEntity.CUSTOMER_INVOICE,
                   VismaEntity.PAYMENT, VismaEntity.SUPPLIER_PAYMENT, VismaEntity.JOURNAL_TRANSACTION):
        for _ in client.iter_changed(entity, since):
            pass
    client.get(VismaEntity.SUPPLIER_PAYMENT, "000001")  # a webhook's record, fetched by number
    for entity in (VismaEntity.SUPPLIER, VismaEntity.ACCOUNT):
        for _ in client.iter_pages(entity):
            pass
    for dimension_id in client.list_dimension_ids():
        client.get_dimension(dimension_id)
    _, etag = client.get(VismaEntity.SUPPLIER_INVOICE, "000004")
    client.update(VismaEntity.SUPPLIER_INVOICE, "000004", as_update_dto({"description": "Checked", "hold": False}), etag)
    _, etag = client.get(VismaEntity.PURCHASE_ORDER, "PO000002")
    client.update(VismaEntity.PURCHASE_ORDER, "PO000002", as_update_dto({"description": "Confirmed"}), etag)
    client.create(VismaEntity.SUPPLIER_INVOICE, as_update_dto({
        "documentType": "Invoice", "supplierNumber": "10002", "date": datetime(2026, 11, 20, tzinfo=UTC),
        "supplierReference": "INV-88121", "description": "Freight November", "currencyId": "NOK",
    }))


@pytest.fixture(scope="module")
def recorded() -> list[dict[str, Any]]:
    sim = VismaSimulator(size=150)
    with in_process_client(sim, page_size=40) as client:
        workload(client, sim)
        return client.http.get(f"{IN_PROCESS_URL}/_sandbox/requests").json()


def api_calls(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recorded if r["path"] != "/connect/token"]


def as_spec_request(call: dict[str, Any]) -> MockRequest:
    headers = {k: v for k, v in call["headers"].items() if k not in ("host", "content-length")}
    body = call["body"]
    return MockRequest(
        SPEC_HOST, call["method"].lower(), call["path"], args=call["query"], headers=headers,
        data=None if body is None else json.dumps(body),
        content_type=headers.get("content-type", "application/json").split(";")[0],
    )


def test_the_workload_touches_every_kind_of_call(recorded: list[dict[str, Any]]) -> None:
    methods = {(r["method"], r["path"].count("/")) for r in api_calls(recorded)}
    assert {("GET", 2), ("GET", 3), ("PUT", 3), ("POST", 2)} <= methods
    assert any(r["path"] == "/connect/token" for r in recorded)


@pytest.mark.filterwarnings("ignore:Unsupported scheme type")  # openapi-core cannot check oauth2 itself
def test_every_api_request_matches_the_spec(recorded: list[dict[str, Any]]) -> None:
    failures = []
    for call in api_calls(recorded):
        try:
            openapi().validate_request(as_spec_request(call))
        except Exception as error:  # collected, so one run shows every mismatch
            failures.append(f"{call['method']} {call['path']}?{call['query']}: {error}")
    assert failures == []


def test_no_request_carries_a_query_parameter_the_spec_does_not_know(recorded: list[dict[str, Any]]) -> None:
    finder = APICallPathFinder(openapi().spec)
    unknown = set()
    for call in api_calls(recorded):
        found = finder.find(call["method"].lower(), f"{SPEC_HOST}{call['path']}")
        declared = {p["name"] for p in found.operation.get("parameters", []) if p["in"] == "query"}
        template = found.path.parts[-1]  # e.g. "/v1/dimension/{dimensionId}"
        extras = set(call["query"]) - declared - DELIBERATE_EXTRAS.get(template, set())
        unknown |= {(template, name) for name in extras}
    assert unknown == set()


def test_the_workload_reads_supplier_payments_by_the_spec_path(recorded: list[dict[str, Any]]) -> None:
    paths = {call["path"] for call in api_calls(recorded) if call["path"].startswith("/v1/supplierPayment")}
    assert paths == {"/v1/supplierPayment", "/v1/supplierPayment/000001"}


def test_every_call_is_authenticated_with_a_bearer_token(recorded: list[dict[str, Any]]) -> None:
    assert all(call["headers"].get("authorization") == "Bearer ***" for call in api_calls(recorded))


def test_token_requests_are_client_credentials_with_tenant_and_scope(recorded: list[dict[str, Any]]) -> None:
    tokens = [r for r in recorded if r["path"] == "/connect/token"]
    assert tokens and all(r["method"] == "POST" for r in tokens)
    for token in tokens:
        assert token["headers"]["content-type"] == "application/x-www-form-urlencoded"
        assert token["body"] == {
            "grant_type": "client_credentials", "client_id": sandbox.DEMO_CLIENT_ID, "client_secret": "***",
            "scope": sandbox.DEMO_SCOPE, "tenant_id": sandbox.DEMO_TENANT_ID,
        }
    security = spec()["components"]["securitySchemes"]["serviceapi"]["flows"]["clientCredentials"]
    assert security["tokenUrl"].endswith("/connect/token")
