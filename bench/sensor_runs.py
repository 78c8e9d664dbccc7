"""Sensor runs: a poll run of k changed invoices into a day whose N invoices are already in Jira.

A poll sensor's run carries the source's window and the destinations it feeds, with the checks the
sensor asks for. It used to carry the partition audit (``reconciled``) too, which reads every
record of the day back from the destination: Jira searched 40 issues at a time, so a poll run of
10 changes into a day of 10,000 invoices made 250 searches, every poll interval. Sensor runs now
carry their records' checks only; the daily audit (``reconcile_<flow>``) reads the day back once.

For N = 1k and 10k: the Visma simulator holds N supplier invoices of one day; a first run (not
measured) syncs them into Jira, as that day's earlier runs did; later that day a user edits k of
them. Measured, in this process, through the product's own code: one tick of the poll sensor (its
cursor where the first run left it) and the run it requests, executed as requested (its assets,
its checks, its run config). That run's Jira requests must not grow with N. The partition audit is
then run alone (the product's ``reconcile_partitions``): what each poll run paid before, and what
the daily audit pays once a day.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import dagster as dg

from .destinations import JIRA
from .limits import BenchLimits
from .results import Outcome, Target, timed
from .sandbox import connector_home, pinned_start, sandbox_credentials, simulator_process
from .sources import VISMA, sandbox_config

__all__ = ["CHANGED", "measure_sensor_run", "sensor_runs_outcome"]

CHANGED = 10
LATER_S = 600.0  # the edits, on the simulator's clock: the same day (pinned_start is 22:00 UTC)
DAYS = 0.85  # every generated invoice in that one day


def _jira_calls(counts: dict[str, Any]) -> dict[str, int]:
    return {label: n for endpoint, n in counts["calls"].items() if (label := JIRA.label_of(endpoint))}


def _audit(resources: dict[str, Any], settings: Any, partition: str) -> Any:
    """The partition's ``reconciled`` audit of the invoice issues, as the check runs it."""
    from ml_connector_dagster.flows.visma_jira import INVOICES, reconcile_partitions

    jira, ledger = resources["jira"].process_config_and_initialize(), resources["ledger"]
    with jira.client() as client, ledger.open() as opened:
        return reconcile_partitions(INVOICES, [partition], client=client, ledger=opened, settings=settings)


def measure_sensor_run(records: int, limits: BenchLimits, changed: int = CHANGED) -> dict[str, Any]:
    """The poll run's (and, apart, the partition audit's) Jira requests and seconds at ``records`` in the day."""
    from ml_connector_dagster.config import parse_config
    from ml_connector_dagster.flows.visma_jira import build_visma_jira
    from ml_connector_dagster.resources import LedgerResource
    from ml_connector_dagster.sensors.poll import PollCursor
    from ml_connector_dagster.sensors.visma import visma_poll_sensors

    start = pinned_start()
    visma = {**VISMA.simulator_settings(records, limits), "days": DAYS, "start": start.isoformat(),
             "latency_ms": limits.latency_ms}
    jira = {**JIRA.simulator_settings(records, limits), "days": DAYS, "start": start.isoformat(),
            "latency_ms": limits.latency_ms}
    with simulator_process("visma", **visma) as visma_sim, simulator_process("jira", **jira) as jira_sim, \
         tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as home, connector_home(home):  # fmt: skip
        config = parse_config(sandbox_config(limits, (VISMA.configure, visma_sim.url), (JIRA.configure, jira_sim.url)))
        assert config.flows.visma_jira is not None and config.systems.visma is not None
        sources = VISMA.assets(config)
        parts = build_visma_jira(config.flows.visma_jira, config.systems.visma)
        issues = JIRA.invoice_assets(config)
        checks = [check for check in parts.asset_checks
                  if {key.asset_key for key in check.check_keys} & {key for asset in issues for key in asset.keys}]
        (sensor,) = visma_poll_sensors(sources, config.systems.visma, lookback=timedelta(days=1),
                                       minimum_interval_seconds=30)
        with sandbox_credentials(config):
            resources = {**VISMA.resources(config), **JIRA.resources(config),
                         "ledger": LedgerResource(db_url=f"sqlite:///{home}/ledger.db")}
            instance = dg.DagsterInstance.ephemeral()
            partition = start.date().isoformat()
            first = dg.materialize([*sources, *issues], partition_key=partition, resources=resources,
                                   instance=instance)  # the day's earlier runs: every invoice in Jira
            visma_sim.touch(changed, advance_s=LATER_S)
            jira_sim.counts(reset=True)

            def poll_run() -> dg.ExecuteInProcessResult:
                """One tick of the sensor, and the run it requests executed as requested."""
                definitions = dg.Definitions(assets=[*sources, *issues], asset_checks=checks, sensors=[sensor],
                                             resources=resources)
                cursor = PollCursor(watermark=start).to_json()  # where the first run left the sensor
                with dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance,
                                             definitions=definitions) as context:
                    (request,) = sensor.evaluate_tick(context).run_requests  # one day changed
                selection = (dg.AssetSelection.assets(*request.asset_selection).without_checks()
                             | dg.AssetSelection.checks(*(request.asset_check_keys or [])))
                return dg.materialize([*sources, *issues, *checks], selection=selection,
                                      partition_key=request.partition_key, run_config=request.run_config,
                                      resources=resources, instance=instance)

            run, run_s = timed(poll_run)
            calls = _jira_calls(jira_sim.counts(reset=True))
            audit, audit_s = timed(lambda: _audit(resources, config.flows.visma_jira, partition))
            audit_calls = _jira_calls(jira_sim.counts())
    created = sum(event.step_materialization_data.materialization.metadata["created"].value
                  for event in first.get_asset_materialization_events() if event.asset_key in issues[0].keys)
    updated = sum(event.step_materialization_data.materialization.metadata["updated"].value
                  for event in run.get_asset_materialization_events() if event.asset_key in issues[0].keys)
    return {"records": records, "created_first": created, "updated": updated, "success": run.success,
            "checks": sorted(e.check_name for e in run.get_asset_check_evaluations()), "calls": calls, "run_s": run_s,
            "audit_calls": audit_calls, "audit_s": audit_s, "audit_passed": audit.passed}


