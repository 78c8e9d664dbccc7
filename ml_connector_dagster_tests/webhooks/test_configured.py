"""The receiver as connector.yaml describes it, and ``ml-connector webhooks serve``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.routing import Route

from ml_connector_dagster import cli
from ml_connector_dagster.config import load_config, parse_config
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.definitions import use_sandbox_credentials
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
from ml_connector_dagster.webhooks.configured import configured_receiver

from .support import inbox_rows, serve_app
from .vendor_signing import as_body, visma_headers

SYSTEMS = ["visma", "acumatica", "jira", "asana", "monday"]


def sandbox_config(**webhooks: Any) -> Any:
    data = load_config().model_dump(mode="json", exclude_none=True)
    data["webhooks"] = {**data.get("webhooks", {}), **webhooks}
    return parse_config(data)


def routes(app: Any) -> set[str]:
    return {route.path for route in app.routes if isinstance(route, Route)}


def test_every_system_gets_its_route(ledger: Ledger, vault: Vault) -> None:
    app = configured_receiver(sandbox_config(), ledger, vault=vault, environ={})
    assert routes(app) == {"/webhooks/_stats", *(f"/webhooks/{system}" for system in SYSTEMS)}


def test_secrets_come_from_the_variables_the_config_names(ledger: Ledger, vault: Vault) -> None:
    app = configured_receiver(sandbox_config(), ledger, vault=vault, environ={"VISMA_WEBHOOK_SECRET": "from-env"})
    body = as_body({"entity": "SupplierInvoice", "id": "1"})
    with serve_app(app) as client:
        response = client.post(
            "/webhooks/visma", content=body, headers=visma_headers("from-env", body, notification_id="n", at=datetime.now(UTC))
        )
    assert response.status_code == 200
    assert len(inbox_rows(ledger)) == 1


def test_a_system_without_its_secret_refuses_deliveries(ledger: Ledger, vault: Vault) -> None:
    app = configured_receiver(sandbox_config(), ledger, vault=vault, environ={})
    body = b'{"event": {"pulseId": 1}}'
    with serve_app(app) as client:
        response = client.post("/webhooks/monday", content=body, headers={"authorization": "x.y.z"})
        stats = client.get("/webhooks/_stats").json()
    assert response.status_code == 401
    assert stats["counters"]["monday"] == {"rejected.not_configured": 1}


def test_the_acumatica_header_is_the_one_configured(ledger: Ledger, vault: Vault) -> None:
    config = sandbox_config(acumatica={"header_name": "X-Our-Header", "header_value_env": "ACU_TOKEN"})
    app = configured_receiver(config, ledger, vault=vault, environ={"ACU_TOKEN": "t0k3n"})
    with serve_app(app) as client:
        response = client.post("/webhooks/acumatica", json={"Inserted": []}, headers={"X-Our-Header": "t0k3n"})
    assert response.status_code == 200


def test_the_body_limit_is_the_one_configured(ledger: Ledger, vault: Vault) -> None:
    app = configured_receiver(sandbox_config(max_body_bytes=2048), ledger, vault=vault, environ={})
    with serve_app(app) as client:
        response = client.post("/webhooks/visma", content=b"x" * 2049)
    assert response.status_code == 413


def test_an_unknown_webhooks_setting_is_refused_by_name() -> None:
    data = load_config().model_dump(mode="json", exclude_none=True)
    data["webhooks"] = {"max_body_byte": 10}
    with pytest.raises(ValueError, match="webhooks.max_body_byte"):
        parse_config(data)


def test_webhooks_serve_runs_the_receiver_on_the_configured_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.delenv("ML_CONNECTOR_DB_URL", raising=False)
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.update(app=app, **kwargs))
    result = CliRunner().invoke(cli.main, ["webhooks", "serve", "--port", "8899"])
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8899)
    assert "/webhooks/visma" in routes(served["app"])



def test_in_the_sandbox_the_receiver_accepts_the_acumatica_simulators_pushes(ledger: Ledger, vault: Vault) -> None:
    # The push token is a `webhooks.acumatica` setting, not one of the system's: it must still be filled.
    config, environ = sandbox_config(), {}
    use_sandbox_credentials(config, environ)
    simulator = AcumaticaSimulator(size=5)
    try:
        header = {config.webhooks.acumatica.header_name: simulator.push_header_value}
    finally:
        simulator.close()
    app = configured_receiver(config, ledger, vault=vault, environ=environ)
    with serve_app(app) as client:
        response = client.post("/webhooks/acumatica", json={"Inserted": []}, headers=header)
    assert response.status_code == 200
