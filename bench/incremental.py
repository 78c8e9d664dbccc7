"""Incremental: a Visma source of N records with k changed; the poll sensor's probe and the run.

For N = 10k, 100k, 1M the Visma simulator (its own process, latency and budget as configured)
holds N supplier invoices; the sensor's cursor stands where the last sync left it (the newest
record). An hour later on the simulator's clock, a user edits k = 100 invoices. Measured, in this
process, through the product's own code: one tick of the ``visma_supplier_invoices_poll`` sensor
(its probe asks for ``lastModifiedDateTime >= watermark``) and the run it requests, which reads
and lands the window. Requests and time must not grow with N.

The destination half of that run is left out on purpose: its plan reads the partition back from
the local landing store (no API calls), which a benchmark could only fill by backfilling N first.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from .limits import BenchLimits
from .results import Outcome, Target
from .sandbox import SimProcess, connector_home, pinned_start, simulator_process

__all__ = ["incremental_outcome", "measure_incremental"]

CHANGED = 100
LATER_S = 3600.0
DAYS = 0.85


def _visma_resource(visma: SimProcess, limits: BenchLimits) -> Any:
    from ml_connector_dagster.systems.visma.resource import VismaResource

    credentials = visma.credentials
    return VismaResource(base_url=visma.url, token_url=f"{visma.url}/connect/token", page_size=limits.visma_page_size,
                         rate_per_s=limits.visma_client_rate_per_s, burst=int(limits.visma_client_rate_per_s),
                         client_id=credentials["client_id"], client_secret=credentials["client_secret"],
                         tenant_id=credentials["tenant_id"])


def _api_calls(visma: SimProcess) -> int:
    return sum(count for endpoint, count in visma.counts()["calls"].items() if not endpoint.endswith("/connect/token"))


def measure_incremental(records: int, limits: BenchLimits, changed: int = CHANGED) -> dict[str, Any]:
    """One tick and one run against a source of ``records``; calls and seconds of each."""
    import dagster as dg

    from ml_connector_dagster.assets.visma import VISMA_SOURCES, visma_source_assets
    from ml_connector_dagster.config import VismaSettings
    from ml_connector_dagster.resources import LedgerResource
    from ml_connector_dagster.sensors.poll import PollCursor
    from ml_connector_dagster.sensors.visma import visma_poll_sensor

    start = pinned_start()
    with simulator_process("visma", size=records, days=DAYS, start=start.isoformat(),
                           rate_limit_per_hour=limits.visma_rate_limit_per_hour,
                           latency_ms=limits.latency_ms) as visma, \
         tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as home, connector_home(home):  # fmt: skip
        settings = VismaSettings(base_url=visma.url, token_url=f"{visma.url}/connect/token",
                                 page_size=limits.visma_page_size, partitions_start=start.date() - timedelta(days=30))
        source = next(a for a in visma_source_assets(settings) if a.key.path[-1] == "supplier_invoices")
        spec = next(s for s in VISMA_SOURCES if s.name == "supplier_invoices")
        sensor = visma_poll_sensor(spec, source, settings, lookback=timedelta(days=1), minimum_interval_seconds=30)
        resources = {"visma": _visma_resource(visma, limits),
                     "ledger": LedgerResource(db_url=f"sqlite:///{Path(home) / 'ledger.db'}")}
        visma.touch(changed, advance_s=LATER_S)
        visma.counts(reset=True)
        instance = dg.DagsterInstance.ephemeral()
        cursor = PollCursor(watermark=start).to_json()  # where the last sync left the sensor
        began = time.perf_counter()
        definitions = dg.Definitions(assets=[source], sensors=[sensor], resources=resources)
        with dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance,
                                     definitions=definitions) as context:
            result = sensor.evaluate_tick(context)
        probe_s = time.perf_counter() - began
        probe_calls = _api_calls(visma)
        (request,) = result.run_requests  # one partition changed
        visma.counts(reset=True)
        began = time.perf_counter()
        run = dg.materialize([source], partition_key=request.partition_key, run_config=request.run_config,
                             resources=resources, instance=instance)
        run_s = time.perf_counter() - began
        run_calls = _api_calls(visma)
        event = run.get_asset_materialization_events()[0]
        landed = event.step_materialization_data.materialization.metadata["inserted"].value
    return {"records": records, "probe_calls": probe_calls, "probe_s": probe_s, "run_calls": run_calls,
            "run_s": run_s, "landed": landed, "changes_found": changed}


def incremental_outcome(runs: list[dict[str, Any]], *, rerun: str) -> Outcome:
    """Calls and time per size; the ratio largest/smallest (1.0 = does not grow with N)."""
    rows = [[f"{r['records']:,}", str(r["probe_calls"]), f"{r['probe_s'] * 1000:.0f}", str(r["run_calls"]),
             f"{r['run_s'] * 1000:.0f}", str(r["landed"])] for r in runs]
    small, large = runs[0], runs[-1]
    calls_growth = (large["probe_calls"] + large["run_calls"]) / max(1, small["probe_calls"] + small["run_calls"])
    time_growth = (large["probe_s"] + large["run_s"]) / (small["probe_s"] + small["run_s"])
    span = f"{large['records'] // small['records']:,}x the records"
    return Outcome(
        key="incremental", title=f"Incremental: k = {CHANGED} changed records in a source of N", rerun=rerun,
        headers=["N (records in Visma)", "probe calls", "probe ms", "run calls", "run ms", "records landed"],
        rows=rows,
        targets=[
            Target(name=f"requests at {large['records']:,} / at {small['records']:,}", value=round(calls_growth, 2),
                   goal=f"1.0 ({span}: must not grow)", holds=calls_growth <= 1.0),
            Target(name=f"time at {large['records']:,} / at {small['records']:,}", value=round(time_growth, 2),
                   goal=f"~1 ({span}: must not grow; <= 1.5 allowed for noise)", holds=time_growth <= 1.5),
        ],
        notes=["probe: one tick of the poll sensor (lastModifiedDateTime >= watermark, pages of "
               "changes only); run: the source asset reading the sensor's window (with its overlap) and landing it",
               "run time includes Dagster's in-process run overhead (about a second)"],
        figures={"calls_growth": calls_growth, "time_growth": time_growth},
    )
