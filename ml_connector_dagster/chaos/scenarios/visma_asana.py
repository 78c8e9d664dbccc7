"""visma_asana under chaos: Visma users work, the team completes and reassigns tasks; Asana holds one task per
document, and each reported change is one note line on its Visma document.

Expected, per docs/flows/visma_asana.md with connector.sandbox.yaml's settings: one top-level task per
purchase order in "Purchase orders" and per (valid) supplier invoice in "Supplier invoices", whose
"Visma ID" is ``purchaseorder/<nbr>`` / ``supplierInvoice/<nbr>``, "Amount" the order total / amount and
``due_on`` the promised / due date; one subtask per PO line (Visma ID ``<path>#<line>``). On the
return path every note marker ``[asana task <gid> #n]`` shows at most once in a document's note, and a
task the team changed has at least one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ml_connector_dagster.config import ConnectorConfig
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.visma_asana_return import RETURN_ASSET
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.framework import Simulator

from ..daemon import Daemon
from ..plan import FaultKind
from ..scenario import HTTP_FAULTS, UNLIMITED, WEBHOOK_FAULTS, Scenario, visma_system
from ..verdict import Verdict, compare, day
from ..visma_clerk import VismaClerk

__all__ = ["VismaAsanaScenario"]

VISMA_FAULTS = (*HTTP_FAULTS, *WEBHOOK_FAULTS, FaultKind.ETAG_RACE)
ASANA_FAULTS = (FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.TIMEOUT_BEFORE, FaultKind.TIMEOUT_AFTER,
                FaultKind.RESET, *WEBHOOK_FAULTS)  # fmt: skip
_MARKER = re.compile(r"\[asana task (\d+) #(\d+)\]")


def _field(task: Mapping[str, Any], name: str) -> Any:
    for field in task.get("custom_fields") or []:
        if field.get("name") == name:
            for key in ("text_value", "number_value"):
                if field.get(key) is not None:
                    return field[key]
            return field.get("display_value")
    return None


class VismaAsanaScenario(Scenario):
    flow: ClassVar[str] = "visma_asana"
    group: ClassVar[str] = "visma_asana"
    fault_kinds: ClassVar[Mapping[str, tuple[FaultKind, ...]]] = {
        "visma": VISMA_FAULTS,
        "asana": ASANA_FAULTS,
    }
    extra_sensors: ClassVar[tuple[str, ...]] = ("inbox_sensor", "visma_asana_return")
    replay_jobs: ClassVar[tuple[str, ...]] = ("visma_asana_replay", "visma_asana_return")
    replay_assets: ClassVar[tuple[str, ...]] = ("asana/visma_purchase_order_tasks", "asana/visma_invoice_tasks",
                                                RETURN_ASSET)  # fmt: skip
    destinations: ClassVar[tuple[str, ...]] = ("asana",)
    webhook_source: ClassVar[str] = "visma"

    def build(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        *,
        webhook_time_scale: float = 0.001,
    ) -> dict[str, Simulator]:
        seed = self.schedule.seed % 1000
        self.visma = self.visma_simulator(webhook_base, webhook_transport, webhook_time_scale)
        # A paid workspace (1,500 requests a minute): the free plan's minute is not what is under test.
        self.asana = AsanaSimulator(
            seed=seed, premium=True, time_scale=0.01, webhook_transport=webhook_transport
        )
        self.clerk = VismaClerk(self.visma, payments=False)
        self.changed: set[str] = set()
        self.simulators = {"visma": self.visma, "asana": self.asana}
        return self.simulators

    def connector_config(self, urls: Mapping[str, str], receiver_url: str) -> dict[str, Any]:
        shipped = self.shipped_flow()
        # The harness ticks its sensors at its own pace: the return path's poll of Asana runs at every tick.
        shipped["return_path"].update({"receiver_url": receiver_url, "overlap_s": 5, "poll_s": 0})
        asana = {"mode": "sandbox", "base_url": urls["asana"], "auth": "pat", **UNLIMITED}
        return self.config_with({"visma": visma_system(urls), "asana": asana}, shipped)

    def prepare(self, daemon: Daemon) -> None:
        """The daily schedule's job registers the task webhooks; the operator runs it once."""
        daemon.launch_job("visma_asana_webhooks")

    # -- the users ---------------------------------------------------------------------------------
    def _synced_tasks(self) -> list[dict[str, Any]]:
        return [
            task
            for task in self.asana.collections()["tasks"]
            if str(_field(task, "Visma ID") or "").count("/") == 1
            and "#" not in str(_field(task, "Visma ID"))
        ]

    def act(self, rng: random.Random, round_number: int) -> None:
        for done in self.clerk.act(rng, rng.randint(2, 5)):
            self.note(done)
        if round_number == 0:
            return
        tasks = [task for task in self._synced_tasks() if not task.get("completed")]
        for task in rng.sample(tasks, k=min(len(tasks), rng.randint(0, 2))):
            self.asana.edit_task(task["gid"], completed=True)
            self.changed.add(task["gid"])
            self.note(f"asana: completed task {task['gid']} ({_field(task, 'Visma ID')})")

    def recover(self, config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
        """Nothing beyond re-runs: a personal access token is not revoked here."""

    # -- the verdict -------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        state = self.visma.collections()
        invalid = self.clerk.invalid
        expected: dict[str, dict[str, Any]] = {}
        lines: dict[str, dict[str, Any]] = {}
        for record in state["purchase_orders"]:
            path = f"purchaseorder/{record['orderNbr']}"
            expected[path] = {
                "Amount": record.get("orderTotal"),
                "due_on": day(record.get("promisedOn")),
                "project": "Purchase orders",
            }
            for line in record.get("lines") or []:
                lines[f"{path}#{line.get('lineNbr')}"] = {}
        for record in state["supplier_invoices"]:
            if record["referenceNumber"] in invalid:
                continue
            expected[f"supplierInvoice/{record['referenceNumber']}"] = {
                "Amount": record.get("amount"),
                "due_on": day(record.get("dueDate")),
                "project": "Supplier invoices",
            }
        tasks: dict[str, list[dict[str, Any]]] = {}
        subtasks: dict[str, list[dict[str, Any]]] = {}
        gid_of: dict[str, str] = {}
        for task in self.asana.collections()["tasks"]:
            visma_id = _field(task, "Visma ID")
            if not visma_id:
                continue
            if "#" in str(visma_id):
                subtasks.setdefault(str(visma_id), []).append({})
                continue
            projects = [m.get("project", {}).get("name") for m in task.get("memberships") or []]
            tasks.setdefault(str(visma_id), []).append(
                {
                    "Amount": _field(task, "Amount"),
                    "due_on": task.get("due_on"),
                    "project": projects[0] if projects else None,
                }
            )
            gid_of[task["gid"]] = str(visma_id)
        verdict = compare("task", expected, tasks)
        verdict.extend(compare("PO line subtask", lines, subtasks))
        notes: dict[str, list[str]] = {}
        for record in [*state["purchase_orders"], *state["supplier_invoices"]]:
            for gid, sequence in _MARKER.findall(record.get("note") or ""):
                notes.setdefault(f"[asana task {gid} #{sequence}]", []).append(gid)
        for marker, found in sorted(notes.items()):
            if len(found) > 1:
                verdict.duplicates += [f"note {marker}: {len(found)} copies"] * (len(found) - 1)
        reported = {gid for found in notes.values() for gid in found}
        for gid in sorted(self.changed):
            if gid in gid_of and gid not in reported:
                verdict.lost.append(f"note for task {gid} ({gid_of[gid]}): missing")
        return verdict
