"""Where a benchmarked flow writes: what the scenarios need to know of each destination.

A scenario is written once against :class:`Destination`; each destination says which flow's
source feeds it (:mod:`bench.sources`), which simulator to start, how to point connector.yaml at
it, which assets and resources make up its part of a backfill, which counted endpoints draw on
which rate budget, its budgets as the simulator enforces them, and what a job cannot avoid on each
endpoint (:class:`~bench.limits.Need`, bulk sizes applied). Registered in :data:`DESTINATIONS`:
Jira issues of visma_jira (``jira``) and of acumatica_jira (``jira_exceptions``), Asana tasks
(visma_asana), monday items (visma_monday) and Visma AP documents of jaggaer_visma (``visma_ap``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from ml_connector_dagster.config import ConnectorConfig

from .limits import BenchLimits, Budget, Need
from .sources import VISMA_BUDGET, configure_visma, keyed, visma_label, visma_resources, visma_settings

__all__ = ["ASANA", "DESTINATIONS", "JIRA", "JIRA_EXCEPTIONS", "MONDAY", "VISMA_AP", "Destination", "JobFacts",
           "workflow_hops"]


@dataclass(frozen=True)
class JobFacts:
    """What a backfill had to do, from its outcome: the records written and the workflow moves they needed."""

    created: int
    moves: int = 0  # transitions from the initial status to the mapped one, all of them
    later_moves: int = 0  # those a create cannot carry (beyond the first hop)


@dataclass(frozen=True)
class Destination:
    """The destination of one flow's backfill."""

    name: str
    noun: str  # what a record becomes there: issues, tasks, items
    flow: str  # the ledger's flow name of the links
    assets: tuple[str, ...]  # the keys of its assets (their created / failed figures add up)
    simulator: str  # the bench.sandbox simulator name
    simulator_settings: Callable[[int, BenchLimits], dict[str, Any]]  # records asked for -> its settings
    configure: Callable[[dict[str, Any], str, BenchLimits], None]  # connector.yaml dict, simulator URL
    invoice_assets: Callable[[ConnectorConfig], Sequence[dg.AssetsDefinition]]
    resources: Callable[[ConnectorConfig], dict[str, Any]]
    label_of: Callable[[str], str | None]  # counted endpoint -> its name in the report (None: auth, not counted)
    budgets: Callable[[BenchLimits], dict[str, Budget]]
    needs: Callable[[JobFacts, BenchLimits], list[Need]]
    hops_by_status: Callable[[ConnectorConfig], dict[str, int]] = field(default=lambda config: {})
    capacity: Callable[[BenchLimits], int | None] = field(default=lambda limits: None)  # most records it can hold
    notes: Callable[[BenchLimits], list[str]] = field(default=lambda limits: [])
    source: str = "visma"  # the bench.sources name of the flow's source
    # Unpartitioned assets landed before the timed run (reference data the plan reads), not measured.
    references: Callable[[ConnectorConfig], Sequence[dg.AssetsDefinition]] = field(default=lambda config: [])


def workflow_hops(transitions: Sequence[tuple[frozenset[str], str]], start: str) -> dict[str, int]:
    """Shortest number of transitions from status ``start`` to every reachable status (by id)."""
    hops = {start: 0}
    queue = deque([start])
    while queue:
        status = queue.popleft()
        for sources, target in transitions:
            if status in sources and target not in hops:
                hops[target] = hops[status] + 1
                queue.append(target)
    return hops


# -- Jira ------------------------------------------------------------------------------------------

