"""What the CLI tests share: Visma and Jira simulators on loopback sockets (Asana and monday too for
the tests that ask), a connector.yaml pointing at them, the environment a deployment would have,
the CLI run under capsys, and a person's browser consenting."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from ml_connector_dagster.cli import main
from ml_connector_dagster.config import active_config
from ml_connector_dagster.core import http
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.sandbox import asana as asana_sandbox
from ml_connector_dagster.sandbox import jira as jira_sandbox
from ml_connector_dagster.sandbox import monday as monday_sandbox
from ml_connector_dagster.sandbox import visma as visma_sandbox
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.jira import JiraSimulator
from ml_connector_dagster.sandbox.monday import MondaySimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator

DEMO_ENV = {
    "VISMA_CLIENT_ID": visma_sandbox.DEMO_CLIENT_ID,
    "VISMA_CLIENT_SECRET": visma_sandbox.DEMO_CLIENT_SECRET,
    "VISMA_TENANT_ID": visma_sandbox.DEMO_TENANT_ID,
    "VISMA_COMPANY_ID": visma_sandbox.DEMO_COMPANY_ID,
    "VISMA_WEBHOOK_SECRET": visma_sandbox.DEMO_WEBHOOK_SECRET,
    "JIRA_CLIENT_ID": jira_sandbox.DEMO_CLIENT_ID,
    "JIRA_CLIENT_SECRET": jira_sandbox.DEMO_APP_SECRET,
    "JIRA_REFRESH_TOKEN": jira_sandbox.demo_refresh_token(0),
    "JIRA_EMAIL": jira_sandbox.DEMO_EMAIL,
    "JIRA_API_TOKEN": jira_sandbox.DEMO_API_TOKEN,
    "JIRA_WEBHOOK_SECRET": jira_sandbox.DEMO_WEBHOOK_SECRET,
}
SECRETS = (visma_sandbox.DEMO_CLIENT_SECRET, jira_sandbox.DEMO_APP_SECRET, jira_sandbox.demo_refresh_token(0),
           jira_sandbox.DEMO_API_TOKEN)
# Every variable of Asana and monday that `use_sandbox_credentials` would otherwise set for good.
WORK_TOOLS_ENV = {
    "ASANA_PAT": asana_sandbox.demo_pat(0),
    "ASANA_CLIENT_ID": asana_sandbox.DEMO_CLIENT_ID,
    "ASANA_CLIENT_SECRET": asana_sandbox.DEMO_CLIENT_SECRET,
    "ASANA_REFRESH_TOKEN": asana_sandbox.demo_refresh_token(0),
    "MONDAY_API_TOKEN": monday_sandbox.demo_api_token(0),
    "MONDAY_SIGNING_SECRET": monday_sandbox.DEMO_SIGNING_SECRET,
    "MONDAY_CLIENT_ID": monday_sandbox.DEMO_CLIENT_ID,
    "MONDAY_CLIENT_SECRET": monday_sandbox.DEMO_CLIENT_SECRET,
}


@dataclass
class Sandbox:
    visma: VismaSimulator
    visma_url: str
    jira: JiraSimulator
    jira_url: str
    home: Path

    def write_config(self, visma: dict[str, Any] | None = None, jira: dict[str, Any] | None = None, *,
                     flows: dict[str, Any] | None = None, sections: dict[str, Any] | None = None,
                     **systems: dict[str, Any]) -> Path:
        """connector.yaml with both systems in sandbox mode at the served simulators (plus overrides),
        and any other ``systems``, ``flows`` and top-level ``sections`` (sandbox, webhooks) given."""
        config = {
            "systems": {
                "visma": {"mode": "sandbox", "base_url": self.visma_url, "token_url": f"{self.visma_url}/connect/token",
                          "rate_per_s": 1000, "burst": 1000, **(visma or {})},
                "jira": {"mode": "sandbox", "base_url": self.jira_url, "auth_url": self.jira_url, "auth": "oauth",
                         "rate_per_s": 1000, "burst": 1000, **(jira or {})},
                **systems,
            },
            "flows": flows or {},
            **(sections or {}),
        }
        path = self.home / "connector.yaml"
        path.write_text(yaml.safe_dump(config))
        active_config.cache_clear()
        return path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """Served simulators, and the environment pointing the CLI at them (restored afterwards)."""
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    monkeypatch.setattr(http, "default_sleep", lambda _seconds: None)  # retries of a dead URL do not wait
    visma = VismaSimulator(size=200)
    jira = JiraSimulator(seed=0)
    with served(visma) as visma_server, served(jira) as jira_server:
        box = Sandbox(visma, visma_server.base_url, jira, jira_server.base_url, tmp_path)
        monkeypatch.setenv("ML_CONNECTOR_CONFIG", str(box.write_config()))
        yield box
    active_config.cache_clear()


@dataclass
class WorkTools:
    """Asana and monday simulators served beside the sandbox's Visma and Jira."""

    asana: AsanaSimulator
    asana_url: str
    monday: MondaySimulator
    monday_url: str


@pytest.fixture
def work_tools(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkTools]:
    """Asana (a paid plan: no test waits a Retry-After) and monday, served; their demo variables set."""
    for name, value in WORK_TOOLS_ENV.items():
        monkeypatch.setenv(name, value)
    asana = AsanaSimulator(premium=True, instantiate_delay_s=0)
    monday = MondaySimulator()
    try:
        with served(asana) as asana_server, served(monday) as monday_server:
            yield WorkTools(asana, asana_server.base_url, monday, monday_server.base_url)
    finally:
        asana.close()
        monday.close()


CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run ``ml-connector <args>`` in this process; return (exit code, stdout, stderr) as capsys saw them."""

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main.main(args=list(args), prog_name="ml-connector", standalone_mode=True)
        out, err = capsys.readouterr()
        code = exited.value.code
        return (code if isinstance(code, int) else 1), out, err

    return invoke


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"




def authorize_url(out: str) -> str:
    """The authorize address the CLI printed."""
    match = re.search(r"(http://\S+authorize\?\S+)", out)
    assert match is not None, out
    return match[1]


def browser_consents(url: str) -> str:
    """What a person's browser ends on after consenting: the redirect URI with code and state."""
    response = httpx.get(url, follow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def stored_secret(home: Path, name: str) -> str | None:
    """The vault entry ``name`` of the sandbox ledger under ``home``, decrypted."""
    engine = sa.create_engine(f"sqlite:///{home / 'ledger.db'}")
    try:
        return Vault.from_env(engine, sandbox=True, home=home).get(name)
    finally:
        engine.dispose()
