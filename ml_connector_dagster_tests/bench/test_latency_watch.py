"""How the latency benchmark sees a change arrive at Asana and monday: by the record's id in the task's
"Visma ID" custom field, or in the invoice board's "Visma ID" column, read from the simulators'
``/_sandbox/state`` as they serve it."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest

from bench.latency_flows import LATENCY_FLOWS, asana_tasks, monday_items
from ml_connector_dagster.sandbox.launch import serve_sandbox


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    with serve_sandbox(["asana", "monday"], reuse_running=False, seed=0, size=5, days=1) as served:
        yield dict(served)


def _pat(url: str) -> str:
    return httpx.get(f"{url}/_sandbox/credentials", timeout=10).json()["pat"]


def test_an_asana_task_arrives_when_one_carries_the_id_in_its_visma_id_field(urls: dict[str, str]) -> None:
    url = urls["asana"]
    state = httpx.get(f"{url}/_sandbox/state", timeout=10).json()
    field = next(f["gid"] for f in state["custom_fields"] if f["name"] == "Visma ID")
    project = next(p for p in state["projects"] if any(s["custom_field"]["gid"] == field
                                                       for s in p["custom_field_settings"]))  # fmt: skip
    look = asana_tasks("Visma ID")(SimpleNamespace(urls=urls))  # type: ignore[arg-type]
    with httpx.Client(timeout=10) as client:
        assert "supplierInvoice/777001" not in look(client)
        client.post(f"{url}/api/1.0/tasks", headers={"Authorization": f"Bearer {_pat(url)}"},
                    json={"data": {"name": "Invoice 777001", "projects": [project["gid"]],
                                   "custom_fields": {field: "supplierInvoice/777001"}}}).raise_for_status()
        arrived, stamp = look(client)["supplierInvoice/777001"]
    assert arrived and stamp is not None and stamp > 0


def test_a_monday_item_arrives_when_the_invoice_board_shows_its_number_in_the_visma_id_column(
        urls: dict[str, str]) -> None:  # fmt: skip
    state = httpx.get(f"{_root(urls['monday'])}/_sandbox/state", timeout=10).json()
    board = next(b for b in state["boards"] if b["name"] == "Procurement — supplier invoices")
    column = next(c["id"] for c in board["columns"] if c["title"] == "Visma ID")
    shown = {value["text"] for item in state["items"] if item["board"]["id"] == board["id"]
             for value in item["column_values"] if value["id"] == column and value.get("text")}  # fmt: skip
    look = monday_items("Visma ID", "supplierInvoice/")(SimpleNamespace(urls=urls))  # type: ignore[arg-type]
    with httpx.Client(timeout=10) as client:
        arrivals = look(client)
    assert shown and {f"supplierInvoice/{number}" for number in shown} <= set(arrivals)
    assert all(arrived and stamp for arrived, stamp in arrivals.values())


def test_the_visma_flows_are_timed_from_the_same_invoice_webhook() -> None:
    for name in ("visma_asana", "visma_monday"):
        flow = LATENCY_FLOWS[name]
        assert (flow.source, flow.run_op, flow.make) == ("visma", "visma__supplier_invoices",
                                                         LATENCY_FLOWS["visma_jira"].make)


def _root(url: str) -> str:
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.netloc.decode()}"
