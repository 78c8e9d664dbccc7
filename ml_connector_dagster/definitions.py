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
    "jaggaer": {
        "client_id_env": "client_id", "client_secret_env": "client_secret",
        "cxml_shared_secret_env": "cxml_shared_secret",
    },
    "acumatica": {
        "client_id_env": "client_id", "client_secret_env": "client_secret", "username_env": "username",
        "password_env": "password",
    },
    "monday": {
        "api_token_env": "api_token", "signing_secret_env": "signing_secret", "client_id_env": "client_id",
        "client_secret_env": "client_secret",
    },
    "asana": {
        "pat_env": "pat", "client_id_env": "client_id", "client_secret_env": "client_secret",
        "refresh_token_env": "refresh_token",
    },
}  # fmt: skip
# Secrets the webhook receiver reads through ``webhooks.<system>`` settings, which the system's own
# settings do not name: Acumatica's push notifications carry a header whose value only the receiver knows.
SANDBOX_WEBHOOK_SECRETS: dict[str, dict[str, str]] = {"acumatica": {"header_value_env": "push_header_value"}}


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
        receiver = getattr(config.webhooks, system, None)
        hooks = {env_field: key for env_field, key in SANDBOX_WEBHOOK_SECRETS.get(system, {}).items()
                 if hasattr(receiver, env_field)}
        names = [getattr(settings, env_field) for env_field in fields if hasattr(settings, env_field)]
        names += [getattr(receiver, env_field) for env_field in hooks]
        if all(name in env for name in names):
            # Inherited (the demo sets them before Dagster starts): every run worker would otherwise
            # import the simulator, ~0.2 s of CPU each, before it can start the run.
            continue
        try:
            module = importlib.import_module(f"ml_connector_dagster.sandbox.{system}")
        except ImportError:
            continue  # that simulator is not built in this checkout
        demo = module.sandbox_credentials(config.sandbox.seed)
        for env_field, key in fields.items():
            if hasattr(settings, env_field) and key in demo:
                env.setdefault(getattr(settings, env_field), demo[key])
        for env_field, key in hooks.items():
            if key in demo:
                env.setdefault(getattr(receiver, env_field), demo[key])


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


def jaggaer_contribution(config: ConnectorConfig) -> Contribution | None:
    """JAGGAER source assets (POs, invoices, vendors, GL accounts), their checks and poll sensors, the resource."""
    settings = config.systems.jaggaer
    if settings is None:
        return None
    from ml_connector_dagster.assets.jaggaer import jaggaer_asset_checks, jaggaer_source_assets
    from ml_connector_dagster.sensors.jaggaer import jaggaer_poll_sensors
    from ml_connector_dagster.systems.jaggaer.resource import JaggaerResource

    assets = jaggaer_source_assets(settings)
    sensors = jaggaer_poll_sensors(assets, settings, lookback=timedelta(days=config.sandbox.days),
                                   minimum_interval_seconds=config.poll_interval_s)
    return Contribution(assets=assets, asset_checks=jaggaer_asset_checks(), sensors=sensors,
                        resources={"jaggaer": JaggaerResource.from_settings(settings)})


def acumatica_contribution(config: ConnectorConfig) -> Contribution | None:
    """Acumatica source assets (bills, POs, payments), their checks and poll sensors, the resource."""
    settings = config.systems.acumatica
    if settings is None:
        return None
    from ml_connector_dagster.assets.acumatica import acumatica_asset_checks, acumatica_source_assets
    from ml_connector_dagster.sensors.acumatica import acumatica_poll_sensors
    from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource

    assets = acumatica_source_assets(settings)
    sensors = acumatica_poll_sensors(assets, settings, lookback=timedelta(days=config.sandbox.days),
                                     minimum_interval_seconds=config.poll_interval_s)
    return Contribution(assets=assets, asset_checks=acumatica_asset_checks(), sensors=sensors,
                        resources={"acumatica": AcumaticaResource.from_settings(settings)})


