"""Look-ups: new Visma invoices synced into an Asana project that already holds N tasks.

Before it creates a task the flow asks Asana whether the record is there already (a create whose
answer was lost, a ledger restored from nothing). Asana has no exact look-up by key, so the answer
is the project's tasks: listed whole, that is N / 100 requests in every run that meets a new record,
a webhook's run for one invoice included. The flow keeps an index of the project in the ledger
(``core/destination_index.py``) and brings it up to date with one listing of the tasks changed since.

For N = 1k, 10k, 100k tasks left by earlier syncs (the simulator's ``history_tasks``), in this
process and through Dagster: a first run syncs one day's invoices into the project (its look-ups
list the project whole: the index is built), then the run measured syncs the next day's new
invoices, and the partition's ``reconciled`` audit runs (as the daily audit and a backfill run it).
The Asana requests of that run and that audit, by endpoint, must not grow with N.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import dagster as dg

from ml_connector_dagster.systems.asana.client import PAGE_SIZE

from .destinations import _asana_configure, _asana_label, _asana_resources
from .limits import BenchLimits
from .results import Outcome, Target, timed
from .sandbox import connector_home, pinned_start, sandbox_credentials, simulator_process
from .sources import VISMA, configure_visma, keyed, sandbox_config, visma_settings

__all__ = ["NEW_INVOICES", "lookups_outcome", "measure_lookups"]

NEW_INVOICES = 100  # of each day (two days: the first run's, then the measured run's)
TASKS = "asana/visma_invoice_tasks"


def _asana_calls(counts: dict[str, Any]) -> dict[str, int]:
    return {label: n for endpoint, n in counts["calls"].items() if (label := _asana_label(endpoint))}


def _listing_pages(calls: dict[str, int]) -> int:
    return sum(n for label, n in calls.items() if label.endswith("/projects/{id}/tasks"))


def _audit(resources: dict[str, Any], settings: Any, partition: str) -> Any:
    """The partition's ``reconciled`` audit, as the check runs it (the product's own functions)."""
    from ml_connector_dagster.flows.visma_asana import reconcile
    from ml_connector_dagster.flows.visma_asana_render import INVOICES, kept_context

    asana, ledger = resources["asana"].process_config_and_initialize(), resources["ledger"]
    with asana.client() as client, ledger.open() as opened:
        context = kept_context(client, settings, asana.workspace_gid, ledger=opened, site=asana.base_url)
        return reconcile(INVOICES, [partition], client=client, context=context, ledger=opened)


def measure_lookups(history: int, limits: BenchLimits, new: int = NEW_INVOICES) -> dict[str, Any]:
    """The measured run's Asana requests and seconds against a project of ``history`` earlier tasks."""
    from ml_connector_dagster.config import parse_config
    from ml_connector_dagster.flows.visma_asana import build_visma_asana
    from ml_connector_dagster.resources import LedgerResource

    end = pinned_start()  # yesterday 22:00 UTC: the simulator's invoices fall in the two days before it
    first_day, measured_day = (end - timedelta(days=1)).date().isoformat(), end.date().isoformat()
    visma = {**visma_settings(2 * new, limits), "days": 1.9, "start": end.isoformat(), "latency_ms": limits.latency_ms}
    asana = {"premium": True, "history_tasks": history, "latency_ms": limits.latency_ms}
    with simulator_process("visma", **visma) as visma_sim, simulator_process("asana", **asana) as asana_sim, \
         tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as home, connector_home(home):  # fmt: skip
        config = parse_config(sandbox_config(limits, (configure_visma, visma_sim.url), (_asana_configure, asana_sim.url)))
        assert config.flows.visma_asana is not None and config.systems.visma is not None
        assert config.systems.asana is not None
        parts = build_visma_asana(config.flows.visma_asana, config.systems.visma,
                                  workspace_gid=config.systems.asana.workspace_gid, sandbox=True)
        assets = [*VISMA.assets(config), *keyed(parts.assets, TASKS)]
        with sandbox_credentials(config):
            resources = {**VISMA.resources(config), **_asana_resources(config),
                         "ledger": LedgerResource(db_url=f"sqlite:///{home}/ledger.db")}
            instance = dg.DagsterInstance.ephemeral()
            asana_sim.counts(reset=True)
            first, first_s = timed(lambda: dg.materialize(assets, partition_key=first_day, resources=resources,
                                                          instance=instance))
            first_calls = _asana_calls(asana_sim.counts(reset=True))
            run, run_s = timed(lambda: dg.materialize(assets, partition_key=measured_day, resources=resources,
                                                      instance=instance))
            calls = _asana_calls(asana_sim.counts(reset=True))
            audit, audit_s = timed(lambda: _audit(resources, config.flows.visma_asana, measured_day))
            audit_calls = _asana_calls(asana_sim.counts())
    created = {event.partition: event.step_materialization_data.materialization.metadata["created"].value
               for result in (first, run) for event in result.get_asset_materialization_events()
               if event.asset_key.to_user_string() == TASKS}
    return {"history": history, "first_calls": first_calls, "first_s": first_s, "calls": calls, "run_s": run_s,
            "created_first": created.get(first_day, 0), "created": created.get(measured_day, 0),
            "audit_calls": audit_calls, "audit_s": audit_s, "audit_passed": audit.passed}


