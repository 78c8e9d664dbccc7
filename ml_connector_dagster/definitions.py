"""The code location: one ``Definitions`` object, ``defs``, assembled from connector.yaml.

Each part of the connector *contributes* its assets, checks, sensors and resources for the active
configuration (a system or flow that is not configured contributes nothing); flows add their own
contributor to :data:`CONTRIBUTORS`. Secrets reach resources only as ``EnvVar``s.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from ml_connector_dagster.config import ConnectorConfig, active_config

__all__ = ["CONTRIBUTORS", "Contribution", "build_definitions", "defs", "use_sandbox_credentials"]


@dataclass(frozen=True)
class Contribution:
    """What one part of the connector adds to the code location."""

    assets: Sequence[Any] = ()
    asset_checks: Sequence[dg.AssetChecksDefinition] = ()
    sensors: Sequence[dg.SensorDefinition] = ()
    schedules: Sequence[dg.ScheduleDefinition] = ()
    jobs: Sequence[dg.JobDefinition] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)


# system -> {settings field naming an env var: key of the simulator's demo credentials}. Each simulator
# module answers ``sandbox_credentials(seed)`` with what its ``/_sandbox/credentials`` would show.
SANDBOX_CREDENTIALS: dict[str, dict[str, str]] = {
    "visma": {
        "client_id_env": "client_id", "client_secret_env": "client_secret", "tenant_id_env": "tenant_id",
        "company_id_env": "company_id", "webhook_secret_env": "webhook_secret",
    },
    "jira": {
        "client_id_env": "client_id", "client_secret_env": "client_secret", "refresh_token_env": "refresh_token",
        "email_env": "email", "api_token_env": "api_token", "webhook_secret_env": "webhook_secret",
    },
}  # fmt: skip


def use_sandbox_credentials(config: ConnectorConfig, environ: dict[str, str] | None = None) -> None:
    """For each system in sandbox mode, set its unset credential variables to the simulator's demo values.

    Resources then always read credentials through ``EnvVar``, in the sandbox as in production, and
    no secret is ever written into run config. A real system's variables are never touched.
    """
    env = os.environ if environ is None else environ
    for system, fields in SANDBOX_CREDENTIALS.items():
        settings = getattr(config.systems, system, None)
        if settings is None or settings.mode != "sandbox":
            continue
        try:
            module = importlib.import_module(f"ml_connector_dagster.sandbox.{system}")
        except ImportError:
            continue  # that simulator is not built in this checkout
        demo = module.sandbox_credentials(config.sandbox.seed)
        for env_field, key in fields.items():
            if hasattr(settings, env_field) and key in demo:
                env.setdefault(getattr(settings, env_field), demo[key])


def core_contribution(config: ConnectorConfig) -> Contribution:
    """The ledger, which every asset that lands, links or quarantines records uses."""
    from ml_connector_dagster.resources import LedgerResource

    return Contribution(resources={"ledger": LedgerResource.from_env()})


def visma_contribution(config: ConnectorConfig) -> Contribution | None:
    """Visma source assets, their dead-letter checks and poll sensors, and the Visma resource."""
    settings = config.systems.visma
    if settings is None:
        return None
    from ml_connector_dagster.assets.visma import visma_asset_checks, visma_source_assets
    from ml_connector_dagster.sensors.visma import visma_poll_sensors
    from ml_connector_dagster.systems.visma.resource import VismaResource

    assets = visma_source_assets(settings)
    sensors = visma_poll_sensors(
        assets, settings, lookback=timedelta(days=config.sandbox.days),
        minimum_interval_seconds=config.poll_interval_s,
    )
    return Contribution(assets=assets, asset_checks=visma_asset_checks(), sensors=sensors,
                        resources={"visma": VismaResource.from_settings(settings)})


def jira_contribution(config: ConnectorConfig) -> Contribution | None:
    """The Jira resource and, with the visma_jira flow on, the webhook registration kept alive by a schedule."""
    settings = config.systems.jira
    if settings is None:
        return None
    from ml_connector_dagster.systems.jira.resource import JiraResource

    resources = {"jira": JiraResource.from_settings(settings)}
    flow = config.flows.visma_jira
    if flow is None or not flow.enabled or not flow.jira_webhooks.enabled:
        return Contribution(resources=resources)
    from ml_connector_dagster.sensors.jira_webhooks import (
        build_webhook_refresh_schedule,
        build_webhook_registration,
        webhook_jql_filter,
    )

    hooks = flow.jira_webhooks
    return Contribution(assets=[build_webhook_registration(hooks, webhook_jql_filter(flow))],
                        schedules=[build_webhook_refresh_schedule(hooks)], resources=resources)


def visma_jira_contribution(config: ConnectorConfig) -> Contribution | None:
    """Visma invoices and POs -> Jira issues: destination assets, reconciliation checks, replay job."""
    flow, visma = config.flows.visma_jira, config.systems.visma
    if flow is None or not flow.enabled or visma is None or config.systems.jira is None:
        return None
    from ml_connector_dagster.flows.visma_jira import build_visma_jira

    parts = build_visma_jira(flow, visma)
    return Contribution(assets=parts.assets, asset_checks=parts.asset_checks, jobs=parts.jobs)


def alerts_contribution(config: ConnectorConfig) -> Contribution:
    """The run-failure sensor that alerts on every failed run of this code location."""
    from ml_connector_dagster.sensors.alerts import build_run_failure_alert_sensor, secret_env_names

    return Contribution(sensors=[build_run_failure_alert_sensor(config.alerts, secret_env_names(config))])


CONTRIBUTORS: list[Callable[[ConnectorConfig], Contribution | None]] = [
    core_contribution, visma_contribution, jira_contribution, visma_jira_contribution, alerts_contribution,
]


def build_definitions(config: ConnectorConfig) -> dg.Definitions:
    """The code location for ``config``: every contributor's definitions in one ``Definitions``."""
    use_sandbox_credentials(config)
    parts = [part for contribute in CONTRIBUTORS if (part := contribute(config)) is not None]
    resources: dict[str, Any] = {}
    for part in parts:
        clash = resources.keys() & part.resources.keys()
        if clash:
            raise ValueError(f"resource key(s) {sorted(clash)} contributed twice")
        resources.update(part.resources)
    return dg.Definitions(
        assets=[asset for part in parts for asset in part.assets],
        asset_checks=[check for part in parts for check in part.asset_checks],
        sensors=[sensor for part in parts for sensor in part.sensors],
        schedules=[schedule for part in parts for schedule in part.schedules],
        jobs=[job for part in parts for job in part.jobs],
        resources=resources,
    )


defs = build_definitions(active_config())