def sensor_runs_outcome(runs: Sequence[dict[str, Any]], *, rerun: str) -> Outcome:
    """The poll run's Jira requests at each N, flat; the partition audit's beside them, growing."""
    small, large = runs[0], runs[-1]
    span = f"{large['records'] // max(1, small['records']):,}x the invoices in the day"
    growth = sum(large["calls"].values()) / max(1, sum(small["calls"].values()))

    def by_endpoint(calls: dict[str, int]) -> str:
        return ", ".join(f"{label.removeprefix('jira ')} {n}" for label, n in sorted(calls.items())) or "none"

    rows = [[f"{r['records']:,}", f"{r['created_first']:,}", f"{r['updated']} / {'yes' if r['success'] else '**no**'}",
             ", ".join(r["checks"]) or "none", by_endpoint(r["calls"]), f"{r['run_s']:.1f}",
             by_endpoint(r["audit_calls"]), f"{r['audit_s']:.1f}", "yes" if r["audit_passed"] else "**no**"]
            for r in runs]  # fmt: skip
    failed = sum(0 if r["success"] and r["audit_passed"] else 1 for r in runs)
    return Outcome(
        key="sensor_runs", title=f"Sensor runs: a poll run of k = {CHANGED} changed invoices into a day of N in Jira",
        rerun=rerun,
        headers=["N (invoices of the day, in Jira)", "issues made by the day's earlier runs", "poll run: updated / ok",
                 "checks it carried", "its Jira requests", "s", "partition audit alone: Jira requests", "s",
                 "audit passed"],
        rows=rows,
        targets=[
            Target(name=f"poll run: Jira requests at {large['records']:,} invoices in the day / at {small['records']:,}",
                   value=round(growth, 2), goal=f"1.0 ({span}: must not grow)", holds=growth <= 1.0),
            Target(name="poll runs failed or audits not passed", value=failed, goal="0", holds=failed == 0),
        ],
        figures={"calls_growth": growth},
        notes=["earlier runs (not measured): the day's invoices read, planned and created in Jira on a fresh ledger",
               f"poll run: {CHANGED} invoices edited {LATER_S / 60:.0f} minutes later on the simulator's clock, the "
               "same day; one tick of the supplier-invoice poll sensor (cursor where the earlier runs left it), and "
               "the run it requests executed as requested: the source reading the window, the invoice issues planned "
               "and pushed (a search for the changed records, their updates and comments), and the checks the "
               "request names; its plan still reads the day's landed invoices back from the ledger (local: no "
               "request, but CPU that grows with N)",
               "partition audit alone: the reconciled check's read of the whole day (Jira searched 40 issues at a "
               "time); poll runs carried it until sensor runs left it to the daily audit (reconcile_visma_jira, "
               "once a day for the day that ended) and to backfills",
               "requests: every request the Jira simulator served, sign-ins aside"],
    )
