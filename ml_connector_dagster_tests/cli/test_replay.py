"""`ml-connector replay`: the flows' replay jobs, once, on the local instance, against the served
simulators; what went through is printed, the letters that pass are resolved."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, active_config
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.run_tags import destination_tag

from .conftest import CliRun, Sandbox, closed_port_url

ISSUES = "jira/visma_invoice_issues"


@pytest.fixture(autouse=True)
def local_instance(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's instance is DAGSTER_HOME (it sets it to the connector home): restored after."""
    monkeypatch.setenv("DAGSTER_HOME", str(sandbox.home))


def configure(sandbox: Sandbox) -> None:
    """The shipped visma_jira flow on the served simulators; `replay` reuses them (same ports)."""
    shipped = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())["flows"]["visma_jira"]
    ports = {"visma": urlsplit(sandbox.visma_url).port, "jira": urlsplit(sandbox.jira_url).port}
    sandbox.write_config(flows={"visma_jira": {**shipped, "op_retries": 0}},
                         sections={"sandbox": {"ports": ports},
                                   "webhooks": {"port": urlsplit(closed_port_url()).port}})


def busiest_past_day(sandbox: Sandbox) -> str:
    today = datetime.now(UTC).date().isoformat()
    days = Counter(invoice["lastModifiedDateTime"][:10]
                   for invoice in sandbox.visma.collections()["supplier_invoices"])
    return next(day for day, _ in days.most_common() if day <= today)


def a_dead_letter(sandbox: Sandbox) -> str:
    """Land a day of supplier invoices, then file one of them as a dead letter of the Jira issues."""
    day = busiest_past_day(sandbox)
    defs = build_definitions(active_config())
    landed = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(["visma", "supplier_invoices"])], partition_key=day,
        instance=dg.DagsterInstance.ephemeral(),
    )  # fmt: skip
    assert landed.success
    with Ledger.open() as ledger:
        record = next(r for chunk in LandingStore(ledger).iter_partition("visma", "supplierInvoice", day)
                      for r in chunk if r.payload.get("amount"))
        ledger.add_dead_letter(ISSUES, record.record_id, record.payload, "Jira refused: field 'Amount' is missing",
                               partition_key=day)  # fmt: skip
    return record.record_id


def jira_issue_of(sandbox: Sandbox, invoice: str) -> list[Any]:
    return [issue for issue in sandbox.jira.collections()["issues"]
            if invoice in str(issue.get("fields", {}).get("summary", "")) + str(issue.get("fields", {}))]


def test_replay_pushes_the_open_dead_letters_and_resolves_them(sandbox: Sandbox, run_cli: CliRun) -> None:
    configure(sandbox)
    invoice = a_dead_letter(sandbox)
    code, out, err = run_cli("replay", "--flow", "visma_jira")
    assert code == 0, out + err
    header, row = out.splitlines()[1:3]
    assert header.split() == ["flow", "job", "replayed", "failed", "result"]
    assert row.split() == ["visma_jira", "visma_jira_replay", "1", "0", "ok"]
    assert "open dead letters: 1 before, 0 after" in out
    with Ledger.open() as ledger:
        assert ledger.open_dead_letters(ISSUES) == []
    assert jira_issue_of(sandbox, invoice)
    with dg.DagsterInstance.get() as instance:  # the run is in the local instance's history, tagged
        [run] = instance.get_runs(filters=dg.RunsFilter(job_name="visma_jira_replay"))
        assert run.tags[destination_tag("jira")] == "true"
        assert run.tags["ml_connector/trigger"] == "cli-replay"


def test_an_unknown_flow_is_refused_with_the_flows_that_have_a_replay(sandbox: Sandbox, run_cli: CliRun) -> None:
    configure(sandbox)
    code, _, err = run_cli("replay", "--flow", "visma_jria")
    assert code == 2
    assert "flow 'visma_jria' has no replay job; flows with one: visma_jira" in err


def test_no_progress_is_accepted_and_stdout_holds_only_the_report(sandbox: Sandbox, run_cli: CliRun) -> None:
    configure(sandbox)
    code, out, _ = run_cli("replay", "--no-progress")
    assert code == 0
    assert out.splitlines()[0] == "ml-connector replay"
    assert "open dead letters: 0 before, 0 after" in out
