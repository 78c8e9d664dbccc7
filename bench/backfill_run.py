"""One backfill of the product, in a process of its own: ``python -m bench.backfill_run '<json>'``.

The child materializes, through Dagster, a flow's source assets (:mod:`bench.sources`) and its
destination assets (:mod:`bench.destinations`) for one daily partition (read -> validate -> land
-> plan -> push), with the shipped sandbox connector.yaml pointed at the served simulators, a
fresh SQLite ledger and the connector budgets of :class:`bench.limits.BenchLimits`; reference data
a flow's plan reads (JAGGAER's vendors, Visma's suppliers) is landed first, outside the timing. It
prints one JSON line: the outcome (records, creates, failures), the wall time of each step, the CPU
time and the peak RSS of the process (``resource.getrusage``), which is why it runs alone: the peak
is this run's, nothing else's.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .sandbox import cpu_seconds, served_counts


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _connector_yaml(settings: dict[str, Any], source: Any, destination: Any, limits: Any) -> dict[str, Any]:
    from .sources import sandbox_config

    return sandbox_config(limits, (source.configure, settings["source_url"]),
                          (destination.configure, settings["destination_url"]))


def _step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    import dagster as dg

    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            seconds[event.step_key] = round(entry.timestamp - started.get(event.step_key, entry.timestamp), 3)
    return seconds


def _materialized(result: Any) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        figures[event.asset_key.to_user_string()] = {
            key: value.value for key, value in metadata.items() if isinstance(value.value, int | float | bool)
        }
    return figures


def _workflow_moves(config: Any, destination: Any, partition: str) -> tuple[int, int]:
    """The fewest workflow transitions the created records need (from the landed records' statuses):
    all of them, and those beyond the first hop (which a create can carry)."""
    from ml_connector_dagster.core.landing import LandingStore
    from ml_connector_dagster.core.ledger import Ledger

    hops = destination.hops_by_status(config)
    if not hops:
        return 0, 0
    moves = later = 0
    with Ledger.open() as ledger:
        for chunk in LandingStore(ledger).iter_partition("visma", "supplierInvoice", partition):
            linked = ledger.links_for(destination.flow, [record.record_id for record in chunk])
            for record in chunk:
                if getattr(linked.get(record.record_id), "state", None) == "linked":
                    needed = hops.get(record.payload.get("status"), 0)
                    moves += needed
                    later += max(0, needed - 1)
    return moves, later


def _failures(destination: Any, source: Any, records: int) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """The destination's open dead letters by reason (its first clause: ids and names vary): those the
    source's data did not plant, those it planted for the flow to refuse, and a few of the first in full."""
    from ml_connector_dagster.core.ledger import Ledger

    planted = source.refused_by_design(records) if source.refused_by_design else (lambda record: False)
    failed: dict[str, int] = {}
    refused: dict[str, int] = {}
    examples: list[str] = []
    with Ledger.open() as ledger:
        for asset in destination.assets:
            for letter in ledger.open_dead_letters(asset):
                reason = str(letter.error).split(":", 1)[0][:80]
                counted = refused if planted(letter.record) else failed
                counted[reason] = counted.get(reason, 0) + 1
                if counted is failed and len(examples) < 3:
                    examples.append(f"{letter.source_id}: {str(letter.error)[:300]}")
    return failed, refused, examples


class _CollectorClock:
    """Time the garbage collector spends in this process (gc.callbacks), by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(settings: dict[str, Any]) -> dict[str, Any]:
    """Materialize the partition once; the figures the scenarios need."""
    import dagster as dg

    from ml_connector_dagster.config import parse_config
    from ml_connector_dagster.definitions import use_sandbox_credentials
    from ml_connector_dagster.resources import LedgerResource

    from .destinations import DESTINATIONS
    from .limits import BenchLimits
    from .sources import SOURCES

    limits = BenchLimits.model_validate(settings["limits"])
    destination = DESTINATIONS[settings["destination"]]
    source = SOURCES[destination.source]
    config = parse_config(_connector_yaml(settings, source, destination, limits))
    use_sandbox_credentials(config)
    source_only = bool(settings.get("source_only"))
    resources: dict[str, Any] = {**source.resources(config), "ledger": LedgerResource.from_env()}
    if not source_only:
        resources = {**destination.resources(config), **resources}
    instance = dg.DagsterInstance.ephemeral()
    references = [] if source_only else list(destination.references(config))
    if references:
        landed = dg.materialize(references, resources=resources, instance=instance, raise_on_error=False)
        if not landed.success:
            raise RuntimeError("the reference data could not be landed before the backfill")
        # The reference data's calls are not the backfill's.
        for url in (settings["source_url"], settings["destination_url"]):
            served_counts(url, reset=True)
    simulators_cpu = {name: cpu_seconds(pid) for name, pid in settings.get("simulator_pids", {}).items()}
    assets = [*source.assets(config), *([] if source_only else destination.invoice_assets(config))]
    rss_before = _rss_mb()
    cpu_before = _cpu_s()
    collector = _CollectorClock()
    gc.callbacks.append(collector)
    started = time.perf_counter()
    result = dg.materialize(assets, partition_key=settings["partition"], resources=resources, instance=instance,
                            raise_on_error=False)
    seconds = time.perf_counter() - started
    gc.callbacks.remove(collector)
    cpu = _cpu_s() - cpu_before
    figures = _materialized(result)
    moves, later = (0, 0) if source_only else _workflow_moves(config, destination, settings["partition"])
    failures, refused, examples = ({}, {}, []) if source_only else _failures(destination, source,
                                                                             settings["records"])
    return {
        "success": result.success,
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "steps": _step_seconds(instance, result.run_id),
        "assets": figures,
        "source": source.name,
        "workflow_moves": moves,
        "failures": failures,
        "refused_by_design": refused,
        "failure_examples": examples,
        "later_moves": later,
        "simulator_cpu_at_start": simulators_cpu,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "gc_s": [round(x, 3) for x in collector.seconds],
        "gc_collections": collector.collections,
    }


def main() -> None:
    settings = json.loads(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="ml-connector-bench-") as home:
        os.environ["ML_CONNECTOR_HOME"] = home
        os.environ["DAGSTER_HOME"] = home
        os.environ["ML_CONNECTOR_DB_URL"] = f"sqlite:///{Path(home) / 'ledger.db'}"
        os.environ.pop("ML_CONNECTOR_SECRET_KEY", None)
        print(json.dumps(run(settings)), flush=True)


if __name__ == "__main__":
    main()
