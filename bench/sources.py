"""Where a benchmarked flow reads: what the backfill scenarios need to know of each source.

A backfill reads one daily partition of its flow's source (Visma supplier invoices, Acumatica
bills with their purchase orders and payments, JAGGAER invoices with their purchase orders) and
writes it to the flow's destination (:mod:`bench.destinations`). Each source says which simulator
to start and how many records to give it, how to point connector.yaml at it, which source assets
land the partition, and what reading it cannot avoid on each endpoint
(:class:`~bench.limits.Need`, page sizes applied).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import yaml

from ml_connector_dagster.assets.acumatica import acumatica_source_assets
from ml_connector_dagster.assets.jaggaer import jaggaer_source_assets
from ml_connector_dagster.assets.visma import visma_source_assets
from ml_connector_dagster.config import ConnectorConfig
from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource
from ml_connector_dagster.systems.jaggaer.resource import JaggaerResource
from ml_connector_dagster.systems.visma.resource import VismaResource

from .limits import BenchLimits, Budget, Need

__all__ = ["ACUMATICA", "JAGGAER", "SOURCES", "VISMA", "Source", "configure_visma", "keyed", "sandbox_config", "visma_label",
           "visma_resources", "visma_settings"]


@dataclass(frozen=True)
class Source:
    """The source of one flow's backfill."""

    name: str
    noun: str  # what the scenario's size counts: "supplier invoices", "bills"
    simulator: str  # the bench.sandbox simulator name
    simulator_settings: Callable[[int, BenchLimits], dict[str, Any]]  # records asked for -> its settings
    configure: Callable[[dict[str, Any], str, BenchLimits], None]  # connector.yaml dict, simulator URL
    assets: Callable[[ConnectorConfig], Sequence[dg.AssetsDefinition]]  # the partition's source assets
    resources: Callable[[ConnectorConfig], dict[str, Any]]
    label_of: Callable[[str], str | None]  # counted endpoint -> its name in the report (None: auth, not counted)
    reads: Callable[[dict[str, int], BenchLimits], list[Need]]  # records read by source asset -> its minimum calls
    budgets: Callable[[BenchLimits], dict[str, Budget]]
    # For a simulator of this many records: whether a dead letter's record is one its data plants for the flow
    # to refuse (a vendor with no supplier behind it); such a letter is the flow doing its job, not a failure.
    refused_by_design: Callable[[int], Callable[[dict[str, Any]], bool]] | None = None

    @property
    def prefix(self) -> str:
        """The key prefix of its source assets (``visma/``)."""
        return f"{self.name}/"


def sandbox_config(limits: BenchLimits, *systems: tuple[Callable[[dict[str, Any], str, BenchLimits], None], str]
                   ) -> dict[str, Any]:  # fmt: skip
    """The shipped sandbox connector.yaml (as a dict) with each ``(configure, url)`` system pointed at its
    served simulator under the bench's budgets."""
    from ml_connector_dagster.config import SANDBOX_CONFIG_PATH

    config = yaml.safe_load(SANDBOX_CONFIG_PATH.read_text())
    for configure, url in systems:
        configure(config, url, limits)
    return config


def keyed(assets: Sequence[dg.AssetsDefinition], *keys: str) -> list[dg.AssetsDefinition]:
    """The assets among ``assets`` with one of these keys (``visma/supplier_invoices``)."""
    wanted = {dg.AssetKey(key.split("/")) for key in keys}
    return [asset for asset in assets if wanted & set(asset.keys)]


def _settings(config: ConnectorConfig, system: str) -> Any:
    settings = getattr(config.systems, system)
    if settings is None:
        raise ValueError(f"connector.yaml has no systems.{system}")
    return settings


def _assets_of(builder: Callable[[Any], list[dg.AssetsDefinition]], system: str,
               *keys: str) -> Callable[[ConnectorConfig], list[dg.AssetsDefinition]]:  # fmt: skip
    """The source assets with these keys, built for connector.yaml's settings of ``system``."""
    return lambda config: keyed(builder(_settings(config, system)), *keys)


