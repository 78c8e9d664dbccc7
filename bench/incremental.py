"""Incremental: a source of N records with k changed; the poll sensor's probe and the run.

For each polled source (Visma supplier invoices, Acumatica bills, JAGGAER invoices) and N = 10k,
100k, 1M, the source's simulator (its own process, latency and budget as configured) holds N
documents; the sensor's cursor stands where the last sync left it (the newest record). An hour
later on the simulator's clock, a user edits k = 100 of them. Measured, in this process, through
the product's own code: one tick of the source's poll sensor (its probe asks for what changed
since the watermark) and the run it requests, which reads and lands the window. Requests and time
must not grow with N.

The destination half of that run is left out on purpose: its plan reads the partition back from
the local landing store (no API calls), which a benchmark could only fill by backfilling N first.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg

from ml_connector_dagster.sensors.acumatica import acumatica_poll_sensors
from ml_connector_dagster.sensors.jaggaer import jaggaer_poll_sensors
from ml_connector_dagster.sensors.visma import visma_poll_sensors

from .limits import BenchLimits
from .results import Outcome, Target
from .sandbox import SimProcess, connector_home, pinned_start, sandbox_credentials, simulator_process
from .sources import ACUMATICA, JAGGAER, VISMA, Source, keyed, sandbox_config

__all__ = ["POLLED", "Polled", "incremental_outcome", "measure_incremental"]

CHANGED = 100
LATER_S = 3600.0
DAYS = 0.85


@dataclass(frozen=True)
class Polled:
    """A source the scenario polls: the asset its sensor feeds and the sensors' builder."""

    source: Source
    asset: str  # "acumatica/bills"
    title: str  # "Acumatica bills"
    probe: str  # what the sensor's probe asks, for the report
    sensors: Callable[..., list[dg.SensorDefinition]]  # (assets, settings, *, lookback, minimum_interval_seconds)


POLLED: dict[str, Polled] = {
    "visma": Polled(VISMA, "visma/supplier_invoices", "Visma supplier invoices",
                    "lastModifiedDateTime >= watermark", visma_poll_sensors),
    "acumatica": Polled(ACUMATICA, "acumatica/bills", "Acumatica bills",
                        "$filter=LastModifiedDateTime ge watermark, $select of the stamp only", acumatica_poll_sensors),
    "jaggaer": Polled(JAGGAER, "jaggaer/invoices", "JAGGAER invoices",
                      "lastModifiedFrom=watermark, sorted by it (keyset)", jaggaer_poll_sensors),
}


def _api_calls(sim: SimProcess, source: Source) -> int:
    """Requests the source's API served (sign-ins are not reads)."""
    return sum(count for endpoint, count in sim.counts()["calls"].items() if source.label_of(endpoint) is not None)


def measure_incremental(polled: Polled, records: int, limits: BenchLimits, changed: int = CHANGED) -> dict[str, Any]:
    """One tick and one run against a source of ``records``; calls and seconds of each."""
    from ml_connector_dagster.config import parse_config
    from ml_connector_dagster.resources import LedgerResource
    from ml_connector_dagster.sensors.poll import PollCursor

    source = polled.source
    start = pinned_start()
    settings = {**source.simulator_settings(records, limits), "days": DAYS, "start": start.isoformat(),
                "latency_ms": limits.latency_ms}
    with simulator_process(source.simulator, **settings) as sim, \
         tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as home, connector_home(home):  # fmt: skip
        config = parse_config(sandbox_config(limits, (source.configure, sim.url)))
        assets = keyed(source.assets(config), polled.asset)
        (sensor,) = polled.sensors(assets, getattr(config.systems, source.name), lookback=timedelta(days=1),
                                   minimum_interval_seconds=30)
        with sandbox_credentials(config):
            resources = {**source.resources(config), "ledger": LedgerResource(db_url=f"sqlite:///{home}/ledger.db")}
            sim.touch(changed, advance_s=LATER_S)
            sim.counts(reset=True)
            instance = dg.DagsterInstance.ephemeral()
            cursor = PollCursor(watermark=start).to_json()  # where the last sync left the sensor
            began = time.perf_counter()
            definitions = dg.Definitions(assets=assets, sensors=[sensor], resources=resources)
            with dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance,
                                         definitions=definitions) as context:
                result = sensor.evaluate_tick(context)
            probe_s = time.perf_counter() - began
            probe_calls = _api_calls(sim, source)
            (request,) = result.run_requests  # one partition changed
            sim.counts(reset=True)
            began = time.perf_counter()
            run = dg.materialize(assets, partition_key=request.partition_key, run_config=request.run_config,
                                 resources=resources, instance=instance)
            run_s = time.perf_counter() - began
            run_calls = _api_calls(sim, source)
        event = run.get_asset_materialization_events()[0]
        landed = event.step_materialization_data.materialization.metadata["inserted"].value
    return {"source": polled.source.name, "records": records, "probe_calls": probe_calls, "probe_s": probe_s,
            "run_calls": run_calls, "run_s": run_s, "landed": landed, "changes_found": changed}


