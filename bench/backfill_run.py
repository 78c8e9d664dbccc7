"""One backfill of the product, in a process of its own: ``python -m bench.backfill_run '<json>'``.

The child materializes, through Dagster, the Visma ``supplier_invoices`` source and the
destination's (Jira, Asana or monday.com) invoice asset for one daily partition (read -> validate
-> land -> plan -> push),
with the shipped sandbox connector.yaml pointed at the served simulators, a fresh SQLite ledger
and the connector budgets of :class:`bench.limits.BenchLimits`. It prints one JSON line: the
outcome (records, creates, failures), the wall time of each step, the CPU time and the peak RSS of the process
(``resource.getrusage``), which is why it runs alone: the peak is this run's, nothing else's.
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

import yaml


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _connector_yaml(visma_url: str, destination: Any, destination_url: str, limits: Any) -> dict[str, Any]:
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH

    config = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())
    visma = config["systems"]["visma"]
    visma.update(base_url=visma_url, token_url=f"{visma_url}/connect/token", page_size=limits.visma_page_size,
                 rate_per_s=limits.visma_client_rate_per_s, burst=int(limits.visma_client_rate_per_s),
                 timeout_s=limits.client_timeout_s)
    destination.configure(config, destination_url, limits)
    return config


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

    from ml_connector_dagster.assets.visma import visma_source_assets
    from ml_connector_dagster.config import parse_config
    from ml_connector_dagster.definitions import use_sandbox_credentials
    from ml_connector_dagster.resources import LedgerResource
    from ml_connector_dagster.systems.visma.resource import VismaResource

    from .destinations import DESTINATIONS
    from .limits import BenchLimits

    limits = BenchLimits.model_validate(settings["limits"])
    destination = DESTINATIONS[settings["destination"]]
    config = parse_config(_connector_yaml(settings["visma_url"], destination, settings["destination_url"], limits))
    use_sandbox_credentials(config)
    assert config.systems.visma is not None
    source = next(a for a in visma_source_assets(config.systems.visma) if a.key.path[-1] == "supplier_invoices")
    resources: dict[str, Any] = {"visma": VismaResource.from_settings(config.systems.visma),
                                 "ledger": LedgerResource.from_env()}
    if not settings.get("source_only"):
        resources |= destination.resources(config)
    assets = [source, *destination.invoice_assets(config)] if not settings.get("source_only") else [source]
    instance = dg.DagsterInstance.ephemeral()
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
    moves, later = (0, 0) if settings.get("source_only") else _workflow_moves(config, destination,
                                                                              settings["partition"])
    return {
        "success": result.success,
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "steps": _step_seconds(instance, result.run_id),
        "assets": figures,
        "workflow_moves": moves,
        "later_moves": later,
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
