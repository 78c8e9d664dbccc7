"""The code location: loads, holds the Visma sources, and keeps secrets in the environment."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, load_config, parse_config
from ml_connector_dagster.definitions import (
    CONTRIBUTORS,
    Contribution,
    build_definitions,
    defs,
    use_sandbox_credentials,
)
from ml_connector_dagster.sandbox import visma as sandbox
from ml_connector_dagster_tests.visma_sandbox import sandbox_config

VISMA_ENV = ("VISMA_CLIENT_ID", "VISMA_CLIENT_SECRET", "VISMA_TENANT_ID", "VISMA_COMPANY_ID", "VISMA_WEBHOOK_SECRET")


def test_the_code_location_loads() -> None:
    dg.Definitions.validate_loadable(defs)


def test_it_holds_every_visma_source_with_its_check_and_sensor() -> None:
    keys = {asset.key.to_user_string() for asset in defs.assets}
    assert {"visma/supplier_invoices", "visma/purchase_orders", "visma/customer_invoices", "visma/payments",
            "visma/supplier_payments", "visma/gl_transactions", "visma/suppliers", "visma/gl_accounts",
            "visma/dimensions"} <= keys
    checked = {key.asset_key.to_user_string() for check in defs.asset_checks for key in check.check_keys}
    assert {key for key in keys if key.startswith("visma/")} <= checked
    assert {"visma_supplier_invoices_poll", "visma_supplier_payments_poll", "visma_gl_transactions_poll"} <= {
        s.name for s in defs.sensors}


def test_partitioned_sources_share_one_daily_utc_partitioning_that_includes_today() -> None:
    partitioned = [a for a in defs.assets if a.group_names_by_key.get(a.key) == "visma" and a.partitions_def is not None]
    assert len(partitioned) == 6
    (partitions,) = {a.partitions_def for a in partitioned}
    assert isinstance(partitions, dg.DailyPartitionsDefinition) and partitions.timezone == "UTC"
    assert partitions.end_offset == 1


def test_sandbox_credentials_fill_only_the_unset_variables() -> None:
    environ = {"VISMA_CLIENT_ID": "my-own-client"}
    use_sandbox_credentials(sandbox_config("http://127.0.0.1:8801"), environ)
    assert environ["VISMA_CLIENT_ID"] == "my-own-client"
    assert environ["VISMA_CLIENT_SECRET"] == sandbox.DEMO_CLIENT_SECRET
    assert environ["VISMA_TENANT_ID"] == sandbox.DEMO_TENANT_ID


def test_a_real_system_never_gets_demo_credentials() -> None:
    environ: dict[str, str] = {}
    use_sandbox_credentials(sandbox_config("https://api.finance.visma.net", mode="real"), environ)
    assert not set(VISMA_ENV) & set(environ)


def test_secrets_reach_resources_as_environment_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VISMA_ENV:
        monkeypatch.setenv(name, f"{name.lower()}-value")
    built = build_definitions(sandbox_config("http://127.0.0.1:8801"))
    config = built.resources["visma"]._convert_to_config_dictionary()
    assert config["client_secret"] == {"env": "VISMA_CLIENT_SECRET"}
    assert "visma_client_secret-value" not in json.dumps(config) + repr(built.resources["visma"])


def test_a_contributor_adds_its_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    @dg.asset(key=["jira", "probe"])
    def probe() -> None:
        return None

    monkeypatch.setattr("ml_connector_dagster.definitions.CONTRIBUTORS", [*CONTRIBUTORS, lambda _: Contribution(assets=[probe])])
    built = build_definitions(sandbox_config("http://127.0.0.1:8801"))
    assert dg.AssetKey(["jira", "probe"]) in {asset.key for asset in built.assets}


def test_two_contributors_cannot_claim_one_resource_key(monkeypatch: pytest.MonkeyPatch) -> None:
    clash = Contribution(resources={"ledger": object()})
    monkeypatch.setattr("ml_connector_dagster.definitions.CONTRIBUTORS", [*CONTRIBUTORS, lambda _: clash])
    with pytest.raises(ValueError, match="ledger"):
        build_definitions(sandbox_config("http://127.0.0.1:8801"))


@pytest.mark.parametrize(("resolution_poll_s", "polls_every"), [(None, "every 30 s"), (7, "every 7 s")])
def test_the_resolution_sensor_polls_jira_at_the_flows_pace_or_the_poll_interval(
    resolution_poll_s: float | None, polls_every: str
) -> None:
    shipped = load_config(SANDBOX_CONFIG_PATH).model_dump(mode="json", exclude_none=True)
    shipped["flows"]["acumatica_jira"]["resolution_poll_s"] = resolution_poll_s
    shipped["poll_interval_s"] = 30

    sensor = build_definitions(parse_config(shipped)).get_sensor_def("acumatica_jira_resolutions")

    assert sensor.minimum_interval_seconds == 1  # the webhooks in the inbox, every tick
    assert f"JQL poll on the resolution date {polls_every}" in (sensor.description or "")
