"""`ml-connector ping` and the `ping` job, against served Visma and Jira simulators."""

from __future__ import annotations

import contextlib
import importlib

import dagster as dg
import pytest
import yaml

from ml_connector_dagster.config import active_config
from ml_connector_dagster.definitions import SANDBOX_CREDENTIALS, build_definitions
from ml_connector_dagster.ping import PingResult, ping_system
from ml_connector_dagster.sandbox import visma as visma_sandbox
from ml_connector_dagster.sandbox.launch import create_simulator
from ml_connector_dagster.sandbox.serve import served

from .conftest import SECRETS, CliRun, Sandbox, closed_port_url

WRONG_SECRET = "not-the-visma-secret-3f9a"


def row(out: str, system: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{system} "))


def test_every_reachable_system_says_what_it_can_see(sandbox: Sandbox, run_cli: CliRun) -> None:
    code, out, _ = run_cli("ping")
    assert code == 0
    assert f"tenant {visma_sandbox.DEMO_TENANT_ID}, 200 supplier invoices" in row(out, "visma")
    assert "site nordic-manufacturing, as Ingrid Halvorsen" in row(out, "jira")
    assert all(" ok " in row(out, system) for system in ("visma", "jira"))
    assert " ms " in row(out, "visma")


def test_a_wrong_client_secret_fails_and_names_the_variable_to_check(
    sandbox: Sandbox, run_cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISMA_CLIENT_SECRET", WRONG_SECRET)
    code, out, err = run_cli("ping")
    assert code == 1
    assert " FAIL " in row(out, "visma") and " ok " in row(out, "jira")
    assert "invalid_client" in out
    assert "fix:   check VISMA_CLIENT_SECRET" in out
    assert WRONG_SECRET not in out + err


def test_an_unreachable_url_is_named_in_the_fix(sandbox: Sandbox, run_cli: CliRun) -> None:
    dead = closed_port_url()
    sandbox.write_config(visma={"base_url": dead, "token_url": f"{dead}/connect/token"})
    code, out, _ = run_cli("ping")
    assert code == 1
    assert "ConnectError" in out
    assert f"could not connect to {dead}:" in out


def test_a_revoked_refresh_token_sends_the_operator_to_auth_jira(sandbox: Sandbox, run_cli: CliRun) -> None:
    sandbox.jira.revoke_token(sandbox.jira.demo_refresh_token)
    code, out, _ = run_cli("ping")
    assert code == 1
    assert " FAIL " in row(out, "jira") and " ok " in row(out, "visma")
    assert "invalid_grant" in out
    assert "fix:   the refresh token is revoked, expired or missing: run `ml-connector auth jira`" in out


def test_a_missing_scope_is_named(sandbox: Sandbox, run_cli: CliRun) -> None:
    sandbox.write_config(visma={"scope": "vismanet_erp_service_api:create"})
    code, out, _ = run_cli("ping")
    assert code == 1
    assert "403" in out
    assert "the token lacks the scope vismanet_erp_service_api:read" in out


def test_no_secret_reaches_the_output_or_the_logs(
    sandbox: Sandbox, run_cli: CliRun, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VISMA_CLIENT_SECRET", WRONG_SECRET)  # a failing system prints its error...
    sandbox.jira.revoke_token(sandbox.jira.demo_refresh_token)  # ...and so does a failing token refresh
    with caplog.at_level("DEBUG"):
        _, out, err = run_cli("ping")
    shown = out + err + caplog.text
    assert "FAIL" in out
    for secret in (*SECRETS, WRONG_SECRET):
        assert secret not in shown


def test_a_system_without_a_probe_is_listed_and_does_not_fail(sandbox: Sandbox) -> None:
    settings = active_config().systems.visma
    assert settings is not None
    result = ping_system("erp_of_the_future", settings, lambda: None)
    assert result == PingResult(system="erp_of_the_future", mode="sandbox", ok=None, seen="no probe for this system yet")


def test_the_ping_job_records_the_table_as_metadata(sandbox: Sandbox) -> None:
    defs = build_definitions(active_config())
    with dg.instance_for_test() as instance:
        result = defs.get_job_def("ping").execute_in_process(instance=instance)
    assert result.success
    [output] = [e for e in result.events_for_node("ping_systems") if e.is_successful_output]
    recorded = output.step_output_data.metadata
    assert "tenant" in recorded["visma"].value and recorded["visma"].value.startswith("ok ")
    assert "| jira | sandbox | ok |" in recorded["report"].value


def test_the_ping_job_fails_naming_the_failed_system(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISMA_CLIENT_SECRET", WRONG_SECRET)
    defs = build_definitions(active_config())
    with dg.instance_for_test() as instance:
        result = defs.get_job_def("ping").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data.description == "ping failed for visma"
    assert "check VISMA_CLIENT_SECRET" in failure.step_failure_data.user_failure_data.metadata["report"].value


def test_a_missing_credential_variable_is_named(
    sandbox: Sandbox, run_cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.write_config(visma={"mode": "real"})  # a real system gets no demo credentials
    monkeypatch.delenv("VISMA_CLIENT_SECRET")
    code, out, _ = run_cli("ping")
    assert code == 1
    assert "fix:   set VISMA_CLIENT_SECRET" in out


def test_every_sandbox_system_answers_its_probe(
    sandbox: Sandbox, run_cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    others = ("jaggaer", "acumatica", "asana", "monday")
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(served(create_simulator(name))).base_url for name in others}
        path = sandbox.write_config()
        config = yaml.safe_load(path.read_text())
        config["systems"] |= {
            "jaggaer": {"base_url": urls["jaggaer"], "cxml_url": f"{urls['jaggaer']}/cxml",
                        "token_url": f"{urls['jaggaer']}/auth/realms/J1p-integrations/protocol/openid-connect/token"},
            "acumatica": {"base_url": urls["acumatica"]},
            "asana": {"base_url": urls["asana"], "auth": "pat"},
            "monday": {"base_url": urls["monday"]},
        }
        path.write_text(yaml.safe_dump(config))
        active_config.cache_clear()
        for system, fields in SANDBOX_CREDENTIALS.items():  # as use_sandbox_credentials, but undone after
            settings = getattr(active_config().systems, system)
            demo = importlib.import_module(f"ml_connector_dagster.sandbox.{system}").sandbox_credentials(0)
            for field, key in fields.items():
                if hasattr(settings, field) and key in demo:
                    monkeypatch.setenv(getattr(settings, field), demo[key])
        code, out, _ = run_cli("ping")
    assert code == 0, out
    assert "purchase orders" in row(out, "jaggaer")
    assert "endpoint Default/24.200.001, bills readable" in row(out, "acumatica")
    assert "workspace(s)" in row(out, "asana")
    assert "API version" in row(out, "monday")
