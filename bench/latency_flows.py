"""What the latency benchmark changes in each flow's source, and how it recognises the issue that follows.

- ``visma_jira``: a user creates supplier invoices through the Visma API (``POST /v1/supplierInvoice``);
  Visma's webhook reaches the receiver, the inbox run lands the invoice and creates its issue, which
  carries the invoice in the "Visma ID" field.
- ``visma_asana``, ``visma_monday``: the same invoices as ``visma_jira``, through the same webhook and
  inbox run, to the other destinations: an Asana task in the invoices project carrying the invoice in its
  "Visma ID" custom field; a monday item on the invoice board carrying its number in its "Visma ID" column.
- ``visma_asana_return``, ``visma_monday_receipts``: the two return paths. Before the clock starts, the
  flow's webhooks are registered as an operator does once (the ``asana/visma_task_webhooks`` asset, the
  ``visma_monday_webhooks`` job); then a user completes synced invoice tasks in Asana (``PUT
  /tasks/{gid}``), or sets synced invoice items to "Received" in monday (``change_column_value``); the
  webhook reaches the receiver, the return sensor requests a run, which appends a line to the invoice's
  note in Visma: the change is seen when the note carries the task's or item's marker.
- ``acumatica_jira``: a user puts balanced bills on hold through the contract-based API
  (``PUT /entity/Default/24.200.001/Bill``, an API user of its own); Acumatica's push notification
  reaches the receiver, the inbox run fetches the bill by its id, the flow's ``bill_on_hold`` rule
  makes it an exception, and its issue carries ``Bill/Bill/<number>`` in the "External ID" field.
- ``acumatica_release``: acumatica_jira's return path. Before the clock starts, bills are put on hold
  as above and their exception issues awaited; then a user resolves each issue through Jira's API
  (the transition to a done status); Jira's webhook reaches the receiver, the resolution sensor requests a
  release run, which takes the bill off hold in Acumatica: the change is seen when the bill, in the
  Acumatica simulator's state, is no longer on hold.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .stack import Stack
    from .webhook_latency import Change

__all__ = ["LATENCY_FLOWS", "Arrivals", "LatencyFlow", "Look"]

# What the destination shows now: external id -> (arrived, when the destination stamped it, if it says).
Arrivals = dict[str, tuple[bool, float | None]]
Look = Callable[[httpx.Client], Arrivals]


@dataclass(frozen=True)
class LatencyFlow:
    """One flow the latency benchmark can drive."""

    name: str  # the connector.yaml flow (the return path's benchmark names the flow it belongs to apart)
    flow: str  # the connector.yaml flow the stack configures
    systems: tuple[str, ...]  # the simulators it needs
    source: str  # the webhook inbox's system
    run_op: str  # the op whose run config names the changed records
    destination: str  # what shows the change, for the report: "its issue showed in the Jira simulator"
    change: str  # what the benchmark does, for the report: "supplier invoices created through the Visma API"
    size: int  # documents in the source simulator (enough for the changes)
    make: Callable[[Stack, int, float], list[Change]]  # (stack, count, spacing_s) -> the changes, timed
    watch: Callable[[Stack], Look]  # how the benchmark sees a change arrive at the destination
    run_trigger: str = "inbox"  # the ml_connector/trigger tag of the runs that carry a webhook's records
    ids_key: str = "ids"  # where the run op's config names the records
    key_of: Callable[[str], str] = str  # a record as the run config names it -> the change's key (its inbox id)


def jira_issues(field_name: str) -> Callable[[Stack], Look]:
    """Arrival = an issue carrying the record's id in ``field_name`` exists (stamped by its ``created``)."""

    def watch(stack: Stack) -> Look:
        url = f"{stack.urls['jira']}/_sandbox/state"
        field_id: list[str] = []

        def look(client: httpx.Client) -> Arrivals:
            state = client.get(url).json()
            if not field_id:
                field_id.append(_field_id(state, field_name))
            arrivals: Arrivals = {}
            for issue in state["issues"]:
                external_id = issue["fields"].get(field_id[0])
                if external_id:
                    created = datetime.strptime(issue["fields"]["created"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                    arrivals[external_id] = (True, created)
            return arrivals

        return look

    return watch


def _field_id(state: dict[str, Any], name: str) -> str:
    for found in state.get("fields", []):
        if found.get("name") == name:
            return str(found["id"])
    raise RuntimeError(f"the Jira simulator has no field named {name!r}")


def _stamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def asana_tasks(field_name: str) -> Callable[[Stack], Look]:
    """Arrival = a task carrying the record's id in its custom field ``field_name`` exists (stamped by its
    ``created_at``)."""

    def watch(stack: Stack) -> Look:
        url = f"{stack.urls['asana']}/_sandbox/state"

        def look(client: httpx.Client) -> Arrivals:
            arrivals: Arrivals = {}
            for task in client.get(url).json()["tasks"]:
                for field in task.get("custom_fields") or []:
                    if field.get("name") == field_name and field.get("text_value"):
                        arrivals[field["text_value"]] = (True, _stamp(task.get("created_at")))
            return arrivals

        return look

    return watch


def monday_items(column_title: str, prefix: str) -> Callable[[Stack], Look]:
    """Arrival = an item carrying the record's number in the column titled ``column_title`` exists (its
    external id is ``prefix`` + the number; stamped by its ``created_at``, which monday gives to the second)."""

    def watch(stack: Stack) -> Look:
        url = f"{_root(stack.urls['monday'])}/_sandbox/state"

        def look(client: httpx.Client) -> Arrivals:
            state = client.get(url).json()
            columns = {(board["id"], column["id"]) for board in state["boards"] for column in board.get("columns", [])
                       if column.get("title") == column_title}  # fmt: skip
            arrivals: Arrivals = {}
            for item in state["items"]:
                board = (item.get("board") or {}).get("id")
                for value in item.get("column_values") or []:
                    if (board, value.get("id")) in columns and value.get("text"):
                        arrivals[prefix + value["text"]] = (True, _stamp(item.get("created_at")))
            return arrivals

        return look

    return watch


def visma_notes(marker: str) -> Callable[[Stack], Look]:
    """Arrival = a supplier invoice's note in the Visma simulator carries ``marker`` (a regular expression
    whose group is the change's key; stamped by the invoice's ``lastModifiedDateTime``)."""
    pattern = re.compile(marker)

    def watch(stack: Stack) -> Look:
        url = f"{_root(stack.urls['visma'])}/_sandbox/state"

        def look(client: httpx.Client) -> Arrivals:
            arrivals: Arrivals = {}
            for invoice in client.get(url).json()["supplier_invoices"]:
                for key in pattern.findall(invoice.get("note") or ""):
                    arrivals[key] = (True, _stamp(invoice.get("lastModifiedDateTime")))
            return arrivals

        return look

    return watch


def _launch(stack: Stack, *, job: str | None = None, asset: str | None = None) -> None:
    """Run a job, or materialize an asset, of the stack's code location in this process, as an operator's
    launch from the UI does (before any clock starts)."""
    import dagster as dg

    from ml_connector_dagster.config import load_config
    from ml_connector_dagster.definitions import build_definitions

    defs = build_definitions(load_config(stack.home / "connector.yaml"))
    with dg.DagsterInstance.get() as instance:
        if job is not None:
            result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
        else:
            key = dg.AssetKey.from_user_string(str(asset))
            result = defs.resolve_implicit_job_def_def_for_assets([key]).execute_in_process(  # type: ignore[union-attr]
                instance=instance, asset_selection=[key], raise_on_error=False)
    if not result.success:
        raise RuntimeError(f"the benchmark's launch of {job or asset} failed")


def complete_invoice_tasks(stack: Stack, count: int, spacing_s: float) -> list[Change]:
    """``count`` synced invoice tasks completed through Asana's API (``PUT /tasks/{gid}``), ``spacing_s`` apart,
    once the return path's webhooks are registered."""
    from .webhook_latency import Change, wait_until_settled

    _launch(stack, asset="asana/visma_task_webhooks")
    wait_until_settled(stack, quiet_s=10.0, timeout_s=300.0)
    url = stack.urls["asana"]
    with httpx.Client(timeout=30) as http:
        state = http.get(f"{url}/_sandbox/state").json()
        pat = http.get(f"{url}/_sandbox/credentials").json()["pat"]
        tasks = [task["gid"] for task in state["tasks"] if not task["completed"] and not task.get("parent") and any(
            field.get("name") == "Visma ID" and (field.get("text_value") or "").startswith("supplierInvoice/")
            for field in task.get("custom_fields") or [])]  # fmt: skip
        if len(tasks) < count:
            raise RuntimeError(f"the Asana sandbox has {len(tasks)} open invoice tasks, {count} asked for: give Visma "
                               "more invoices (--size)")
        changes = []
        for n, gid in enumerate(tasks[:count]):
            if n:
                time.sleep(spacing_s)
            posted_at = time.time()
            http.put(f"{url}/api/1.0/tasks/{gid}", headers={"Authorization": f"Bearer {pat}"},
                     json={"data": {"completed": True}}).raise_for_status()
            changes.append(Change(gid, gid, posted_at))
    return changes


def receive_invoice_items(stack: Stack, count: int, spacing_s: float) -> list[Change]:
    """``count`` synced items of the invoice board set to "Received" through monday's API
    (``change_column_value``), ``spacing_s`` apart, once the receipt webhooks are subscribed."""
    from .webhook_latency import Change, wait_until_settled

    _launch(stack, job="visma_monday_webhooks")
    wait_until_settled(stack, quiet_s=10.0, timeout_s=300.0)
    root = _root(stack.urls["monday"])
    with httpx.Client(timeout=30) as http:
        state = http.get(f"{root}/_sandbox/state").json()
        credentials = http.get(f"{root}/_sandbox/credentials").json()
        headers = {"Authorization": credentials["api_token"], "API-Version": credentials["api_version"]}
        board = next(b for b in state["boards"] if any(c.get("title") == "Visma ID" for c in b.get("columns", []))
                     and any(c.get("title") == "Invoice #" for c in b.get("columns", [])))  # fmt: skip
        visma_id = next(c["id"] for c in board["columns"] if c.get("title") == "Visma ID")
        status = next(c["id"] for c in board["columns"] if c.get("title") == "Status")
        items = [item["id"] for item in state["items"] if item["board"]["id"] == board["id"] and any(
            value["id"] == visma_id and value.get("text") for value in item["column_values"]) and not any(
            value["id"] == status and value.get("text") == "Received" for value in item["column_values"])]
        synced = items[-count:]  # the newest: the connector's, not the demo board's own rows
        if len(synced) < count:
            raise RuntimeError(f"the monday sandbox has {len(items)} synced invoice items, {count} asked for")
        mutation = ("mutation ($board: ID!, $item: ID!, $column: String!, $value: JSON!) { change_column_value("
                    "board_id: $board, item_id: $item, column_id: $column, value: $value) { id } }")
        changes = []
        for n, item in enumerate(synced):
            if n:
                time.sleep(spacing_s)
            variables = {"board": board["id"], "item": item, "column": status, "value": '{"label": "Received"}'}
            posted_at = time.time()
            answer = http.post(f"{root}/v2", headers=headers, json={"query": mutation, "variables": variables})
            if answer.is_error or answer.json().get("errors"):
                raise RuntimeError(f"monday refused the benchmark's change: {answer.status_code} {answer.text[:300]}")
            changes.append(Change(str(item), str(item), posted_at))
    return changes


def bills_off_hold(stack: Stack) -> Look:
    """Arrival = the bill is not on hold in the Acumatica simulator (stamped by its LastModifiedDateTime)."""
    url = f"{_root(stack.urls['acumatica'])}/_sandbox/state"

    def look(client: httpx.Client) -> Arrivals:
        arrivals: Arrivals = {}
        for bill in client.get(url).json()["bills"]:
            modified = _value(bill, "LastModifiedDateTime")
            stamp = datetime.fromisoformat(modified).timestamp() if modified else None
            arrivals[f"Bill/{_value(bill, 'Type')}/{_value(bill, 'ReferenceNbr')}"] = (not _value(bill, "Hold"), stamp)
        return arrivals

    return look


def _root(url: str) -> str:
    """The simulator's own root (``/_sandbox/...`` lives there), without the tenant's site path."""
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.netloc.decode()}"


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
        form = {"grant_type": "password", "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"], "username": credentials["username"],
                "password": credentials["password"], "scope": "api"}  # fmt: skip
        deadline = time.monotonic() + 90
        # The licence's API users are shared with the connector's runs: wait for one to sign out.
        while (grant := http.post("/identity/connect/token", data=form)).is_error:
            if "API Login Limit" not in grant.text or time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark could not sign in to Acumatica: {grant.status_code} {grant.text}")
            time.sleep(1.0)
        http.headers["Authorization"] = f"Bearer {grant.json()['access_token']}"
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