def monday_contribution(config: ConnectorConfig) -> Contribution | None:
    """The monday.com resource (its flows add the destination assets)."""
    settings = config.systems.monday
    if settings is None:
        return None
    from ml_connector_dagster.systems.monday.resource import MondayResource

    return Contribution(resources={"monday": MondayResource.from_settings(settings)})


def asana_contribution(config: ConnectorConfig) -> Contribution | None:
    """The Asana resource (PAT or OAuth); the flows writing to Asana bring their own assets."""
    settings = config.systems.asana
    if settings is None:
        return None
    from ml_connector_dagster.systems.asana.resource import AsanaResource

    return Contribution(resources={"asana": AsanaResource.from_settings(settings)})


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


def acumatica_jira_contribution(config: ConnectorConfig) -> Contribution | None:
    """Acumatica exceptions -> Jira issues; resolved issues -> Release/Approve: the issues asset,
    the release job and the resolution sensor."""
    flow, acumatica = config.flows.acumatica_jira, config.systems.acumatica
    if flow is None or not flow.enabled or acumatica is None or config.systems.jira is None:
        return None
    from ml_connector_dagster.flows.acumatica_jira import build_acumatica_jira

    polls = config.poll_interval_s if flow.resolution_poll_s is None else flow.resolution_poll_s
    parts = build_acumatica_jira(flow, acumatica, lookback=timedelta(days=config.sandbox.days),
                                 poll_interval_seconds=polls, wait_for_events_s=config.webhooks.inbox_wait_s)
    return Contribution(assets=parts.assets, asset_checks=parts.asset_checks, jobs=parts.jobs, sensors=parts.sensors)


def jaggaer_visma_contribution(config: ConnectorConfig) -> Contribution | None:
    """JAGGAER POs and invoices -> Visma AP: destination assets, vendor alignment, cXML confirmations, replay."""
    flow, jaggaer, visma = config.flows.jaggaer_visma, config.systems.jaggaer, config.systems.visma
    if flow is None or not flow.enabled or jaggaer is None or visma is None:
        return None
    from ml_connector_dagster.flows.jaggaer_visma import build_jaggaer_visma

    parts = build_jaggaer_visma(flow, jaggaer, visma)
    return Contribution(assets=parts.assets, asset_checks=parts.asset_checks, jobs=parts.jobs)


def visma_monday_contribution(config: ConnectorConfig) -> Contribution | None:
    """Visma documents and reference data -> monday items; receipts back: item assets, checks, receipts
    job and sensor, replay job, reference refresh schedule."""
    flow, visma = config.flows.visma_monday, config.systems.visma
    if flow is None or not flow.enabled or visma is None or config.systems.monday is None:
        return None
    from ml_connector_dagster.flows.visma_monday import build_visma_monday

    parts = build_visma_monday(flow, visma, lookback=timedelta(days=config.sandbox.days),
                               minimum_interval_seconds=config.poll_interval_s)
    return Contribution(assets=parts.assets, asset_checks=parts.asset_checks, jobs=parts.jobs, sensors=parts.sensors,
                        schedules=parts.schedules)


def visma_asana_contribution(config: ConnectorConfig) -> Contribution | None:
    """Visma POs and invoices -> Asana tasks; GL accounts and cost centres -> enum options; optionally task
    changes -> Visma notes: task and reference assets, checks, replay job, return job, sensor and schedule."""
    flow, visma, asana = config.flows.visma_asana, config.systems.visma, config.systems.asana
    if flow is None or not flow.enabled or visma is None or asana is None:
        return None
    from ml_connector_dagster.flows.visma_asana import build_visma_asana

    parts = build_visma_asana(flow, visma, workspace_gid=asana.workspace_gid, sandbox=asana.mode == "sandbox",
                              lookback=timedelta(days=config.sandbox.days), minimum_interval_seconds=config.poll_interval_s)
    return Contribution(assets=parts.assets, asset_checks=parts.asset_checks, jobs=parts.jobs, sensors=parts.sensors,
                        schedules=parts.schedules)


