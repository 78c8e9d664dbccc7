"""What the latency benchmark changes in each flow's source, and how it recognises the issue that follows.

- ``visma_jira``: a user creates supplier invoices through the Visma API (``POST /v1/supplierInvoice``);
  Visma's webhook reaches the receiver, the inbox run lands the invoice and creates its issue, which
  carries the invoice in the "Visma ID" field.
- ``acumatica_jira``: a user puts balanced bills on hold through the contract-based API
  (``PUT /entity/Default/24.200.001/Bill``, an API user of its own); Acumatica's push notification
  reaches the receiver, the inbox run fetches the bill by its id, the flow's ``bill_on_hold`` rule
  makes it an exception, and its issue carries ``Bill/Bill/<number>`` in the "External ID" field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .stack import Stack
    from .webhook_latency import Change

__all__ = ["LATENCY_FLOWS", "LatencyFlow"]


@dataclass(frozen=True)
class LatencyFlow:
    """One flow the latency benchmark can drive."""

    name: str  # the connector.yaml flow
    systems: tuple[str, ...]  # the simulators it needs
    source: str  # the webhook inbox's system
    source_op: str  # the source asset's op (its run config carries the inbox ids)
    issue_field: str  # the Jira field naming the source record
    change: str  # what the benchmark does, for the report: "supplier invoices created through the Visma API"
    size: int  # documents in the source simulator (enough for the changes)
    make: Callable[[Stack, int, float], list[Change]]  # (stack, count, spacing_s) -> the changes, timed


def create_supplier_invoices(stack: Stack, count: int, spacing_s: float) -> list[Change]:
    """``count`` supplier invoices through ``POST /v1/supplierInvoice``, ``spacing_s`` apart."""
    from ml_connector_dagster.sandbox.visma import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID
    from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity
    from ml_connector_dagster.systems.visma.models import as_update_dto

    from .webhook_latency import Change

    url = stack.urls["visma"]
    changes = []
    with VismaClient.build(base_url=url, token_url=f"{url}/connect/token", client_id=DEMO_CLIENT_ID,
                           client_secret=DEMO_CLIENT_SECRET, tenant_id=DEMO_TENANT_ID) as client:  # fmt: skip
        client.get(VismaEntity.SUPPLIER_INVOICE, "000001")  # the token is fetched before any clock starts
        for n in range(count):
            if n:
                time.sleep(spacing_s)
            body = as_update_dto({"supplierNumber": "10001", "documentType": "Invoice",
                                  "description": f"Latency benchmark {n + 1}/{count}"})  # fmt: skip
            posted_at = time.time()
            number = client.create(VismaEntity.SUPPLIER_INVOICE, body)
            changes.append(Change(number, f"supplierInvoice/{number}", posted_at))
    return changes


def _value(record: dict[str, Any], name: str) -> Any:
    return (record.get(name) or {}).get("value")


def hold_bills(stack: Stack, count: int, spacing_s: float) -> list[Change]:
    """``count`` balanced bills put on hold through ``PUT .../Bill``, ``spacing_s`` apart, by an API user of
    the benchmark's own (signed in before the clock starts, signed out at the end)."""
    from ml_connector_dagster.sandbox.acumatica import ENDPOINT, VERSION, sandbox_credentials

    from .webhook_latency import Change

    credentials = sandbox_credentials()
    api = f"/entity/{ENDPOINT}/{VERSION}"
    changes = []
    with httpx.Client(base_url=stack.urls["acumatica"], timeout=30) as http:
        grant = http.post("/identity/connect/token", data={
            "grant_type": "password", "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"], "username": credentials["username"],
            "password": credentials["password"], "scope": "api"})  # fmt: skip
        http.headers["Authorization"] = f"Bearer {grant.raise_for_status().json()['access_token']}"
        try:
            bills = http.get(f"{api}/Bill", params={"$filter": "Status eq 'Balanced'", "$top": count}).raise_for_status()
            balanced = [(bill["id"], _value(bill, "ReferenceNbr")) for bill in bills.json()]
            if len(balanced) < count:
                raise RuntimeError(f"the Acumatica sandbox has {len(balanced)} balanced bills, {count} asked for: "
                                   "give it more (--size)")
            for n, (bill_id, number) in enumerate(balanced):
                if n:
                    time.sleep(spacing_s)
                body = {"Type": {"value": "Bill"}, "ReferenceNbr": {"value": number}, "Hold": {"value": True},
                        "Description": {"value": f"Latency benchmark {n + 1}/{count}: held for a check"}}
                posted_at = time.time()
                http.put(f"{api}/Bill", json=body).raise_for_status()
                changes.append(Change(bill_id, f"Bill/Bill/{number}", posted_at))
        finally:
            http.post("/entity/auth/logout")
    return changes


LATENCY_FLOWS: dict[str, LatencyFlow] = {
    "visma_jira": LatencyFlow("visma_jira", ("visma", "jira"), "visma", "visma__supplier_invoices", "Visma ID",
                              "supplier invoices created through the Visma simulator's API (`POST`)", 40,
                              create_supplier_invoices),
    "acumatica_jira": LatencyFlow("acumatica_jira", ("acumatica", "jira"), "acumatica", "acumatica__bills",
                                  "External ID", "balanced bills put on hold through the Acumatica simulator's "
                                  "API (`PUT .../Bill`)", 120, hold_bills),
}