def _total(run: dict[str, Any]) -> int:
    return sum(run["calls"].values()) + sum(run["audit_calls"].values())


def lookups_outcome(runs: Sequence[dict[str, Any]], *, rerun: str) -> Outcome:
    """Requests and time of the measured run and its audit at each N; the ratios largest/smallest (1.0: flat)."""
    small, large = runs[0], runs[-1]
    span = f"{large['history'] // max(1, small['history']):,}x the tasks"
    calls_growth = _total(large) / max(1, _total(small))
    time_growth = (large["run_s"] + large["audit_s"]) / (small["run_s"] + small["audit_s"])

    def by_endpoint(calls: dict[str, int]) -> str:
        return ", ".join(f"{label.removeprefix('asana ')} {n}" for label, n in sorted(calls.items())) or "none"

    rows = [[f"{r['history']:,}", f"{r['created_first']} / {_listing_pages(r['first_calls'])} / {r['first_s']:.1f}",
             str(r["created"]), by_endpoint(r["calls"]), f"{r['run_s']:.1f}", by_endpoint(r["audit_calls"]),
             f"{r['audit_s']:.1f}", "yes" if r["audit_passed"] else "**no**",
             str(math.ceil((r["history"] + r["created_first"]) / PAGE_SIZE))] for r in runs]
    listed = sum(_listing_pages(r["calls"]) + _listing_pages(r["audit_calls"]) for r in runs)
    targets = [
        Target(name=f"Asana look-ups: requests at {large['history']:,} tasks / at {small['history']:,}",
               value=round(calls_growth, 2), goal=f"1.0 ({span}: must not grow)", holds=calls_growth <= 1.0),
        Target(name=f"Asana look-ups: time at {large['history']:,} tasks / at {small['history']:,}",
               value=round(time_growth, 2), goal=f"~1 ({span}: must not grow; <= 1.5 allowed for noise)",
               holds=time_growth <= 1.5),
        Target(name="Asana look-ups: pages of the whole project listed by the measured runs and audits",
               value=listed, goal="0", holds=listed == 0),
    ]
    return Outcome(
        key="lookups", title=f"Look-ups: {NEW_INVOICES} new invoices into an Asana project of N tasks", rerun=rerun,
        headers=["N (tasks in the project)", "first run: created / listing pages / s", "measured run: created",
                 "its Asana requests", "s", "audit's Asana requests", "s", "audit passed",
                 "one whole listing (pages)"],
        rows=rows, targets=targets,
        figures={"calls_growth": calls_growth, "time_growth": time_growth},
        notes=["first run (not measured): a day of new invoices into the project on a fresh ledger; its look-ups list "
               "the project whole, which builds the project's index in the ledger",
               "measured run: the next day's new invoices (source, plan, push) as a poll or webhook run carries them: "
               "the look-ups bring the index up to date with one GET /tasks?modified_since= listing of what changed "
               "(the two days' new tasks, within its two-minute overlap); then the partition's reconciled audit (as "
               "the daily audit runs it), which reads back only tasks that listing did not show (none here)",
               "requests: every request the simulator served (the workspace's context is kept in the ledger from the "
               "first run); a batch counts once here, though Asana's budget counts its actions too",
               "the last column is what each look-up cost before the index: the project listed whole, 100 tasks a "
               "page, in every run that met a new record (and in every audit)"],
    )