def alerts_contribution(config: ConnectorConfig) -> Contribution:
    """The run-failure sensor that alerts on every failed run of this code location."""
    from ml_connector_dagster.sensors.alerts import build_run_failure_alert_sensor, secret_env_names

    return Contribution(sensors=[build_run_failure_alert_sensor(config.alerts, secret_env_names(config))])


def ping_contribution(config: ConnectorConfig) -> Contribution | None:
    """The ``ping`` job: authenticate to every configured system and make one harmless read."""
    from ml_connector_dagster.ping import build_ping_job, configured_probes

    systems = configured_probes(config)
    return Contribution(jobs=[build_ping_job(config, systems)]) if systems else None


CONTRIBUTORS: list[Callable[[ConnectorConfig], Contribution | None]] = [
    core_contribution, visma_contribution, jaggaer_contribution, acumatica_contribution, jira_contribution,
    monday_contribution, asana_contribution, visma_jira_contribution, acumatica_jira_contribution,
    jaggaer_visma_contribution, visma_monday_contribution, visma_asana_contribution, alerts_contribution,
    ping_contribution,
]


def inbox_contribution(config: ConnectorConfig, assets: Sequence[Any]) -> Contribution | None:
    """The inbox sensor: webhook events become fetch-by-id runs of the source and its direct destinations."""
    from ml_connector_dagster.sensors.inbox import InboxRoute, build_inbox_sensor

    sources: dict[tuple[str, str], dg.AssetKey] = {}
    if config.systems.visma is not None:
        from ml_connector_dagster.sensors.visma import visma_inbox_sources

        sources.update(visma_inbox_sources())
    if config.systems.acumatica is not None:
        from ml_connector_dagster.sensors.acumatica import acumatica_inbox_sources

        sources.update(acumatica_inbox_sources())
    children: dict[dg.AssetKey, list[dg.AssetKey]] = {}
    for definition in assets:
        if isinstance(definition, dg.AssetsDefinition):
            for key, upstream in definition.asset_deps.items():
                for parent in upstream:
                    children.setdefault(parent, []).append(key)
    present = {key for definition in assets if isinstance(definition, dg.AssetsDefinition) for key in definition.keys}
    routes = {
        route: InboxRoute(assets=(source, *children.get(source, ())))
        for route, source in sources.items()
        if source in present
    }
    if not routes:
        return None
    # A webhook is the fast path: tick often (the inbox read is one indexed query), and watch in between.
    sensor = build_inbox_sensor(routes, minimum_interval_seconds=1, wait_for_events_s=config.webhooks.inbox_wait_s)
    return Contribution(sensors=[sensor])


def audit_contribution(config: ConnectorConfig, parts: Sequence[Contribution]) -> Contribution:
    """The daily partition audit of every flow (``reconcile_<flow>`` jobs and schedules): sensor runs leave it out."""
    from ml_connector_dagster.partition_audits import audit_schedules

    audits = audit_schedules([asset for part in parts for asset in part.assets],
                             [check for part in parts for check in part.asset_checks], at=config.audit_at_utc)
    return Contribution(jobs=audits.jobs, schedules=audits.schedules)


def build_definitions(config: ConnectorConfig) -> dg.Definitions:
    """The code location for ``config``: every contributor's definitions in one ``Definitions``."""
    use_sandbox_credentials(config)
    parts = [part for contribute in CONTRIBUTORS if (part := contribute(config)) is not None]
    # The inbox sensor routes each event to the assets that consume its source, so it comes last.
    inbox = inbox_contribution(config, [asset for part in parts for asset in part.assets])
    if inbox is not None:
        parts.append(inbox)
    parts.append(audit_contribution(config, parts))
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
        # Runs here are many and short (one partition, a few ops): a subprocess per step would cost
        # more than the work. Step retries and pools hold the same in-process.
        executor=dg.in_process_executor,
    )


defs = build_definitions(active_config())