def _resource_of(resource: Any, system: str) -> Callable[[ConnectorConfig], dict[str, Any]]:
    """``{system: resource}`` built from connector.yaml's settings of ``system``."""
    return lambda config: {system: resource.from_settings(_settings(config, system))}


def _pages(endpoint: str, records: int, page_size: int, budget: str | None, *, one_more: bool = False) -> Need:
    """One list of ``records``: whole pages, and one page even when empty. ``one_more``: a reader that
    learns the end only from a page that is not full (Acumatica's ``$top``/``$skip`` says no total;
    JAGGAER's keyset walk restarts at the last timestamp seen, whose records come again), so a list of
    whole pages needs one more."""
    pages = records // page_size + 1 if one_more else max(1, math.ceil(records / page_size))
    return Need(endpoint=endpoint, calls=pages, budget=budget, units=pages if budget else 0.0)


# -- Visma -----------------------------------------------------------------------------------------

VISMA_BUDGET = "visma per company"


def visma_settings(records: int, limits: BenchLimits) -> dict[str, Any]:
    """The Visma simulator of ``records`` supplier invoices under the bench's budget (source or destination)."""
    return {"size": records, "rate_limit_per_hour": limits.visma_rate_limit_per_hour,
            "rate_window_s": limits.visma_rate_window_s}