def _targets(polled: Polled, runs: Sequence[dict[str, Any]]) -> tuple[list[Target], dict[str, float]]:
    small, large = runs[0], runs[-1]
    calls_growth = (large["probe_calls"] + large["run_calls"]) / max(1, small["probe_calls"] + small["run_calls"])
    time_growth = (large["probe_s"] + large["run_s"]) / (small["probe_s"] + small["run_s"])
    span = f"{large['records'] // small['records']:,}x the records"
    # Visma's targets keep their names of the first report (trends compare by name).
    prefix = "" if polled.source is VISMA else f"{polled.title}: "
    suffix = "" if polled.source is VISMA else f"_{polled.source.name}"
    targets = [
        Target(name=f"{prefix}requests at {large['records']:,} / at {small['records']:,}", value=round(calls_growth, 2),
               goal=f"1.0 ({span}: must not grow)", holds=calls_growth <= 1.0),
        Target(name=f"{prefix}time at {large['records']:,} / at {small['records']:,}", value=round(time_growth, 2),
               goal=f"~1 ({span}: must not grow; <= 1.5 allowed for noise)", holds=time_growth <= 1.5),
    ]
    return targets, {f"calls_growth{suffix}": calls_growth, f"time_growth{suffix}": time_growth}


def incremental_outcome(runs: Sequence[dict[str, Any]], *, rerun: str) -> Outcome:
    """Calls and time per source and size; the ratio largest/smallest of each (1.0 = does not grow with N)."""
    rows, targets, figures = [], [], {}
    for polled in POLLED.values():
        mine = [r for r in runs if r.get("source", "visma") == polled.source.name]
        if not mine:
            continue
        rows += [[polled.title, f"{r['records']:,}", str(r["probe_calls"]), f"{r['probe_s'] * 1000:.0f}",
                  str(r["run_calls"]), f"{r['run_s'] * 1000:.0f}", str(r["landed"])] for r in mine]
        more_targets, more_figures = _targets(polled, mine)
        targets += more_targets
        figures.update(more_figures)
    probes = "; ".join(f"{p.title}: {p.probe}" for p in POLLED.values())
    return Outcome(
        key="incremental", title=f"Incremental: k = {CHANGED} changed records in a source of N", rerun=rerun,
        headers=["source", "N (records in the source)", "probe calls", "probe ms", "run calls", "run ms",
                 "records landed"],
        rows=rows, targets=targets, figures=figures,
        notes=[f"probe: one tick of the source's poll sensor, pages of changes only ({probes}); run: the source "
               "asset reading the sensor's window (with its overlap) and landing it",
               "run time includes Dagster's in-process run overhead (most of it at these sizes)",
               "records landed: the edited documents the run stored as new versions (the user edits only "
               "documents the source does not quarantine)"],
    )
