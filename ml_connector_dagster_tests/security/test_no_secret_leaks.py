"""No secret reaches logs, output, run history, the ledger or files at rest, even when things go wrong.

One module-wide run (see :mod:`.sandbox_run`): every flow synced four times against the six served
simulators, first under transient faults (429 bursts, 5xx, resets, timeouts, expired tokens), then
clean (and each flow's daily audit of that day), then with refused credentials (revoked refresh token,
wrong password, unknown tokens), then with a failing token endpoint. Each test scans one place the runs
write to for every secret they used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ml_connector_dagster_tests.security.sandbox_run import WRONG, SandboxRun, faulty_sync
from ml_connector_dagster_tests.security.secret_scan import (
    SecretScanner,
    assert_no_secrets,
    instance_texts,
    table_texts,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxRun]:
    with faulty_sync(tmp_path_factory.mktemp("security")) as finished:
        yield finished


@pytest.fixture(scope="module")
def scanner(run: SandboxRun) -> SecretScanner:
    return SecretScanner(run.secrets)


def _events(run: SandboxRun) -> list[tuple[str, str]]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(run.instance_dir)) as instance:
        return list(instance_texts(instance))


# --- the run did meet the trouble it is meant to meet -------------------------------------------------


def test_every_flows_daily_audit_ran_on_the_synced_day_writing_nothing(run: SandboxRun) -> None:
    # Rides the same run: the audits' own runs and logs are among those scanned below.
    assert set(run.audits) == {"acumatica_jira", "jaggaer_visma", "visma_asana", "visma_jira", "visma_monday"}
    for flow, audit in run.audits.items():
        assert audit.success and audit.reconciled, flow
        assert audit.written == 0, flow  # the day was synced: nothing new to create or update


def test_the_scan_knows_every_kind_of_secret_the_run_used(run: SandboxRun) -> None:
    names = {secret.name for secret in run.secrets}
    for expected in ("visma.client_secret", "visma.webhook_secret", "jaggaer.cxml_shared_secret",
                     "acumatica.password", "jira.refresh_token", "jira.webhook_secret", "asana.pat",
                     "monday.signing_secret", "vault key", "$ACUMATICA_WEBHOOK_TOKEN"):  # fmt: skip
        assert expected in names
    assert any(name.startswith("vault:jira") for name in names)
    assert any(name.startswith("vault:asana.webhook_secret.") for name in names), (
        "no Asana handshake happened"
    )
    for system in ("visma", "jaggaer", "acumatica", "jira"):
        assert any(name.startswith(f"{system}.issued_access") for name in names), system
    assert {f"${name}" for name in WRONG} <= names


def test_the_faulty_run_was_answered_with_429_5xx_and_expired_tokens(run: SandboxRun) -> None:
    retried = [text for _, text in run.logs if "retrying in" in text]
    assert any("-> 429" in text for text in retried)
    assert any("-> 503" in text for text in retried)
    assert any("RemoteProtocolError" in text or "ReadTimeout" in text for text in retried)
    for name in ("visma", "jaggaer", "jira"):  # every access token expired once: the clients fetched new ones
        simulator = run.simulators[name]
        with simulator.lock:
            assert sum(1 for token in simulator.tokens.values() if token.kind == "access") >= 2, name


def test_refused_credentials_and_a_failing_token_endpoint_failed_steps(run: SandboxRun) -> None:
    errors = "\n".join(error for report in run.reports[2:] for error in report.errors)
    assert "acumatica" in errors
    assert "asana" in errors
    assert "jira" in errors
    assert not run.reports[2].success and not run.reports[3].success


# --- and left no secret anywhere -------------------------------------------------------------------------


def test_no_log_record_of_any_logger_holds_a_secret(run: SandboxRun, scanner: SecretScanner) -> None:
    assert assert_no_secrets(scanner, run.logs, "log records") > 100


def test_nothing_printed_to_stdout_or_stderr_holds_a_secret(run: SandboxRun, scanner: SecretScanner) -> None:
    assert_no_secrets(scanner, run.output, "stdout/stderr and the sync reports")


def test_no_run_config_event_exception_or_metadata_holds_a_secret(
    run: SandboxRun, scanner: SecretScanner
) -> None:
    texts = _events(run)
    assert any("STEP_FAILURE" in where for where in (w for w, _ in texts))
    assert any("ASSET_MATERIALIZATION" in where for where, _ in texts)
    assert any("ASSET_CHECK_EVALUATION" in where for where, _ in texts)
    assert_no_secrets(scanner, texts, "the Dagster instance's runs and event log")


def test_no_ledger_row_holds_a_secret(run: SandboxRun, scanner: SecretScanner) -> None:
    with run.ledger() as ledger:
        texts = list(table_texts(ledger.engine))
        delivered = {event.system for event in ledger.inbox_after(0, unprocessed_only=False)}
        assert ledger.open_dead_letters(), "nothing was dead-lettered"
    assert {"jira", "asana"} <= delivered, delivered
    tables = {where.split()[1] for where, _ in texts}
    assert {"dead_letters", "inbox", "vault_entries", "landed_records", "links"} <= tables
    assert_no_secrets(scanner, texts, "the ledger's tables")


def test_no_file_at_rest_holds_a_secret(run: SandboxRun, scanner: SecretScanner) -> None:
    texts = run.files_at_rest()
    assert any(where.endswith("ledger.db") for where, _ in texts)
    assert_no_secrets(scanner, texts, "the instance's and the ledger's files")


def test_no_simulator_request_log_or_delivery_log_holds_a_secret(
    run: SandboxRun, scanner: SecretScanner
) -> None:
    texts = []
    for name, simulator in run.simulators.items():
        with simulator.lock:
            texts += [(f"{name} request {n}", r.model_dump_json()) for n, r in enumerate(simulator.requests)]
            texts += [
                (f"{name} delivery {n}", json.dumps(d, default=str))
                for n, d in enumerate(simulator.deliveries)
            ]
    assert len(texts) > 100
    assert_no_secrets(scanner, texts, "the simulators' /_sandbox/requests and /_sandbox/deliveries")
