"""Every Visma request the jaggaer_visma flow sends, checked against Visma's published OpenAPI contract.

The flow's whole workload runs against the simulator — creates of POs and invoices, a lost POST
answer and its lookup, updates with If-Match (one meeting a 412), supplier alignment, the
reconciliation scan — and the recording goes through the Visma client's own contract tests
(imported below, so they run here against this recording): paths, parameters and bodies against the
spec's ``*UpdateDto`` schemas with openapi-core, bearer tokens on every call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.jaggaer_visma import reconcile_partitions
from ml_connector_dagster.flows.jaggaer_visma_plan import (
    INVOICES,
    KINDS,
    load_references,
    plan_partitions,
)
from ml_connector_dagster.flows.jaggaer_visma_push import push_plan
from ml_connector_dagster.flows.jaggaer_visma_reference import align_vendors
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster_tests.contracts.test_visma_contract import (  # noqa: F401 - run here on this recording
    api_calls,
    test_every_api_request_matches_the_spec,
    test_every_call_is_authenticated_with_a_bearer_token,
    test_no_request_carries_a_query_parameter_the_spec_does_not_know,
)
from ml_connector_dagster_tests.jaggaer_visma_sandbox import (
    DAY,
    LOG,
    EditBeforePut,
    land_documents,
    land_references,
    settings,
)
from ml_connector_dagster_tests.visma_sandbox import IN_PROCESS_URL, in_process_client


def workload(visma: VismaSimulator, jaggaer: JaggaerSimulator, ledger: Ledger) -> None:
    """A day of the flow, with the faults and races it must survive."""
    flow = settings()
    land_references(ledger, visma, jaggaer)
    land_documents(ledger, jaggaer, "purchase_orders")
    land_documents(ledger, jaggaer, "invoices")
    with in_process_client(visma) as client:
        visma.set_faults(FaultPlan(timeout_after_rate=0.5, paths=[r"^/v1/purchaseorder$"], methods=["POST"]))
        for kind in KINDS:
            push_plan(plan_partitions(kind, [DAY], ledger=ledger, settings=flow), kind, client=client, ledger=ledger,
                      run_id="run-1", log=LOG)
        visma.clear_faults()
        link = next(iter(ledger.links_for(INVOICES.flow, [r.record_id for r in plan_partitions(
            INVOICES, [DAY], ledger=ledger, settings=flow).records]).values()))
        visma.update_supplier_invoice(link.dest_id or "", status="Balanced")
        jaggaer.update("invoices", link.source_id, dueDate="2027-01-31")
        jaggaer.update("vendors", 310001, name="Fjordlys Energi Bergen AS")
        land_documents(ledger, jaggaer, "invoices")
        land_references(ledger, visma, jaggaer)
        for kind in KINDS:
            reconcile_partitions(kind, [DAY], client=client, ledger=ledger, settings=flow)
    racing = EditBeforePut(InProcessTransport(visma.app),
                           lambda: visma.update_supplier_invoice(link.dest_id or "", paymentMessage="KID 1"))
    with in_process_client(visma, transport=racing) as client:
        push_plan(plan_partitions(INVOICES, [DAY], ledger=ledger, settings=flow), INVOICES, client=client, ledger=ledger,
                  run_id="run-2", log=LOG)
        align_vendors(load_references(ledger, flow), client=client, ledger=ledger, settings=flow, run_id="run-2", log=LOG)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    visma, jaggaer = VismaSimulator(size=30), JaggaerSimulator(size=30)
    ledger = Ledger.open(f"sqlite:///{Path(tmp_path_factory.mktemp('contract')) / 'ledger.db'}")
    try:
        workload(visma, jaggaer, ledger)
        with in_process_client(visma) as client:
            return client.http.get(f"{IN_PROCESS_URL}/_sandbox/requests").json()
    finally:
        ledger.dispose()
        visma.close()


def test_the_workload_creates_updates_looks_up_and_aligns(recorded: list[dict[str, Any]]) -> None:
    calls = {(r["method"], r["path"].rsplit("/", 1)[0] if r["path"].count("/") == 3 else r["path"])
             for r in api_calls(recorded)}
    assert {("POST", "/v1/purchaseorder"), ("POST", "/v1/supplierInvoice"), ("PUT", "/v1/supplierInvoice"),
            ("PUT", "/v1/supplier"), ("GET", "/v1/purchaseorder"), ("GET", "/v1/supplierInvoice")} <= calls
    statuses = [r for r in api_calls(recorded) if r["method"] == "PUT" and r["path"].startswith("/v1/supplierInvoice/")]
    assert len(statuses) == 2  # one met a 412, the second went through


def test_every_update_is_conditional(recorded: list[dict[str, Any]]) -> None:
    puts = [call for call in api_calls(recorded) if call["method"] == "PUT"]
    assert puts and all(call["headers"].get("if-match") for call in puts)


def test_purchase_orders_are_posted_once_each_despite_lost_answers(recorded: list[dict[str, Any]]) -> None:
    posted = [call["body"]["description"]["value"] for call in api_calls(recorded)
              if call["method"] == "POST" and call["path"] == "/v1/purchaseorder"]
    assert posted and len(posted) == len(set(posted))
    assert all(text.startswith("JAGGAER PO ") for text in posted)
