"""`ml-connector auth monday`: monday's OAuth app consent against the served monday simulator, whose
/oauth2/authorize consents at once for the demo user and redirects with a code. monday answers a
never-expiring access token and no refresh token: the vault keeps the access token itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from ml_connector_dagster.config import active_config
from ml_connector_dagster.sandbox.monday import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI
from ml_connector_dagster.systems.monday.consent import ACCESS_TOKEN_KEY
from ml_connector_dagster.systems.monday.resource import MondayResource

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


def configure(sandbox: Sandbox, tools: WorkTools, **monday: Any) -> None:
    """connector.yaml with monday on OAuth at the served simulator (which also serves auth.monday.com's paths)."""
    sandbox.write_config(monday={"mode": "sandbox", "base_url": tools.monday_url, "auth": "oauth",
                                 "rate_per_s": 1000, "burst": 1000, **monday})


def consent(run_cli: CliRun) -> tuple[int, str, str]:
    _, out, _ = run_cli("auth", "monday", "--no-prompt")
    return run_cli("auth", "monday", "--code", browser_consents(authorize_url(out)))


def test_the_authorize_url_asks_monday_for_the_boards_scopes(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools)
    code, out, _ = run_cli("auth", "monday", "--no-prompt")
    assert code == 0
    url = urlsplit(authorize_url(out))
    params = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{work_tools.monday_url}/oauth2/authorize"
    assert params["client_id"] == DEMO_CLIENT_ID and params["redirect_uri"] == DEMO_REDIRECT_URI
    assert {"me:read", "boards:read", "boards:write", "webhooks:write"} <= set(params["scope"].split())
    assert len(params["state"]) >= 32


def test_the_code_is_exchanged_and_the_access_token_stored_encrypted(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools)
    code, out, err = consent(run_cli)
    assert code == 0, out + err
    assert f"the access token is stored encrypted in the vault as '{ACCESS_TOKEN_KEY}'" in out
    assert "monday: verified: as " in out
    token = stored_secret(sandbox.home, ACCESS_TOKEN_KEY)
    assert token and token != work_tools.monday.api_token
    assert token.encode() not in (sandbox.home / "ledger.db").read_bytes()
    for secret in (*SECRETS, *WORK_TOOLS_ENV.values(), token):
        assert secret not in out + err


def test_the_resource_reads_boards_with_the_stored_token(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools)
    assert consent(run_cli)[0] == 0
    settings = active_config().systems.monday
    assert settings is not None
    resource = MondayResource.from_settings(settings)
    assert resource.api_token is None  # the personal token is not even wired
    with resource.client() as client:
        assert client.me().id == str(work_tools.monday.user_id)
    [token] = [t for t in work_tools.monday.tokens.values() if t.kind == "access"]
    assert token.value == stored_secret(sandbox.home, ACCESS_TOKEN_KEY)
    assert token.expires_at is None  # monday's OAuth tokens live until the app is uninstalled


def test_a_missing_app_secret_is_named(sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun,
                                       monkeypatch: Any) -> None:
    configure(sandbox, work_tools, mode="real", base_url=work_tools.monday_url)
    monkeypatch.delenv("MONDAY_CLIENT_SECRET")
    code, _, err = run_cli("auth", "monday", "--no-prompt")
    assert code == 2
    assert "are MONDAY_CLIENT_ID and MONDAY_CLIENT_SECRET set?" in err


def test_a_wrong_app_secret_is_refused_by_the_token_endpoint(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun, monkeypatch: Any
) -> None:
    configure(sandbox, work_tools)
    _, out, _ = run_cli("auth", "monday", "--no-prompt")
    answer = browser_consents(authorize_url(out))
    monkeypatch.setenv("MONDAY_CLIENT_SECRET", "not-the-apps-secret")
    code, out, err = run_cli("auth", "monday", "--code", answer)
    assert code == 1
    assert "invalid_client" in err
    assert stored_secret(sandbox.home, ACCESS_TOKEN_KEY) is None
    assert "not-the-apps-secret" not in out + err and DEMO_CLIENT_SECRET not in out + err


def test_an_api_token_configuration_has_no_consent_to_give(
    sandbox: Sandbox, work_tools: WorkTools, run_cli: CliRun
) -> None:
    configure(sandbox, work_tools, auth="api_token")
    code, _, err = run_cli("auth", "monday", "--no-prompt")
    assert code == 2
    assert "systems.monday.auth is api_token: there is no consent to give" in err
