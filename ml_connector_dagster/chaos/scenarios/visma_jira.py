"""visma_jira under chaos: Visma users work, Jira shows one issue per eligible document with its latest facts.

Expected, per docs/flows/visma_jira.md: one issue in FIN per supplier invoice and PO (no filters set but
the default one, zero amounts; the generated malformed invoices are quarantined, so have none), carrying
the Visma ID, amount, currency, due date, the status ``status_map`` names, and the record's last
modification in the description's audit line; one audit comment per (supplier payment or AP GL batch,
invoice) on the invoice's issue; no change comment twice.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from ml_connector_dagster.config import ConnectorConfig, connector_home
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.jira import JiraSimulator
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import REFRESH_TOKEN_KEY
from ml_connector_dagster.systems.jira.consent import jira_code_flow

from ..plan import FaultKind
from ..scenario import HTTP_FAULTS, UNLIMITED, WEBHOOK_FAULTS, Scenario, consent_again, visma_system
from ..verdict import Verdict, compare
from ..visma_clerk import VismaClerk

__all__ = ["STATUS_MAP", "VismaJiraScenario", "jira_consent_again"]

# Every status the clerk can set maps to a status of the FIN workflow, so the expected one is known.
STATUS_MAP = {"Open": "Approved", "Balanced": "In Review", "Hold": "Disputed", "Closed": "Done",
              "Prebooked": "In Review", "Scheduled": "Approved", "Voided": "Done", "PendingPrint": "In Review",
              "Printed": "Approved", "Cancelled": "Done"}  # fmt: skip
VISMA_ID, AMOUNT, CURRENCY = "customfield_10040", "customfield_10042", "customfield_10043"
_LAST_MODIFIED = re.compile(r"last modified (\S+?)\.?(?:\s|$)")
_AUDIT = re.compile(r"Audit ID (audit:\S+?)\.?(?:\s|$)")
_CHANGE = re.compile(r"Visma ID (\S+), version (\S+?)\.?(?:\s|$)")
JIRA_FAULTS = (*HTTP_FAULTS, FaultKind.REFRESH_REVOKED, FaultKind.SEARCH_INDEX_DELAY)
VISMA_FAULTS = (*HTTP_FAULTS, *WEBHOOK_FAULTS)


def utc_z(timestamp: str) -> str:
    """A Visma timestamp as the issue's audit line writes it: UTC, milliseconds, ``Z``."""
    moment = datetime.fromisoformat(timestamp).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jira_consent_again(config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
    """``ml-connector auth jira`` after a revoked refresh token, as the operations page says."""
    settings = config.systems.jira
    assert settings is not None
    flow = jira_code_flow(
        settings, os.environ[settings.client_id_env], os.environ[settings.client_secret_env]
    )
    consent_again(flow, REFRESH_TOKEN_KEY, ledger, connector_home(), client)


class VismaJiraScenario(Scenario):
    flow: ClassVar[str] = "visma_jira"
    group: ClassVar[str] = "visma_jira"
    fault_kinds: ClassVar[Mapping[str, tuple[FaultKind, ...]]] = {"visma": VISMA_FAULTS, "jira": JIRA_FAULTS}
    replay_jobs: ClassVar[tuple[str, ...]] = ("visma_jira_replay",)
    replay_assets: ClassVar[tuple[str, ...]] = (
        "jira/visma_invoice_issues",
        "jira/visma_purchase_order_issues",
    )

    destinations: ClassVar[tuple[str, ...]] = ("jira",)
    webhook_source: ClassVar[str] = "visma"

    def build(
        self,
        webhook_base: str,
        webhook_transport: httpx.BaseTransport | None,
        *,
        webhook_time_scale: float = 0.001,
    ) -> dict[str, Simulator]:
        seed = self.schedule.seed
        self.visma = self.visma_simulator(webhook_base, webhook_transport, webhook_time_scale, size=6)
        # Jira's per-second burst is not what is under test (the injected 429s are): waits are shortened here.
        self.jira = JiraSimulator(seed=seed % 1000, index_delay_s=0.1, seed_issues=0, burst_per_s=10**6)
        self.clerk = VismaClerk(self.visma)
        self.simulators = {"visma": self.visma, "jira": self.jira}
        return self.simulators

    def connector_config(self, urls: Mapping[str, str], receiver_url: str) -> dict[str, Any]:
        self.jira.site_url = urls["jira"]
        jira = {"mode": "sandbox", "base_url": urls["jira"], "auth_url": urls["jira"], **UNLIMITED}
        flow = {"status_map": STATUS_MAP, "currency_field": "Currency", "po_reference_field": "PO Reference",
                "op_retries": 4, "op_retry_delay_s": 0.2, "consistency_window_s": 0.8,
                "jira_webhooks": {"enabled": False}}  # fmt: skip
        return self.config_with({"visma": visma_system(urls), "jira": jira}, flow, size=6)

    def act(self, rng: random.Random, round_number: int) -> None:
        for done in self.clerk.act(rng, rng.randint(2, 6)):
            self.note(done)

    def recover(self, config: ConnectorConfig, ledger: Ledger, client: httpx.Client) -> None:
        if self.jira.fault_counts.get(FaultKind.REFRESH_REVOKED):
            jira_consent_again(config, ledger, client)
            self.note("consented again after the revoked refresh token")

    # -- the verdict -------------------------------------------------------------------------------
    def expected_issues(self) -> dict[str, dict[str, Any]]:
        state = self.visma.collections()
        expected: dict[str, dict[str, Any]] = {}
        # collection, number, external id prefix, amount, currency, due date, numbers that never make an issue
        # (malformed invoices: the source asset quarantines them).
        for collection, key, prefix, amount, currency, due, invalid in (
            ("supplier_invoices", "referenceNumber", "supplierInvoice", "amount", "currencyId", "dueDate",
             self.clerk.invalid),
            ("purchase_orders", "orderNbr", "purchaseorder", "orderTotal", "currency", "promisedOn", set()),
        ):  # fmt: skip
            for record in state[collection]:
                if record[key] in invalid or not record.get(amount):
                    continue
                expected[f"{prefix}/{record[key]}"] = {
                    "amount": record[amount], "currency": record.get(currency),
                    "duedate": (record.get(due) or "")[:10] or None, "status": STATUS_MAP[record["status"]],
                    "last_modified": utc_z(record["lastModifiedDateTime"]), "summary_names_it": True,
                }  # fmt: skip
        return expected

    def expected_audits(self, invoices: set[str]) -> dict[str, dict[str, Any]]:
        """audit id -> the issue it belongs on, for every payment and AP batch naming an eligible invoice."""
        state = self.visma.collections()
        expected: dict[str, dict[str, Any]] = {}
        for payment in state["supplier_payments"]:
            for line in payment.get("paymentLines") or []:
                invoice = line.get("invoiceRefNbr")
                if f"supplierInvoice/{invoice}" in invoices:
                    expected[f"audit:supplierPayment/{payment['refNbr']}/{invoice}"] = {
                        "issue": f"supplierInvoice/{invoice}"
                    }
        for batch in state["journal_transactions"]:
            if batch.get("module") != "ModuleAP":
                continue
            for line in batch.get("journalTransactionLines") or []:
                invoice = line.get("referenceNumber")
                if invoice and f"supplierInvoice/{invoice}" in invoices:
                    record = f"{batch['module']}:{batch['batchNumber']}"
                    expected[f"audit:journaltransaction/{record}/{invoice}"] = {
                        "issue": f"supplierInvoice/{invoice}"
                    }
        return expected

    def verdict(self) -> Verdict:
        state = self.jira.collections()
        issues: dict[str, list[dict[str, Any]]] = {}
        visma_id_of_key: dict[str, str] = {}
        for issue in state["issues"]:
            fields = issue["fields"]
            visma_id = fields.get(VISMA_ID)
            if not visma_id:
                continue
            visma_id_of_key[issue["key"]] = visma_id
            text = adf.plain_text(fields.get("description")) if fields.get("description") else ""
            modified = _LAST_MODIFIED.search(text)
            number = visma_id.split("/", 1)[1]
            issues.setdefault(visma_id, []).append({
                "amount": fields.get(AMOUNT), "currency": fields.get(CURRENCY), "duedate": fields.get("duedate"),
                "status": fields["status"]["name"], "last_modified": modified.group(1) if modified else None,
                "summary_names_it": number in (fields.get("summary") or ""),
            })  # fmt: skip
        expected = self.expected_issues()
        verdict = compare("issue", expected, issues)
        audits: dict[str, list[dict[str, Any]]] = {}
        changes: dict[str, int] = {}
        for comment in state["comments"]:
            text = adf.plain_text(comment["body"])
            issue_id = visma_id_of_key.get(comment["issueKey"])
            for audit_id in _AUDIT.findall(text):
                audits.setdefault(audit_id, []).append({"issue": issue_id})
            for visma_id, version in _CHANGE.findall(text):
                changes[f"{comment['issueKey']} {visma_id} {version}"] = (
                    changes.get(f"{comment['issueKey']} {visma_id} {version}", 0) + 1
                )
        verdict.extend(compare("audit comment", self.expected_audits(set(expected)), audits))
        for change, count in sorted(changes.items()):
            if count > 1:
                verdict.duplicates += [f"change comment {change}: {count} copies"] * (count - 1)
        return verdict