def configure_visma(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    """Point connector.yaml's Visma system at the served simulator, with the bench's client budget."""
    config["systems"]["visma"].update(base_url=url, token_url=f"{url}/connect/token", page_size=limits.visma_page_size,
                                      rate_per_s=limits.visma_client_rate_per_s,
                                      burst=int(limits.visma_client_rate_per_s), timeout_s=limits.client_timeout_s)


visma_resources = _resource_of(VismaResource, "visma")


def visma_label(endpoint: str) -> str | None:
    return None if endpoint.endswith("/connect/token") else f"visma {endpoint}"


VISMA = Source(
    name="visma", noun="supplier invoices", simulator="visma", simulator_settings=visma_settings,
    configure=configure_visma, assets=_assets_of(visma_source_assets, "visma", "visma/supplier_invoices"),
    resources=visma_resources, label_of=visma_label,
    reads=lambda read, limits: [_pages("visma GET /v1/supplierInvoice", sum(read.values()), limits.visma_page_size,
                                       VISMA_BUDGET)],
    budgets=lambda limits: {VISMA_BUDGET: limits.visma_budget},
)


# -- Acumatica -------------------------------------------------------------------------------------

ACUMATICA_ENTITIES = {"acumatica/bills": "Bill", "acumatica/purchase_orders": "PurchaseOrder",
                      "acumatica/payments": "Payment"}


def _acumatica_configure(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    config["systems"]["acumatica"].update(base_url=url, page_size=limits.acumatica_page_size,
                                          rate_per_s=limits.acumatica_client_rate_per_s,
                                          burst=int(limits.acumatica_client_rate_per_s),
                                          timeout_s=limits.client_timeout_s)


def _acumatica_label(endpoint: str) -> str | None:
    method, _, path = endpoint.partition(" ")
    if path.startswith(("/identity/", "/entity/auth/")):
        return None
    # /entity/<endpoint>/<version>/<Entity>[/...]: the report names what follows the version.
    return f"acumatica {method} {'/'.join(path.split('/')[4:]) if path.startswith('/entity/') else path}"


def _acumatica_reads(read: dict[str, int], limits: BenchLimits) -> list[Need]:
    """Each entity's list, ``page_size`` a page (Acumatica has no rate budget; the licence caps concurrency)."""
    return [_pages(f"acumatica GET {entity}", read.get(asset, 0), limits.acumatica_page_size, None, one_more=True)
            for asset, entity in ACUMATICA_ENTITIES.items()]


ACUMATICA = Source(
    name="acumatica", noun="bills (with half as many purchase orders and a third as many payments)",
    simulator="acumatica", simulator_settings=lambda records, limits: {"size": records},
    configure=_acumatica_configure, assets=_assets_of(acumatica_source_assets, "acumatica", *ACUMATICA_ENTITIES),
    resources=_resource_of(AcumaticaResource, "acumatica"),
    label_of=_acumatica_label, reads=_acumatica_reads, budgets=lambda limits: {},
)


# -- JAGGAER ---------------------------------------------------------------------------------------

JAGGAER_BUDGET = "jaggaer per client"
JAGGAER_DOCUMENTS = {"jaggaer/invoices": "invoices", "jaggaer/purchase_orders": "purchase-orders"}


def _jaggaer_configure(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    jaggaer = config["systems"]["jaggaer"]
    token_path = jaggaer["token_url"].split("/", 3)[3]
    jaggaer.update(base_url=url, token_url=f"{url}/{token_path}", cxml_url=f"{url}/cxml",
                   rate_per_s=limits.jaggaer_client_rate_per_s, burst=int(limits.jaggaer_client_rate_per_s),
                   timeout_s=limits.client_timeout_s)


def _jaggaer_label(endpoint: str) -> str | None:
    # J1P's paths are the customer's (configured): the report names the collection they end in.
    method, _, path = endpoint.partition(" ")
    return None if "/protocol/openid-connect/" in path else f"jaggaer {method} {path.rsplit('/', 1)[-1]}"


def _jaggaer_reads(read: dict[str, int], limits: BenchLimits) -> list[Need]:
    """Each document list, 100 a page (J1P's maximum), walked by keyset, under the per-client minute budget."""
    return [_pages(f"jaggaer GET {collection}", read.get(asset, 0), limits.jaggaer_page_size, JAGGAER_BUDGET,
                   one_more=True)
            for asset, collection in JAGGAER_DOCUMENTS.items()]


def _jaggaer_refused(records: int) -> Callable[[dict[str, Any]], bool]:
    """Documents of the vendors the demo data onboarded only in JAGGAER (and its name twin of a Visma
    supplier), with a line on an account the GL table leaves unmapped, or malformed on purpose (which the
    source asset quarantines, so they are not among the failures)."""
    from ml_connector_dagster.sandbox.jaggaer.data import GL_ACCOUNT_MAP, INVOICES, JaggaerDemoData

    # What is planted depends on the seed and size only (the simulator's defaults: seed 0).
    data = JaggaerDemoData(seed=0, size=records, days=1, anchor=datetime.now(UTC))
    unmatched, malformed = data.vendors_without_supplier, set(data.invalid[INVOICES])

    def planted(record: dict[str, Any]) -> bool:
        lines = record.get("lines") or []
        return ((record.get("supplier") or {}).get("supplierId") in unmatched
                or ("invoiceId" in record and str(record["invoiceId"]) in malformed)
                or any(isinstance(line, dict) and line.get("accountCode") not in GL_ACCOUNT_MAP for line in lines))

    return planted


JAGGAER = Source(
    name="jaggaer", noun="invoices (with half as many purchase orders)", simulator="jaggaer",
    simulator_settings=lambda records, limits: {"size": records, "rate_limit_per_minute": limits.jaggaer_per_minute},
    configure=_jaggaer_configure, assets=_assets_of(jaggaer_source_assets, "jaggaer", *JAGGAER_DOCUMENTS),
    resources=_resource_of(JaggaerResource, "jaggaer"), label_of=_jaggaer_label,
    reads=_jaggaer_reads, budgets=lambda limits: {JAGGAER_BUDGET: limits.jaggaer_budget},
    refused_by_design=_jaggaer_refused,
)

SOURCES: dict[str, Source] = {s.name: s for s in (VISMA, ACUMATICA, JAGGAER)}
