"""Peer, Acumatica: the bills source against a dlt ``rest_api`` pipeline, same simulator, same run.

The Acumatica simulator serves N bills with their lines and taxes. Both readers page
``/entity/Default/24.200.001/Bill?$expand=Details,TaxDetails`` with ``$top``/``$skip`` (1000) after
the OAuth password grant, in turns; the product stops on a short page, dlt on an empty one. dlt
has no password grant, so its client-credentials auth sends the grant's fields in the token form,
and it signs in again on every run and never out: each run holds one of the licence's API users
until the session expires, so the simulator's licence allows four here (a trial allows two).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .limits import BenchLimits
from .peer import dlt_fetch, dlt_pipeline, dlt_rest_source, materialized_reads, timed
from .sandbox import SimProcess, connector_home, pinned_start, simulator_process

__all__ = ["measure_acumatica_peer"]

DAYS = 0.85
ENDPOINT = "entity/Default/24.200.001"
EXPAND = ("Details", "TaxDetails")  # the bills source's detail rows


def _dlt_source(acumatica: SimProcess, limits: BenchLimits) -> Any:
    from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials

    credentials = acumatica.credentials
    auth = OAuth2ClientCredentials(
        access_token_url=f"{acumatica.url}/identity/connect/token", client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        access_token_request_data={"grant_type": "password", "username": credentials["username"],
                                   "password": credentials["password"], "scope": credentials["scope"]},
    )  # fmt: skip
    return dlt_rest_source(f"{acumatica.url}/{ENDPOINT}/", auth, "bills", "Bill", {"$expand": ",".join(EXPAND)},
                           {"type": "offset", "offset_param": "$skip", "limit_param": "$top",
                            "limit": limits.acumatica_page_size, "total_path": None, "stop_after_empty_page": True})


def _resource(acumatica: SimProcess, limits: BenchLimits, workdir: Path) -> Any:
    from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource

    credentials = acumatica.credentials
    return AcumaticaResource(
        base_url=acumatica.url, sandbox=True, page_size=limits.acumatica_page_size,
        rate_per_s=limits.acumatica_client_rate_per_s, burst=int(limits.acumatica_client_rate_per_s),
        timeout_s=limits.client_timeout_s, client_id=credentials["client_id"],
        client_secret=credentials["client_secret"], username=credentials["username"],
        password=credentials["password"], db_url=f"sqlite:///{workdir / 'ledger.db'}",
    )  # fmt: skip


def _product_fetch(acumatica: SimProcess, limits: BenchLimits, workdir: Path) -> int:
    from ml_connector_dagster.systems.acumatica.client import AcumaticaEntity

    with _resource(acumatica, limits, workdir).client() as client:
        return sum(len(page) for page in client.iter_pages(AcumaticaEntity.BILL, expand=EXPAND))


def _product_pipeline(acumatica: SimProcess, limits: BenchLimits, workdir: Path, partition: str) -> int:
    from ml_connector_dagster.assets.acumatica import acumatica_source_assets
    from ml_connector_dagster.config import AcumaticaSettings
    from ml_connector_dagster.resources import LedgerResource

    settings = AcumaticaSettings(base_url=acumatica.url, page_size=limits.acumatica_page_size)
    source = next(a for a in acumatica_source_assets(settings) if a.key.path[-1] == "bills")
    resources = {"acumatica": _resource(acumatica, limits, workdir),
                 "ledger": LedgerResource(db_url=f"sqlite:///{workdir / 'ledger.db'}")}
    return materialized_reads(source, partition, resources)


def measure_acumatica_peer(records: int, limits: BenchLimits) -> dict[str, Any]:
    """Bills and seconds of each reader, taking turns against one simulator."""
    start = pinned_start()
    figures: dict[str, Any] = {"records": records}
    with simulator_process("acumatica", size=records, days=DAYS, start=start.isoformat(), api_users=4,
                           latency_ms=limits.latency_ms) as acumatica, \
         tempfile.TemporaryDirectory(prefix="ml-connector-peer-") as work, connector_home(work):  # fmt: skip
        workdir = Path(work)
        figures["product_fetch"] = timed(lambda: _product_fetch(acumatica, limits, workdir))
        figures["dlt_fetch"] = timed(lambda: dlt_fetch(_dlt_source(acumatica, limits), "bills"))
        figures["product_pipeline"] = timed(
            lambda: _product_pipeline(acumatica, limits, workdir, start.date().isoformat()))
        figures["dlt_pipeline"] = timed(lambda: dlt_pipeline(_dlt_source(acumatica, limits), "bills", "acumatica",
                                                             workdir))
    return figures
