"""Peer: the Visma source against a dlt ``rest_api`` pipeline, same simulator, same run.

One Visma simulator process (latency and budget as configured) serves N supplier invoices. Both
readers page ``/v1/supplierInvoice`` with pageNumber/pageSize (1000) and OAuth client credentials
(``tenant_id`` in the token form), in turns, against the same endpoint:

- pipeline: the product's ``visma/supplier_invoices`` asset (read, validate, land in SQLite),
  materialized through Dagster, against ``dlt.pipeline(...).run(rest_api_source(...))`` into a
  local filesystem destination (extract, normalize, load as JSONL);
- fetch only: the product's :meth:`VismaClient.iter_pages` against iterating the dlt resource.

The ratio is the product's records/s over dlt's (target >= 1.5 for the pipelines).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .limits import BenchLimits
from .results import Outcome, Target
from .sandbox import SimProcess, connector_home, pinned_start, simulator_process

__all__ = ["dlt_fetch", "dlt_pipeline", "dlt_rest_source", "materialized_reads", "measure_peer", "peer_outcome", "timed"]

DAYS = 0.85


def _dlt_source(visma: SimProcess, limits: BenchLimits) -> Any:
    from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials

    credentials = visma.credentials
    auth = OAuth2ClientCredentials(
        access_token_url=f"{visma.url}/connect/token", client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        access_token_request_data={"tenant_id": credentials["tenant_id"], "scope": credentials["scope"]},
    )  # fmt: skip
    return dlt_rest_source(f"{visma.url}/", auth, "supplier_invoices", "v1/supplierInvoice",
                           {"pageSize": limits.visma_page_size},
                           {"type": "page_number", "page_param": "pageNumber", "base_page": 1, "total_path": None,
                            "stop_after_empty_page": True})


def dlt_rest_source(base_url: str, auth: Any, resource: str, path: str, params: dict[str, Any],
                    paginator: dict[str, Any], *, data_selector: str = "$") -> Any:
    """A dlt ``rest_api`` source of one resource: the records of a page at ``data_selector`` (the whole
    answer: a JSON list), ``paginator`` walking the pages."""
    from dlt.sources.rest_api import rest_api_source

    return rest_api_source({
        "client": {"base_url": base_url, "auth": auth},
        "resources": [{"name": resource,
                       "endpoint": {"path": path, "params": params, "data_selector": data_selector,
                                    "paginator": paginator}}],
    })  # fmt: skip


def dlt_fetch(source: Any, resource: str) -> int:
    """Records of one resource of a dlt source, iterated in memory."""
    return sum(1 for _ in source.resources[resource])


def dlt_pipeline(source: Any, resource: str, system: str, workdir: Path) -> int:
    """Records of ``resource`` a dlt pipeline extracted, normalized and loaded (JSONL files under ``workdir``)."""
    import dlt

    pipeline = dlt.pipeline(pipeline_name=f"{system}_peer", pipelines_dir=str(workdir / "pipelines"),
                            destination=dlt.destinations.filesystem(bucket_url=(workdir / "lake").as_uri()),
                            dataset_name=system)
    info = pipeline.run(source, loader_file_format="jsonl")
    counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
    assert info is not None
    return int(counts.get(resource, 0))


def _product_fetch(visma: SimProcess, limits: BenchLimits) -> int:
    from ml_connector_dagster.core.http import RateLimiter
    from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity

    credentials = visma.credentials
    with VismaClient.build(base_url=visma.url, token_url=f"{visma.url}/connect/token",
                           client_id=credentials["client_id"], client_secret=credentials["client_secret"],
                           tenant_id=credentials["tenant_id"], page_size=limits.visma_page_size,
                           rate_limiter=RateLimiter(limits.visma_client_rate_per_s,
                                                    int(limits.visma_client_rate_per_s))) as client:  # fmt: skip
        return sum(len(page) for page in client.iter_pages(VismaEntity.SUPPLIER_INVOICE))


def _resource(visma: SimProcess, limits: BenchLimits) -> Any:
    from ml_connector_dagster.systems.visma.resource import VismaResource

    credentials = visma.credentials
    return VismaResource(base_url=visma.url, token_url=f"{visma.url}/connect/token", page_size=limits.visma_page_size,
                         rate_per_s=limits.visma_client_rate_per_s, burst=int(limits.visma_client_rate_per_s),
                         client_id=credentials["client_id"], client_secret=credentials["client_secret"],
                         tenant_id=credentials["tenant_id"])


def _product_pipeline(visma: SimProcess, limits: BenchLimits, workdir: Path, partition: str) -> int:
    from ml_connector_dagster.assets.visma import visma_source_assets
    from ml_connector_dagster.config import VismaSettings
    from ml_connector_dagster.resources import LedgerResource

    settings = VismaSettings(base_url=visma.url, token_url=f"{visma.url}/connect/token",
                             page_size=limits.visma_page_size)
    source = next(a for a in visma_source_assets(settings) if a.key.path[-1] == "supplier_invoices")
    resources = {"visma": _resource(visma, limits),
                 "ledger": LedgerResource(db_url=f"sqlite:///{workdir / 'ledger.db'}")}
    return materialized_reads(source, partition, resources)


def materialized_reads(source: Any, partition: str, resources: dict[str, Any]) -> int:
    """Records a source asset read, materialized through Dagster for one partition."""
    import dagster as dg

    result = dg.materialize([source], partition_key=partition, resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    return int(result.get_asset_materialization_events()[0].step_materialization_data.materialization
               .metadata["read"].value)


def timed(work: Callable[[], int]) -> tuple[int, float]:
    """What ``work`` returns (records) and the seconds it took."""
    began = time.perf_counter()
    records = work()
    return records, time.perf_counter() - began


def measure_peer(records: int, limits: BenchLimits) -> dict[str, Any]:
    """Records and seconds of each reader, taking turns against one simulator."""
    start = pinned_start()
    figures: dict[str, Any] = {"records": records}
    with simulator_process("visma", size=records, days=DAYS, start=start.isoformat(),
                           rate_limit_per_hour=limits.visma_rate_limit_per_hour,
                           latency_ms=limits.latency_ms) as visma, \
         tempfile.TemporaryDirectory(prefix="ml-connector-peer-") as work, connector_home(work):  # fmt: skip
        workdir = Path(work)
        figures["product_fetch"] = timed(lambda: _product_fetch(visma, limits))
        figures["dlt_fetch"] = timed(lambda: dlt_fetch(_dlt_source(visma, limits), "supplier_invoices"))
        figures["product_pipeline"] = timed(lambda: _product_pipeline(visma, limits, workdir,
                                                                      start.date().isoformat()))
        figures["dlt_pipeline"] = timed(lambda: dlt_pipeline(_dlt_source(visma, limits), "supplier_invoices",
                                                             "visma", workdir))
    return figures


def _rate(reading: tuple[int, float]) -> float:
    records, seconds = reading
    return records / seconds


def peer_outcome(figures: dict[str, Any], *, rerun: str, acumatica: dict[str, Any] | None = None,
                 jaggaer: dict[str, Any] | None = None) -> Outcome:
    """Records/s of each reader of each source, and the product's over dlt's."""
    sources = [("Visma supplier invoices", "", figures)]
    sources += [("Acumatica bills", "acumatica_", acumatica)] if acumatica is not None else []
    sources += [("JAGGAER invoices", "jaggaer_", jaggaer)] if jaggaer is not None else []
    rows: list[list[str]] = []
    targets: list[Target] = []
    ratios: dict[str, float] = {}
    for what, prefix, measured in sources:
        pipeline_ratio = _rate(measured["product_pipeline"]) / _rate(measured["dlt_pipeline"])
        fetch_ratio = _rate(measured["product_fetch"]) / _rate(measured["dlt_fetch"])
        for reading, key, ratio in (("pipeline (read, validate/normalize, land/load)", "pipeline", f"**{pipeline_ratio:.2f}**"),
                                    ("fetch only (pages in memory)", "fetch", f"{fetch_ratio:.2f}")):
            product, dlt = measured[f"product_{key}"], measured[f"dlt_{key}"]
            rows.append([f"{what}: {reading}", f"{product[0]:,}", f"{_rate(product):,.0f}", f"{dlt[0]:,}",
                         f"{_rate(dlt):,.0f}", ratio])
        name = "pipeline records/s, product / dlt" if not prefix else f"{what}: pipeline records/s, product / dlt"
        targets.append(Target(name=name, value=round(pipeline_ratio, 2), goal=">= 1.5", holds=pipeline_ratio >= 1.5))
        ratios.update({f"{prefix}pipeline_ratio": pipeline_ratio, f"{prefix}fetch_ratio": fetch_ratio})
    notes = ["Visma, dlt: rest_api_source with the page_number paginator (pageNumber from 1, pageSize 1000, "
             "stop after an empty page) and OAuth2ClientCredentials (tenant_id and scope in the token form); "
             "pipeline into the filesystem destination as JSONL",
             "the product stops on a short page or at totalCount; dlt needs one more (empty) page to stop"]
    if acumatica is not None:
        notes.append("Acumatica, dlt: the offset paginator ($skip/$top 1000, stop after an empty page) on "
                     "Bill?$expand=Details,TaxDetails, the password grant's fields sent through OAuth2ClientCredentials' "
                     "token form (dlt has no password grant); it signs in on every run and never out, each run "
                     "holding one of the licence's API users until its session expires (the product signs in once "
                     "and refreshes), so the simulator's licence allows four API users here (a trial allows two)")
    if jaggaer is not None:
        notes.append("JAGGAER, dlt: the page_number paginator (page from 0, size 100, J1P's largest; stop at "
                     "totalPages) on the invoices path, data_selector content, OAuth2ClientCredentials at the Keycloak "
                     "realm; the product walks by keyset (sorted by lastModifiedDate, restarting at the last stamp "
                     "read). J1P's minute budget would pace both readers alike, so the simulator allows 60,000 "
                     "requests a minute here and the product's client 1,000/s")
        if "bare_fetch" in jaggaer:
            bare = _rate(jaggaer["bare_fetch"])
            notes.append(f"JAGGAER's pages are small (100), so a reader that waits for each page waits on the round "
                         f"trip more than it works: a bare httpx loop over the same pages (no validation, no landing) "
                         f"reads {bare:,.0f} records/s, {bare / _rate(jaggaer['dlt_pipeline']):.2f}x dlt's pipeline. "
                         f"The product's fetch row is such a reader (an open-ended read is one keyset walk: "
                         f"{_rate(jaggaer['product_fetch']) / bare:.0%} of the bare loop, dlt's fetch "
                         f"{_rate(jaggaer['dlt_fetch']) / bare:.0%}); its pipeline reads the partition's window, "
                         "which it cuts into time slices walked at once (read_slices: 3) under the client's one "
                         "budget. dlt's rest_api walks one endpoint's pages one after another")
    title = f"Peer: Visma source vs dlt rest_api, {figures['records']:,} supplier invoices"
    if len(sources) > 1:
        others = ", ".join(f"{measured['records']:,} {what}" for what, _, measured in sources[1:])
        title = f"Peer: each source vs dlt rest_api ({figures['records']:,} Visma supplier invoices, {others})"
    return Outcome(
        key="peer", title=title, rerun=rerun,
        headers=["reading", "product records", "product rec/s", "dlt records", "dlt rec/s", "product / dlt"],
        rows=rows, targets=targets, notes=notes, figures=ratios,
    )
