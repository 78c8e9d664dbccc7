"""`ml-connector auth jira`: Atlassian 3LO consent against the served Jira simulator, whose /authorize
consents at once for the demo user and redirects with a code."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import click
import pytest

from ml_connector_dagster.sandbox.jira import DEMO_APP_SECRET, DEMO_CLIENT_ID, DEMO_REDIRECT_URI
from ml_connector_dagster.systems.jira.client import REFRESH_TOKEN_KEY

from .conftest import SECRETS, CliRun, Sandbox, authorize_url, browser_consents, stored_secret


def stored_refresh_token(home: Path) -> str | None:
    return stored_secret(home, REFRESH_TOKEN_KEY)


def test_the_authorize_url_asks_atlassian_for_3lo_consent(sandbox: Sandbox, run_cli: CliRun) -> None:
    code, out, _ = run_cli("auth", "jira", "--no-prompt")
    assert code == 0
    url = urlsplit(authorize_url(out))
    params = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{sandbox.jira_url}/authorize"
    assert params["audience"] == "api.atlassian.com"
    assert params["client_id"] == DEMO_CLIENT_ID
    assert params["redirect_uri"] == DEMO_REDIRECT_URI
    assert params["response_type"] == "code" and params["prompt"] == "consent"
    assert {"read:jira-work", "write:jira-work", "offline_access"} <= set(params["scope"].split())
    assert len(params["state"]) >= 32
    assert "auth jira --code" in out


def test_each_consent_gets_a_new_state(sandbox: Sandbox, run_cli: CliRun) -> None:
    states = {parse_qs(urlsplit(authorize_url(run_cli("auth", "jira", "--no-prompt")[1])).query)["state"][0]
              for _ in range(2)}
    assert len(states) == 2


def test_the_code_is_exchanged_and_the_refresh_token_stored_encrypted(sandbox: Sandbox, run_cli: CliRun) -> None:
    sandbox.jira.revoke_token(sandbox.jira.demo_refresh_token)  # only the consent's token can work now
    _, out, _ = run_cli("auth", "jira", "--no-prompt")
    code, out, err = run_cli("auth", "jira", "--code", browser_consents(authorize_url(out)))
    assert code == 0, out + err
    assert f"stored encrypted in the vault as '{REFRESH_TOKEN_KEY}'" in out
    assert "jira: verified: site nordic-manufacturing, as Ingrid Halvorsen" in out
    token = stored_refresh_token(sandbox.home)
    assert token and token != sandbox.jira.demo_refresh_token
    raw = (sandbox.home / "ledger.db").read_bytes()
    assert token.encode() not in raw
    for secret in (*SECRETS, token):
        assert secret not in out + err


def test_the_answer_can_be_pasted_at_the_prompt(
    sandbox: Sandbox, run_cli: CliRun, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []

    def person_at_the_terminal(text: str, **options: Any) -> str:
        asked.append(options)
        return browser_consents(authorize_url(capsys.readouterr().out))  # reads the screen, consents, pastes

    monkeypatch.setattr(click, "prompt", person_at_the_terminal)
    code, out, err = run_cli("auth", "jira")
    assert code == 0, out + err
    assert asked == [{"hide_input": True}]  # the pasted address carries the code: not echoed
    assert "verified: site nordic-manufacturing" in out
    assert stored_refresh_token(sandbox.home)


def test_an_answer_with_another_state_is_refused_and_nothing_is_stored(sandbox: Sandbox, run_cli: CliRun) -> None:
    _, out, _ = run_cli("auth", "jira", "--no-prompt")
    answer = urlsplit(browser_consents(authorize_url(out)))
    params = {key: values[0] for key, values in parse_qs(answer.query).items()}
    forged = answer._replace(query=urlencode({**params, "state": "forged-" + params["state"]})).geturl()
    code, out, err = run_cli("auth", "jira", "--code", forged)
    assert code == 1
    assert "the state in that address is not the one this consent sent" in err
    assert stored_refresh_token(sandbox.home) is None
    assert DEMO_APP_SECRET not in out + err


def test_a_code_without_a_consent_in_progress_is_refused(sandbox: Sandbox, run_cli: CliRun) -> None:
    code, _, err = run_cli("auth", "jira", "--code", f"{DEMO_REDIRECT_URI}?code=abc&state=xyz")
    assert code == 1
    assert "no jira consent is in progress: run `ml-connector auth jira`" in err
