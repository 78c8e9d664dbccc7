"""acumatica_jira under chaos: Acumatica users raise exceptions, Jira users resolve their issues; one issue per
document in exception, one action per resolution.

Expected, per docs/flows/acumatica_jira.md with the shipped exception rules (connector.sandbox.yaml):

- every bill out of balance (control total != lines + tax) or On Hold, PO Pending Approval or Rejected,
  payment On Hold has exactly one issue in ACU whose External ID is ``<entity>/<type>/<number>``, with its
  amount and currency; a document that left every rule keeps at most one issue;
- every resolution gets its outcome comment (``ml-connector resolution <issue id>@<when>``) exactly once,
  and it tells the truth: a document it calls released (approved) is so in Acumatica, and a refusal
  gives Acumatica's reason for the document, never a passing failure (an interrupted release, a 5xx,
  a timeout) that a retry would have got past; no document is released twice.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ml_connector_dagster.config import ConnectorConfig
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.jira import JiraSimulator
from ml_connector_dagster.systems.jira import adf

from ..plan import FaultKind
from ..scenario import HTTP_FAULTS, SOURCE_STEPS, UNLIMITED, WEBHOOK_FAULTS, Scenario
from ..verdict import Verdict, compare
from .visma_jira import JIRA_FAULTS, jira_consent_again

__all__ = ["AcumaticaJiraScenario"]

ACUMATICA_FAULTS = (*HTTP_FAULTS, *WEBHOOK_FAULTS, FaultKind.ACTION_INTERRUPTED)
EXTERNAL_ID, AMOUNT, CURRENCY = "customfield_10041", "customfield_10042", "customfield_10043"
_RESOLUTION = re.compile(r"ml-connector resolution (\S+?)\.?(?:\s|$)")
# entity -> (collection, number field, amount field)
RESOLUTION_SEEN_AFTER_S = 0.3
_DOCUMENTS = {"Bill": ("bills", "ReferenceNbr", "Amount"), "PurchaseOrder": ("purchase_orders", "OrderNbr", "OrderTotal"),
              "Payment": ("payments", "ReferenceNbr", "PaymentAmount")}  # fmt: skip
_RELEASED = {"Bill": {"Open", "Closed"}, "Payment": {"Open", "Closed"}, "PurchaseOrder": {"Open"}}
_SAYS_DONE = re.compile(r"(?:was|is already) (?:released|approved) in Acumatica")
_REFUSED = re.compile(
    r"Acumatica refused to \w+ .*?(?:Reason|Detail): (.*?)(?:\s+ml-connector resolution|$)", re.S
)
# What a refusal must never be for: failures of the moment, which a retry gets past.
_PASSING = re.compile(
    r"interrupted|temporarily|timed? ?out|Timeout|An error has occurred\.?$|Service Unavailable|"
    r"RemoteProtocolError|TransportFailure|-> 5\d\d",
    re.I,
)


def _value(record: Mapping[str, Any], name: str) -> Any:
    field = record.get(name)
    return field.get("value") if isinstance(field, dict) else field


def _unbalanced(bill: Mapping[str, Any]) -> bool:
    lines = sum(float(_value(line, "Amount") or 0) for line in bill.get("Details") or [])
    return abs(lines + float(_value(bill, "TaxTotal") or 0) - float(_value(bill, "Amount") or 0)) > 0.005


def exception_of(entity: str, record: Mapping[str, Any]) -> str | None:
    """The shipped rule a document matches first (None: none), read off the document as Acumatica shows it."""
    status = _value(record, "Status")
    if entity == "Bill":
        return "bill_unbalanced" if _unbalanced(record) else "bill_on_hold" if status == "On Hold" else None
    if entity == "PurchaseOrder":
        return {"Pending Approval": "po_pending_approval", "Rejected": "po_rejected"}.get(status)
    return "payment_on_hold" if status == "On Hold" else None


class AcumaticaJiraScenario(Scenario):
    flow: ClassVar[str] = "acumatica_jira"
    group: ClassVar[str] = "acumatica_jira"
    fault_kinds: ClassVar[Mapping[str, tuple[FaultKind, ...]]] = {
        "acumatica": ACUMATICA_FAULTS,
        "jira": JIRA_FAULTS,
    }
    extra_sensors: ClassVar[tuple[str, ...]] = ("inbox_sensor", "acumatica_jira_resolutions")
    replay_jobs: ClassVar[tuple[str, ...]] = ("acumatica_jira_release",)
    replay_assets: ClassVar[tuple[str, ...]] = ("acumatica_jira_release",)
    destinations: ClassVar[tuple[str, ...]] = ("jira",)
    webhook_source: ClassVar[str] = "acumatica"
    settle_s: ClassVar[float] = 1.0  # the resolutions' JQL poll reads Jira's index, up to 0.7 s behind

    def build(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        *,
        webhook_time_scale: float = 0.001,
    ) -> dict[str, Simulator]:
        seed = self.schedule.seed % 1000
        # Releases run a moment on the simulator's clock; the harness does not wait for minutes.
        self.acumatica = AcumaticaSimulator(seed=seed, size=6, days=0.25, webhook_url=f"{webhook_base}/webhooks/acumatica",
                                            action_duration_s=0.2, time_scale=webhook_time_scale,
                                            webhook_transport=webhook_transport)  # fmt: skip
        self.jira = JiraSimulator(seed=seed, index_delay_s=0.1, seed_issues=0, burst_per_s=10**6)
        self.resolved: dict[str, str] = {}  # issue key -> the external id of its document
        self.simulators = {"acumatica": self.acumatica, "jira": self.jira}
        return self.simulators

    def environ(self) -> dict[str, str]:
        # The operator configured the push notifications' header on both sides (connector.yaml names the variable).
        return {"ACUMATICA_WEBHOOK_TOKEN": self.acumatica.push_header_value}

    def connector_config(self, urls: Mapping[str, str], receiver_url: str) -> dict[str, Any]:
        self.jira.site_url = urls["jira"]
        # The harness ticks its sensors at its own pace: the resolutions' JQL poll runs at every tick.
        shipped = self.shipped_flow(consistency_window_s=0.8, resolution_overlap_s=5, action_poll_s=0.05,
                                    action_window_s=1.0, action_timeout_s=10, resolution_poll_s=0)  # fmt: skip
        systems = {
            "acumatica": {"mode": "sandbox", "base_url": urls["acumatica"], "page_size": 50, **UNLIMITED, **SOURCE_STEPS},
            "jira": {"mode": "sandbox", "base_url": urls["jira"], "auth_url": urls["jira"], **UNLIMITED},
        }  # fmt: skip
        return self.config_with(systems, shipped, size=6)

    # -- the users ---------------------------------------------------------------------------------
    def _documents(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """External id -> (entity, document) of every document in Acumatica."""
        state = self.acumatica.collections()
        found = {}
        for entity, (collection, number, _) in _DOCUMENTS.items():
            for record in state[collection]:
                found[f"{entity}/{_value(record, 'Type')}/{_value(record, number)}"] = (entity, record)
        return found

    def act(self, rng: random.Random, round_number: int) -> None:
        untouchable = set(self.resolved.values())
        documents = {k: v for k, v in self._documents().items() if k not in untouchable}
        for _ in range(rng.randint(1, 3)):
            self._exception(rng, documents)
        if round_number > 0:
            self._resolve(rng)
            # The daemon's next tick comes a while after a person resolves an issue: long enough for
            # Jira's index to show the resolution, so its release runs while the faults are still on.
            time.sleep(RESOLUTION_SEEN_AFTER_S)

    def _raise_exception(self, rng: random.Random, documents: dict[str, tuple[str, dict[str, Any]]]) -> None:
        def pick(entity: str, statuses: set[str]) -> str | None:
            numbers = [str(_value(r, _DOCUMENTS[entity][1])) for e, r in documents.values()
                       if e == entity and _value(r, "Status") in statuses]  # fmt: skip
            return rng.choice(numbers) if numbers else None

        choice = rng.choice(
            ["hold_bill", "unbalance_bill", "new_bill", "bounce_payment", "edit_bill", "reject_po"]
        )
        sim = self.acumatica
        if choice == "hold_bill" and (number := pick("Bill", {"Balanced", "Pending Approval"})):
            sim.put_bill_on_hold(number, "Kontrolleres: feil mengde")
        elif choice == "unbalance_bill" and (number := pick("Bill", {"Balanced", "On Hold"})):
            sim.mark_unbalanced(number, round(rng.uniform(10, 500), 2))
        elif choice == "new_bill":
            vendors = [_value(v, "VendorID") for v in sim.collections()["vendors"]]
            bill = sim.create_bill(
                rng.choice(vendors),
                [
                    {
                        "TransactionDescription": "Frakt",
                        "UnitCost": round(rng.uniform(100, 9000), 2),
                        "Account": "6540",
                    }
                ],
            )
            number = _value(bill, "ReferenceNbr")
        elif choice == "bounce_payment" and (number := pick("Payment", {"Balanced", "Open"})):
            sim.payment_exception(number)
        elif choice == "edit_bill" and (number := pick("Bill", {"On Hold"})):
            sim.update_bill(number, Description=f"Purret {rng.randint(1, 99)}")
        elif choice == "reject_po" and (number := pick("PurchaseOrder", {"Pending Approval"})):
            sim.reject_po(number)
        else:
            return
        self.note(f"acumatica: {choice} {number}")

    def _exception(self, rng: random.Random, documents: dict[str, tuple[str, dict[str, Any]]]) -> None:
        try:
            self._raise_exception(rng, documents)
        except Exception as exc:  # noqa: BLE001 - Acumatica refusing a user's edit is the user's business
            self.note(f"acumatica refused a user's edit: {type(exc).__name__}")

    def _resolve(self, rng: random.Random) -> None:
        open_issues = [issue for issue in self.jira.collections()["issues"]
                       if issue["fields"].get(EXTERNAL_ID) and issue["fields"].get("resolution") is None
                       and issue["key"] not in self.resolved]  # fmt: skip
        for issue in rng.sample(open_issues, k=min(len(open_issues), rng.randint(1, 2))):
            external_id = issue["fields"][EXTERNAL_ID]
            resolution = "Done" if rng.random() < 0.8 else "Won't Do"
            self.jira.resolve_issue(issue["key"], resolution)
            self.resolved[issue["key"]] = external_id
            self.note(f"jira: resolved {issue['key']} ({external_id}) as {resolution}")

    def recover(self, config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
        if self.jira.fault_counts.get(FaultKind.REFRESH_REVOKED):
            jira_consent_again(config, ledger, client)
            self.note("consented again after the revoked refresh token")
        # A sign-in or refresh whose answer was lost leaves its API session open: with the licence's API
        # users all taken, every sign-in is refused until idle sessions time out. The operator waits.
        limit = self.acumatica.identity.licence.api_users
        if limit is not None and len(self.acumatica.active_sessions()) >= limit:
            self.acumatica.clock.advance(self.acumatica.identity.session_timeout_s + 1)
            self.note("waited for the idle Acumatica API sessions to end (API Login Limit)")

    def replay(self, launch_job: Any, materialize: Any, ledger: Ledger) -> int:
        """The return path's letters go to ``acumatica_jira_release``; an issue's letter is retried by
        materializing its partition again (docs/operations.md)."""
        launched = super().replay(launch_job, materialize, ledger)
        partitions = {
            letter.partition_key for letter in ledger.open_dead_letters("jira/acumatica_exception_issues")
        }
        for partition in sorted(p for p in partitions if p):
            materialize("acumatica_jira", partition)
            launched += 1
        return launched

    # -- the verdict -------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        documents = self._documents()
        state = self.jira.collections()
        issues: dict[str, list[dict[str, Any]]] = {}
        id_of_key: dict[str, str] = {}
        for issue in state["issues"]:
            external_id = issue["fields"].get(EXTERNAL_ID)
            if external_id:
                id_of_key[issue["key"]] = external_id
                issues.setdefault(external_id, []).append(
                    {"amount": issue["fields"].get(AMOUNT), "currency": issue["fields"].get(CURRENCY)}
                )
        expected = {}
        for external_id, (entity, record) in documents.items():
            if exception_of(entity, record) is not None:
                expected[external_id] = {
                    "amount": _value(record, _DOCUMENTS[entity][2]),
                    "currency": _value(record, "CurrencyID"),
                }
        verdict = compare("issue", expected, {k: v for k, v in issues.items() if k in expected})
        for external_id, found in issues.items():
            if external_id not in expected and len(found) > 1:
                verdict.duplicates += [f"issue {external_id}: {len(found)} copies"] * (len(found) - 1)
        outcomes: dict[str, list[dict[str, Any]]] = {}
        for comment in state["comments"]:
            text = adf.plain_text(comment["body"])
            for key in _RESOLUTION.findall(text):
                outcomes.setdefault(comment["issueKey"], []).append({"resolution": key, "text": text})
        verdict.extend(
            compare(
                "resolution comment",
                {key: {"resolution": ...} for key in self.resolved},
                {key: found for key, found in outcomes.items() if key in self.resolved},
            )
        )
        for key, external_id in sorted(self.resolved.items()):
            entity, record = documents.get(external_id, ("", {}))
            for outcome in outcomes.get(key, [])[:1]:
                status = _value(record, "Status")
                if _SAYS_DONE.search(outcome["text"]) and status not in _RELEASED.get(entity, set()):
                    verdict.mismatched.append(
                        f"document {external_id}: {key} says it is done, Acumatica shows {status!r}"
                    )
                refused = _REFUSED.search(outcome["text"])
                if refused and _PASSING.search(refused.group(1)):
                    verdict.mismatched.append(
                        f"document {external_id}: {key} says Acumatica refused it for a passing "
                        f"failure: {refused.group(1).strip()[:160]}"
                    )
        done: dict[str, int] = {}
        for operation in self.acumatica.operations.values():
            if operation.state == "done":
                done[operation.record_id] = done.get(operation.record_id, 0) + 1
        for record_id, count in sorted(done.items()):
            if count > 1:
                verdict.duplicates += [f"release of {record_id}: {count} times"] * (count - 1)
        return verdict
