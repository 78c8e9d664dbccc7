"""Peer, JAGGAER: the invoices source against a dlt ``rest_api`` pipeline, same simulator, same run.

The JAGGAER simulator serves N invoices (with their lines) at the customer's J1P path. Both readers
ask for Spring pages of 100 (J1P's largest) after Keycloak's client-credentials grant, in turns:
the product walks by keyset (``sort=lastModifiedDate,asc`` from a ``lastModifiedFrom``, restarting
at the last stamp it saw, so a record edited during the read is never skipped), dlt by page number
until ``totalPages``. J1P's budget (the simulator's 600 requests a minute) would make both readers
wait alike, and the peer compares what each does with a page, so here the simulator allows 60,000
a minute and the product's client paces at 1,000/s. A bare httpx loop over the same pages shows how
fast any reader that waits for each page could go: with pages of 100 at the simulated latency, the
round trip, not the reader, sets most of the pace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .limits import BenchLimits
from .peer import dlt_fetch, dlt_pipeline, dlt_rest_source, materialized_reads, timed
from .sandbox import SimProcess, connector_home, pinned_start, sandbox_credentials, simulator_process
from .sources import JAGGAER, keyed, sandbox_config

__all__ = ["measure_jaggaer_peer", "peer_limits"]

DAYS = 0.85


def peer_limits(limits: BenchLimits) -> BenchLimits:
    """The bench's limits with J1P's minute budget lifted (see the module doc)."""
    return limits.model_copy(update={"jaggaer_per_minute": 60_000, "jaggaer_client_rate_per_s": 1_000.0})


def _settings(jaggaer: SimProcess, limits: BenchLimits) -> Any:
    from ml_connector_dagster.config import parse_config

    return parse_config(sandbox_config(limits, (JAGGAER.configure, jaggaer.url)))


def _invoices_path(config: Any) -> str:
    from ml_connector_dagster.systems.jaggaer.client import JaggaerEntity, resolve_paths

    settings = config.systems.jaggaer
    return resolve_paths(settings.paths.model_dump(), settings.path_parameters)[JaggaerEntity.INVOICES]


def _dlt_source(jaggaer: SimProcess, config: Any, limits: BenchLimits) -> Any:
    from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials

    credentials = jaggaer.credentials
    auth = OAuth2ClientCredentials(access_token_url=str(config.systems.jaggaer.token_url),
                                   client_id=credentials["client_id"], client_secret=credentials["client_secret"])
    return dlt_rest_source(f"{jaggaer.url}/", auth, "invoices", _invoices_path(config).lstrip("/"),
                           {"size": limits.jaggaer_page_size},
                           {"type": "page_number", "page_param": "page", "base_page": 0, "total_path": "totalPages"},
                           data_selector="content")


def _bare_fetch(jaggaer: SimProcess, config: Any, limits: BenchLimits) -> int:
    """The pages in number order with a bare httpx loop: as fast as a reader that waits for each page can go."""
    import httpx

    credentials = jaggaer.credentials
    with httpx.Client(base_url=jaggaer.url, timeout=limits.client_timeout_s) as http:
        grant = http.post(str(config.systems.jaggaer.token_url),
                          data={"grant_type": "client_credentials", "client_id": credentials["client_id"],
                                "client_secret": credentials["client_secret"]})
        http.headers["Authorization"] = f"Bearer {grant.raise_for_status().json()['access_token']}"
        records, page, pages = 0, 0, 1
        while page < pages:
            body = http.get(_invoices_path(config), params={"page": page, "size": limits.jaggaer_page_size}).json()
            records, page, pages = records + len(body["content"]), page + 1, body["totalPages"]
        return records


def _product_fetch(jaggaer: SimProcess, config: Any, limits: BenchLimits) -> int:
    from ml_connector_dagster.core.http import RateLimiter
    from ml_connector_dagster.systems.jaggaer.client import JaggaerClient, JaggaerEntity

    settings, credentials = config.systems.jaggaer, jaggaer.credentials
    with JaggaerClient.build(base_url=jaggaer.url, token_url=str(settings.token_url),
                             client_id=credentials["client_id"], client_secret=credentials["client_secret"],
                             paths=settings.paths.model_dump(), path_parameters=settings.path_parameters,
                             page_size=limits.jaggaer_page_size,
                             rate_limiter=RateLimiter(limits.jaggaer_client_rate_per_s,
                                                      int(limits.jaggaer_client_rate_per_s))) as client:  # fmt: skip
        return sum(len(page) for page in client.iter_all(JaggaerEntity.INVOICES))


def _product_pipeline(config: Any, workdir: Path, partition: str) -> int:
    from ml_connector_dagster.resources import LedgerResource

    (source,) = keyed(JAGGAER.assets(config), "jaggaer/invoices")
    resources = {**JAGGAER.resources(config), "ledger": LedgerResource(db_url=f"sqlite:///{workdir / 'ledger.db'}")}
    return materialized_reads(source, partition, resources)


def measure_jaggaer_peer(records: int, limits: BenchLimits) -> dict[str, Any]:
    """Invoices and seconds of each reader, taking turns against one simulator."""
    limits = peer_limits(limits)
    start = pinned_start()
    figures: dict[str, Any] = {"records": records}
    with simulator_process("jaggaer", **JAGGAER.simulator_settings(records, limits), days=DAYS,
                           start=start.isoformat(), latency_ms=limits.latency_ms) as jaggaer, \
         tempfile.TemporaryDirectory(prefix="ml-connector-peer-") as work, connector_home(work):  # fmt: skip
        workdir, config = Path(work), _settings(jaggaer, limits)
        with sandbox_credentials(config):
            figures["bare_fetch"] = timed(lambda: _bare_fetch(jaggaer, config, limits))
            figures["product_fetch"] = timed(lambda: _product_fetch(jaggaer, config, limits))
            figures["dlt_fetch"] = timed(lambda: dlt_fetch(_dlt_source(jaggaer, config, limits), "invoices"))
            figures["product_pipeline"] = timed(lambda: _product_pipeline(config, workdir, start.date().isoformat()))
            figures["dlt_pipeline"] = timed(lambda: dlt_pipeline(_dlt_source(jaggaer, config, limits), "invoices",
                                                                 "jaggaer", workdir))
    return figures