def _jira_configure(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    jira = config["systems"]["jira"]
    jira.update(base_url=url, auth_url=url, rate_per_s=limits.jira_client_rate_per_s,
                burst=limits.jira_client_burst, timeout_s=limits.client_timeout_s)
    config["flows"]["visma_jira"]["jira_webhooks"] = {"enabled": False}


def _jira_invoice_assets(config: ConnectorConfig) -> list[dg.AssetsDefinition]:
    from ml_connector_dagster.flows.visma_jira import build_visma_jira

    assert config.flows.visma_jira is not None and config.systems.visma is not None
    return keyed(build_visma_jira(config.flows.visma_jira, config.systems.visma).assets,
                        "jira/visma_invoice_issues")


def _jira_resources(config: ConnectorConfig) -> dict[str, Any]:
    from ml_connector_dagster.systems.jira.resource import JiraResource

    assert config.systems.jira is not None
    return {"jira": JiraResource.from_settings(config.systems.jira)}


def _jira_label(endpoint: str) -> str | None:
    method, _, path = endpoint.partition(" ")
    if path.startswith("/oauth/"):
        return None  # the token endpoints are not under the API's burst budget
    return f"jira {method} {path.removeprefix('/rest/api/3')}"


def _jira_hops(config: ConnectorConfig) -> dict[str, int]:
    """Visma status -> the fewest transitions from a new issue's status to the one it maps to."""
    from ml_connector_dagster.sandbox.jira.site import PROJECTS, STATUSES

    flow = config.flows.visma_jira
    assert flow is not None
    project = next(p for p in PROJECTS if p.key == flow.project_key)
    status_ids = {status.name.casefold(): status.id for status in STATUSES}
    every = frozenset(status.id for status in STATUSES)
    reach = workflow_hops([(t.sources if t.sources is not None else every, t.to) for t in project.workflow.transitions],
                          project.workflow.initial)
    return {visma: reach[status_ids[jira.casefold()]] for visma, jira in flow.status_map.items()}


_JIRA_LIMITED = ("POST /issue/bulk", "POST /search/jql", "POST /issue/{id}/transitions", "GET /issue/{id}/transitions",
                 "GET /field", "PUT /issue/{id}", "POST /issue/{id}/comment", "GET /issue/{id}/comment")


def _jira_budgets(limits: BenchLimits) -> dict[str, Budget]:
    return {f"jira {endpoint}": limits.jira_budget for endpoint in _JIRA_LIMITED}


def _jira_needs(job: JobFacts, limits: BenchLimits) -> list[Need]:
    """Bulk creates of 50, each new issue's first workflow hop riding on its create (``transition``), one
    POST per further hop, the lookup of the records the ledger does not link by external id (100 per
    JQL search: DESIGN.md's dedupe before a create), the field list once (custom field ids)."""
    bulk = math.ceil(job.created / limits.jira_bulk_size)
    lookups = math.ceil(job.created / limits.jira_lookup_batch)
    return [
        Need(endpoint="jira POST /issue/bulk", calls=bulk, budget="jira POST /issue/bulk", units=bulk),
        Need(endpoint="jira POST /search/jql", calls=lookups, budget="jira POST /search/jql", units=lookups),
        Need(endpoint="jira POST /issue/{id}/transitions", calls=job.later_moves,
             budget="jira POST /issue/{id}/transitions", units=job.later_moves),
        Need(endpoint="jira GET /field", calls=1, budget="jira GET /field", units=1),
    ]


def _jira_settings(records: int, limits: BenchLimits) -> dict[str, Any]:
    return {"burst_per_s": limits.jira_burst_per_s, "index_delay_s": limits.jira_index_delay_s}


JIRA = Destination(
    name="jira", noun="issues", flow="visma_jira.invoice_issues", assets=("jira/visma_invoice_issues",),
    simulator="jira", simulator_settings=_jira_settings,
    configure=_jira_configure, invoice_assets=_jira_invoice_assets, resources=_jira_resources, label_of=_jira_label,
    budgets=_jira_budgets, needs=_jira_needs, hops_by_status=_jira_hops,
    notes=lambda limits: [
        "a new issue's first workflow hop rides on its bulk create (IssueUpdateDetails.transition; Jira answers each "
        "one's outcome); only further hops, and issues whose transition was refused, are POSTed one by one",
        _jira_phases_note(limits),
    ],
)


def _jira_phases_note(limits: BenchLimits) -> str:
    """How the lookups share the time with the creates."""
    return (f"records new to the ledger are looked up ({limits.jira_lookup_batch} per search) by the push, a chunk or "
            f"two ahead of their bulk creates ({limits.jira_bulk_size} each), so the searches spend their own "
            "per-endpoint budget while the creates spend theirs; the plan step makes none (it looks up only records "
            "the ledger links or holds a create intent for)")



# -- Jira issues of Acumatica exceptions (acumatica_jira) --------------------------------------------

def _exception_issue_assets(config: ConnectorConfig) -> list[dg.AssetsDefinition]:
    from ml_connector_dagster.flows.acumatica_jira import build_acumatica_jira

    assert config.flows.acumatica_jira is not None and config.systems.acumatica is not None
    parts = build_acumatica_jira(config.flows.acumatica_jira, config.systems.acumatica, lookback=timedelta(days=1))
    return keyed(parts.assets, "jira/acumatica_exception_issues")


def _exception_needs(job: JobFacts, limits: BenchLimits) -> list[Need]:
    """As for the invoice issues: bulk creates of 50, the documents the ledger does not link looked up by
    external id (100 per search), the field list once; a new exception issue stays in its first status."""
    bulk = math.ceil(job.created / limits.jira_bulk_size)
    lookups = math.ceil(job.created / limits.jira_lookup_batch)
    return [
        Need(endpoint="jira POST /issue/bulk", calls=bulk, budget="jira POST /issue/bulk", units=bulk),
        Need(endpoint="jira POST /search/jql", calls=lookups, budget="jira POST /search/jql", units=lookups),
        Need(endpoint="jira GET /field", calls=1, budget="jira GET /field", units=1),
    ]


JIRA_EXCEPTIONS = Destination(
    name="jira_exceptions", noun="issues", flow="acumatica_jira.exceptions", assets=("jira/acumatica_exception_issues",),
    simulator="jira", simulator_settings=_jira_settings, configure=_jira_configure,
    invoice_assets=_exception_issue_assets, resources=_jira_resources, label_of=_jira_label, budgets=_jira_budgets,
    needs=_exception_needs, source="acumatica",
    notes=lambda limits: [
        "only the documents an exception rule selects become issues (bills out of balance or on hold, purchase "
        "orders pending approval or rejected, payments on hold); the others are read, landed and filtered, so "
        "the records/s counts every document read, and the bound every issue created",
    ],
)


# -- Visma AP documents of JAGGAER (jaggaer_visma) ---------------------------------------------------

JAGGAER_VISMA_ASSETS = ("visma/jaggaer_purchase_orders", "visma/jaggaer_supplier_invoices")


def _visma_ap_configure(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    configure_visma(config, url, limits)
    config["flows"]["jaggaer_visma"]["cxml_confirmations"] = False


def _visma_ap_assets(config: ConnectorConfig) -> list[dg.AssetsDefinition]:
    from ml_connector_dagster.flows.jaggaer_visma import build_jaggaer_visma

    flow, jaggaer, visma = config.flows.jaggaer_visma, config.systems.jaggaer, config.systems.visma
    assert flow is not None and jaggaer is not None and visma is not None
    return keyed(build_jaggaer_visma(flow, jaggaer, visma).assets, *JAGGAER_VISMA_ASSETS)


def _jaggaer_visma_references(config: ConnectorConfig) -> list[dg.AssetsDefinition]:
    """What vendor matching and the GL table check read: both sides' vendors and charts of accounts."""
    from ml_connector_dagster.assets.jaggaer import jaggaer_source_assets
    from ml_connector_dagster.assets.visma import visma_source_assets

    assert config.systems.jaggaer is not None and config.systems.visma is not None
    return [*keyed(jaggaer_source_assets(config.systems.jaggaer), "jaggaer/vendors", "jaggaer/gl_accounts"),
            *keyed(visma_source_assets(config.systems.visma), "visma/suppliers", "visma/gl_accounts",
                          "visma/dimensions")]


def _visma_ap_needs(job: JobFacts, limits: BenchLimits) -> list[Need]:
    """One POST per document (Visma has no bulk create), each under the company's budget."""
    return [Need(endpoint="visma POST /v1/{documents}", calls=job.created, budget=VISMA_BUDGET, units=job.created)]


def _visma_ap_label(endpoint: str) -> str | None:
    label = visma_label(endpoint)
    return None if label is None else label.replace("POST /v1/supplierInvoice", "POST /v1/{documents}").replace(
        "POST /v1/purchaseorder", "POST /v1/{documents}")


VISMA_AP = Destination(
    name="visma_ap", noun="documents", flow="jaggaer_visma.supplier_invoices", assets=JAGGAER_VISMA_ASSETS,
    # The same size as JAGGAER's: its vendors mirror the suppliers of a Visma company of that size.
    simulator="visma", simulator_settings=visma_settings, configure=_visma_ap_configure,
    invoice_assets=_visma_ap_assets, resources=visma_resources, label_of=_visma_ap_label,
    budgets=lambda limits: {VISMA_BUDGET: limits.visma_budget}, needs=_visma_ap_needs, source="jaggaer", references=_jaggaer_visma_references,
    notes=lambda limits: [
        f"Visma.net has no bulk create: every purchase order and supplier invoice is one POST under the company's "
        f"budget ({limits.visma_rate_limit_per_hour:,} per {limits.visma_rate_window_s:g} s here), so the budget's "
        "window, not the CPU, sets the pace; vendors and charts of accounts are landed before the timed run",
    ],
)

# -- Asana -----------------------------------------------------------------------------------------

ASANA_BUDGET = "asana requests per token"


def _asana_configure(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    config["systems"]["asana"].update(base_url=url, rate_per_s=limits.asana_client_rate_per_s,
                                      burst=limits.asana_client_burst, timeout_s=limits.client_timeout_s)
    config["flows"]["visma_asana"]["return_path"] = {"enabled": False}


def _asana_invoice_assets(config: ConnectorConfig) -> list[dg.AssetsDefinition]:
    from ml_connector_dagster.flows.visma_asana import build_visma_asana

    assert config.flows.visma_asana is not None and config.systems.visma is not None
    assert config.systems.asana is not None
    parts = build_visma_asana(config.flows.visma_asana, config.systems.visma,
                              workspace_gid=config.systems.asana.workspace_gid, sandbox=True)
    return keyed(parts.assets, "asana/visma_invoice_tasks")


def _asana_resources(config: ConnectorConfig) -> dict[str, Any]:
    from ml_connector_dagster.systems.asana.resource import AsanaResource

    assert config.systems.asana is not None
    return {"asana": AsanaResource.from_settings(config.systems.asana)}


def _asana_label(endpoint: str) -> str | None:
    return None if endpoint.partition(" ")[2].startswith("/-/") else f"asana {endpoint}"


def _asana_needs(job: JobFacts, limits: BenchLimits) -> list[Need]:
    """Creates through POST /batch, 10 actions a request; the budget counts the request and every action."""
    batches = math.ceil(job.created / limits.asana_batch_size)
    return [Need(endpoint="asana POST /api/1.0/batch", calls=batches, budget=ASANA_BUDGET,
                 units=batches + job.created)]


ASANA = Destination(
    name="asana", noun="tasks", flow="visma_asana.invoice_tasks", assets=("asana/visma_invoice_tasks",),
    simulator="asana", simulator_settings=lambda records, limits: {"premium": True}, configure=_asana_configure,
    invoice_assets=_asana_invoice_assets, resources=_asana_resources, label_of=_asana_label,
    budgets=lambda limits: {ASANA_BUDGET: limits.asana_budget}, needs=_asana_needs,
    notes=lambda limits: [
        "dedupe lists the project once (Asana's search is premium-only and eventually consistent): the first look "
        "builds the project's index in the ledger, which later runs bring up to date with a listing of what changed; "
        "the plan's context reads (users, projects, custom fields) and that listing are the calls above the minimum",
    ],
)


# -- monday.com ------------------------------------------------------------------------------------

MONDAY_BUDGET = "monday complexity per token"


def _monday_configure(config: dict[str, Any], url: str, limits: BenchLimits) -> None:
    per_request = limits.monday_per_query_limit // limits.monday_item_write_cost  # the shipped default is 25
    config["systems"]["monday"].update(base_url=url, timeout_s=limits.client_timeout_s, max_batch=min(500, per_request),
                                       complexity_per_minute=limits.monday_complexity_per_minute)
    config["flows"]["visma_monday"]["return_path"] = False
    config["flows"]["visma_monday"]["boards"] = {"supplier_invoices": config["flows"]["visma_monday"]["boards"]
                                                 ["supplier_invoices"]}  # fmt: skip


def _monday_invoice_assets(config: ConnectorConfig) -> list[dg.AssetsDefinition]:
    from ml_connector_dagster.flows.visma_monday import build_visma_monday

    assert config.flows.visma_monday is not None and config.systems.visma is not None
    parts = build_visma_monday(config.flows.visma_monday, config.systems.visma, lookback=timedelta(days=1),
                               minimum_interval_seconds=60)
    return keyed(parts.assets, "monday/visma_invoice_items")


def _monday_resources(config: ConnectorConfig) -> dict[str, Any]:
    from ml_connector_dagster.systems.monday.resource import MondayResource

    assert config.systems.monday is not None
    return {"monday": MondayResource.from_settings(config.systems.monday)}


def _monday_room(limits: BenchLimits) -> int:
    """Items the demo invoice board still holds: its capacity less the invoices its users entered by hand."""
    from datetime import UTC, datetime

    from ml_connector_dagster.sandbox.monday.demo import INVOICE_BOARD, build_tenant

    entered = sum(1 for item in build_tenant(0, datetime.now(UTC)).items.values() if item.board_id == INVOICE_BOARD)
    return limits.monday_board_capacity - entered


def _monday_label(endpoint: str) -> str | None:
    # Counted per GraphQL operation: "POST /v2 CreateItems" (bench.sandbox.CountingApp).
    return f"monday {endpoint}" if endpoint.startswith("POST /v2") else None


def _monday_needs(job: JobFacts, limits: BenchLimits) -> list[Need]:
    """Creates as aliased mutations, as many a request as the 5M points per query allow, each costing a
    create_item and its id read back; the board read once (its columns: the mapping, and its URL) and
    its items listed once to find those entered by hand (dedupe)."""
    per_request = limits.monday_per_query_limit // limits.monday_item_write_cost
    requests = math.ceil(job.created / per_request)
    return [Need(endpoint="monday POST /v2 CreateItems", calls=requests, budget=MONDAY_BUDGET, units=job.created),
            Need(endpoint="monday POST /v2 Boards", calls=1),
            Need(endpoint="monday POST /v2 KeyedItems", calls=1)]


MONDAY = Destination(
    name="monday", noun="items", flow="visma_monday.supplier_invoices", assets=("monday/visma_invoice_items",),
    simulator="monday",
    simulator_settings=lambda records, limits: {"complexity_per_minute": limits.monday_complexity_per_minute},
    configure=_monday_configure, invoice_assets=_monday_invoice_assets, resources=_monday_resources,
    label_of=_monday_label, budgets=lambda limits: {MONDAY_BUDGET: limits.monday_budget}, needs=_monday_needs,
    capacity=_monday_room,
    notes=lambda limits: [
        f"a monday board holds at most {limits.monday_board_capacity:,} items (ItemsLimitationException), so the "
        "backfill is sized to what the invoice board still holds, not 100,000: the flow maps one Visma entity to one "
        "board",
        f"{limits.monday_complexity_per_minute:,} points a minute pay for {limits.monday_creates_per_minute:,} "
        "creates: the complexity budget, not the request rate, is the limit",
    ],
)

DESTINATIONS: dict[str, Destination] = {d.name: d for d in (JIRA, ASANA, MONDAY, JIRA_EXCEPTIONS, VISMA_AP)}
