"""`ml-connector auth asana`: Asana's OAuth consent against the served Asana simulator, whose
/-/oauth_authorize consents at once for the demo user and redirects with a code; then a sync reads
Asana with the refresh token the consent stored."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import dagster as dg

from ml_connector_dagster.config import active_config
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.sandbox.asana import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI
from ml_connector_dagster.systems.asana.consent import REFRESH_TOKEN_KEY

from .conftest import (
    SECRETS,
    WORK_TOOLS_ENV,
    CliRun,
    Sandbox,
    WorkTools,
    authorize_url,
    browser_consents,
    stored_secret,
)

REFERENCE = dg.AssetKey(["asana", "visma_reference_options"])


def configure(sandbox: Sandbox, tools: WorkTools, **asana: Any) -> None:
    """connector.yaml with Asana on OAuth at the served simulator, and the visma_asana flow on."""
    sandbox.write_config(
        asana={"mode": "sandbox", "base_url": tools.asana_url, "auth": "oauth", "rate_per_s": 1000, "burst": 1000,
               **asana},
        flows={"visma_asana": {"enabled": True, "op_retries": 0, "return_path": {"enabled": False}}},
    )


def consent(run_cli: CliRun) -> tuple[int, str, str]:
    """Start a consent, let the browser consent, and finish it with the address it landed on."""
    _, out, _ = run_cli("auth", "asana", "--no-prompt")
    return run_cli("auth", "asana", "--code", browser_consents(authorize_url(out)))


def test_the_authorize_url_asks_asana_for_a_code(sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun) -> None:
    configure(sandbox, work_tools)
    code, out, _ = run_cli("auth", "asana", "--no-prompt")
    assert code == 0
    url = urlsplit(authorize_url(out))
    params = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{work_tools.asana_url}/-/oauth_authorize"
    assert params["client_id"] == DEMO_CLIENT_ID and params["redirect_uri"] == DEMO_REDIRECT_URI
    assert params["response_type"] == "code" and params["scope"] == "default"
    assert len(params["state"]) >= 32
    assert "auth asana --code" in out


def test_the_code_is_exchanged_and_the_refresh_token_stored_encrypted(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools)
    work_tools.asana.revoke_token(work_tools.asana.demo_refresh_token)  # only the consent's token can work now
    code, out, err = consent(run_cli)
    assert code == 0, out + err
    assert f"the refresh token is stored encrypted in the vault as '{REFRESH_TOKEN_KEY}'" in out
    assert "asana: verified: as Ingrid Berg" in out
    token = stored_secret(sandbox.home, REFRESH_TOKEN_KEY)
    assert token and token != work_tools.asana.demo_refresh_token
    assert token.encode() not in (sandbox.home / "ledger.db").read_bytes()
    for secret in (*SECRETS, *WORK_TOOLS_ENV.values(), token):
        assert secret not in out + err


def test_a_sync_reads_asana_with_the_stored_refresh_token(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools)
    work_tools.asana.revoke_token(work_tools.asana.demo_refresh_token)
    assert consent(run_cli)[0] == 0
    defs = build_definitions(active_config())
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(["visma", "gl_accounts"]), dg.AssetKey(["visma", "dimensions"]), REFERENCE],
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == REFERENCE]
    assert event.step_materialization_data.materialization.metadata["changes_made"].value > 0
    stored = stored_secret(sandbox.home, REFRESH_TOKEN_KEY)
    refreshed = [token for token in work_tools.asana.tokens.values() if token.kind == "access"]
    assert refreshed and all(token.extra.get("client_id") == DEMO_CLIENT_ID for token in refreshed)
    assert stored in work_tools.asana.tokens  # the consent's grant, not the revoked demo one


def test_an_answer_given_twice_is_refused_the_second_time(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools)
    _, out, _ = run_cli("auth", "asana", "--no-prompt")
    answer = browser_consents(authorize_url(out))
    assert run_cli("auth", "asana", "--code", answer)[0] == 0
    code, out, err = run_cli("auth", "asana", "--code", answer)
    assert code == 1
    assert "no asana consent is in progress: run `ml-connector auth asana`" in err
    assert DEMO_CLIENT_SECRET not in out + err


def test_an_answer_with_another_state_is_refused(sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun) -> None:
    configure(sandbox, work_tools)
    _, out, _ = run_cli("auth", "asana", "--no-prompt")
    answer = urlsplit(browser_consents(authorize_url(out)))
    params = {key: values[0] for key, values in parse_qs(answer.query).items()}
    forged = answer._replace(query=urlencode({**params, "state": "forged"})).geturl()
    code, _, err = run_cli("auth", "asana", "--code", forged)
    assert code == 1
    assert "the state in that address is not the one this consent sent" in err
    assert stored_secret(sandbox.home, REFRESH_TOKEN_KEY) is None


def test_a_pat_configuration_has_no_consent_to_give(sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun) -> None:
    configure(sandbox, work_tools, auth="pat")
    code, _, err = run_cli("auth", "asana", "--no-prompt")
    assert code == 2
    assert "systems.asana.auth is pat: there is no consent to give" in err