def resolve_held_bills(stack: Stack, count: int, spacing_s: float) -> list[Change]:
    """``count`` bills put on hold and their exception issues awaited (untimed); then each issue resolved
    through Jira's API (the transition to a done status: ACU's "Resolve"), ``spacing_s`` apart: the timed changes."""
    from ml_connector_dagster.sandbox.jira import DEMO_API_TOKEN, DEMO_EMAIL

    from .webhook_latency import Change, wait_until_settled

    held = [change.external_id for change in hold_bills(stack, count, 0.2)]
    issues = _issues_of(stack, held, timeout_s=180.0)
    wait_until_settled(stack, quiet_s=10.0, timeout_s=300.0)  # the holds' own runs are not the return path's
    changes = []
    with httpx.Client(base_url=stack.urls["jira"], auth=(DEMO_EMAIL, DEMO_API_TOKEN), timeout=30) as jira:
        for n, external_id in enumerate(held):
            if n:
                time.sleep(spacing_s)
            issue = issues[external_id]
            offered = jira.get(f"/rest/api/3/issue/{issue['key']}/transitions").raise_for_status().json()
            done = next(t for t in offered["transitions"] if t["to"]["statusCategory"]["key"] == "done")
            posted_at = time.time()
            jira.post(f"/rest/api/3/issue/{issue['key']}/transitions",
                      json={"transition": {"id": done["id"]}}).raise_for_status()  # fmt: skip
            changes.append(Change(str(issue["id"]), external_id, posted_at))
    return changes


