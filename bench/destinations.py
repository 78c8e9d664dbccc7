"""Where a benchmarked flow writes: what the scenarios need to know of each destination.

A scenario is written once against :class:`Destination`; each destination says which simulator to
start, how to point connector.yaml at it, which assets make up its part of a backfill, which
counted endpoints draw on which rate budget, and the minimum calls a job needs (bulk sizes
applied). Jira (the visma_jira flow) is the first; Asana, Monday.com and the others add an entry
to :data:`DESTINATIONS` when their flows exist.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_connector_dagster.config import ConnectorConfig

from .limits import BenchLimits

__all__ = ["DESTINATIONS", "Destination", "JIRA", "workflow_hops"]


@dataclass(frozen=True)
class Destination:
    """One destination of the Visma supplier-invoice backfill."""

    name: str
    simulator: str  # the bench.sandbox simulator name
    simulator_settings: Callable[[BenchLimits], dict[str, Any]]
    configure: Callable[[dict[str, Any], str, BenchLimits], None]  # connector.yaml dict, simulator URL
    invoice_assets: Callable[[ConnectorConfig], Sequence[dg.AssetsDefinition]]
    budget_of: Callable[[str], str | None]  # counted endpoint -> rate budget (None: not rate limited)
    rates: Callable[[BenchLimits], dict[str, float]]
    hops_by_status: Callable[[ConnectorConfig], dict[str, int]]  # source status -> least workflow moves
    minimum_calls: Callable[[int, int, BenchLimits], dict[str, int]]  # (created, workflow moves) -> calls


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
    return [build_visma_jira(config.flows.visma_jira, config.systems.visma).assets[0]]


def _jira_budget(endpoint: str) -> str | None:
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


def _jira_rates(limits: BenchLimits) -> dict[str, float]:
    return {"jira POST /issue/bulk": limits.jira_burst_per_s,
            "jira POST /issue/{id}/transitions": limits.jira_burst_per_s}


def _jira_minimum(created: int, moves: int, limits: BenchLimits) -> dict[str, int]:
    """Bulk creates of 50, one POST per workflow hop (the simulator has no bulk transition), the
    field list once (custom field ids)."""
    return {"jira POST /issue/bulk": math.ceil(created / limits.jira_bulk_size),
            "jira POST /issue/{id}/transitions": moves,
            "jira GET /field": 1}


JIRA = Destination(
    name="jira", simulator="jira",
    simulator_settings=lambda limits: {"burst_per_s": limits.jira_burst_per_s,
                                       "index_delay_s": limits.jira_index_delay_s},
    configure=_jira_configure, invoice_assets=_jira_invoice_assets, budget_of=_jira_budget, rates=_jira_rates,
    hops_by_status=_jira_hops, minimum_calls=_jira_minimum,
)

DESTINATIONS: dict[str, Destination] = {JIRA.name: JIRA}