def _issues_of(stack: Stack, external_ids: list[str], *, timeout_s: float) -> dict[str, dict[str, Any]]:
    """The Jira issues (id, key) of the documents ``external_ids``, once all exist."""
    url = f"{stack.urls['jira']}/_sandbox/state"
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=30) as client:
        while True:
            state = client.get(url).json()
            field_id = _field_id(state, "External ID")
            found = {issue["fields"].get(field_id): issue for issue in state["issues"]}
            if all(external_id in found for external_id in external_ids):
                return {external_id: found[external_id] for external_id in external_ids}
            if time.monotonic() > deadline:
                missing = [e for e in external_ids if e not in found]
                raise TimeoutError(f"no exception issue for {len(missing)} held bills after {timeout_s:.0f} s")
            time.sleep(0.5)


LATENCY_FLOWS: dict[str, LatencyFlow] = {
    "visma_jira": LatencyFlow("visma_jira", "visma_jira", ("visma", "jira"), "visma", "visma__supplier_invoices",
                              "its issue showed in the Jira simulator's `/_sandbox/state`",
                              "supplier invoices created through the Visma simulator's API (`POST`)", 40,
                              create_supplier_invoices, jira_issues("Visma ID")),
    "visma_asana": LatencyFlow("visma_asana", "visma_asana", ("visma", "asana"), "visma", "visma__supplier_invoices",
                               "its task showed in the Asana simulator's `/_sandbox/state`",
                               "supplier invoices created through the Visma simulator's API (`POST`)", 40,
                               create_supplier_invoices, asana_tasks("Visma ID")),
    "visma_monday": LatencyFlow("visma_monday", "visma_monday", ("visma", "monday"), "visma", "visma__supplier_invoices",
                                "its item showed in the monday simulator's `/_sandbox/state`",
                                "supplier invoices created through the Visma simulator's API (`POST`)", 40,
                                create_supplier_invoices, monday_items("Visma ID", "supplierInvoice/")),
    "visma_asana_return": LatencyFlow("visma_asana_return", "visma_asana", ("visma", "asana"), "asana",
                                      "note_asana_changes_in_visma",
                                      "its line showed in the Visma invoice's note (`/_sandbox/state`)",
                                      "synced invoice tasks completed through the Asana simulator's API (`PUT`)", 40,
                                      complete_invoice_tasks, visma_notes(r"\[asana task (\d+) #\d+\]"),
                                      run_trigger="asana_task_change", ids_key="tasks"),
    "visma_monday_receipts": LatencyFlow("visma_monday_receipts", "visma_monday", ("visma", "monday"), "monday",
                                         "apply_monday_receipts",
                                         "its receipt line showed in the Visma invoice's note (`/_sandbox/state`)",
                                         "synced invoice items set to Received through the monday simulator's API "
                                         "(`change_column_value`)", 40, receive_invoice_items,
                                         visma_notes(r"\[monday\.com item (\d+)\]"), run_trigger="monday_receipt",
                                         ids_key="items", key_of=lambda ref: ref.rsplit(":", 1)[-1]),
    "acumatica_jira": LatencyFlow("acumatica_jira", "acumatica_jira", ("acumatica", "jira"), "acumatica",
                                  "acumatica__bills", "its issue showed in the Jira simulator's `/_sandbox/state`",
                                  "balanced bills put on hold through the Acumatica simulator's API (`PUT .../Bill`)",
                                  120, hold_bills, jira_issues("External ID")),
    "acumatica_release": LatencyFlow("acumatica_release", "acumatica_jira", ("acumatica", "jira"), "jira",
                                     "release_resolved_documents",
                                     "its bill was off hold in the Acumatica simulator's `/_sandbox/state`",
                                     "exception issues of held bills resolved through the Jira simulator's API "
                                     "(the transition to a done status)", 120, resolve_held_bills, bills_off_hold,
                                     run_trigger="jira_resolution", ids_key="issues"),
}
