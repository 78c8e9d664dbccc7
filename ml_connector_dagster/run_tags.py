"""The run tags that let a deployment's run queue limit runs per destination system.

A run that writes to a system carries ``ml_connector/destination.<system>: "true"``, one tag per
system it writes to (a poll run of Visma purchase orders writes to Jira, monday and Asana at once),
so that ``tag_concurrency_limits`` in deploy/dagster.yaml (``{key: ml_connector/destination.jira,
limit: 2}``) bound how many runs write to each system together. Dagster allows one ``/`` in a tag
key, hence the dot.

Which system an asset writes to follows from how the code location is laid out: an asset lives
under its system's key prefix (``jira/visma_invoice_issues``), and the landing assets that only
*read* a system are in the group named after it (``visma/purchase_orders`` in group ``visma``).
Op jobs say what they write when they are defined (:func:`job_tags`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

__all__ = [
    "DESTINATION_TAG_PREFIX",
    "WEBHOOK_LANE",
    "WEBHOOK_RUN_PRIORITY",
    "FLOW_TAG",
    "JOB_KIND_TAG",
    "destination_tag",
    "destination_tags",
    "job_tags",
    "tags_for_assets",
    "tags_for_selection",
    "webhook_run_tags",
    "written_system",
]

DESTINATION_TAG_PREFIX = "ml_connector/destination."
FLOW_TAG = "ml_connector/flow"
JOB_KIND_TAG = "ml_connector/job"
# A run carrying a webhook's few records: the run queue's fast lane (launcher/coordinator.py).
WEBHOOK_LANE = {"ml_connector/lane": "webhook"}
# A webhook run is a few records fetched by id; a poll or backfill run can be thousands.
WEBHOOK_RUN_PRIORITY = "10"


def webhook_run_tags() -> dict[str, str]:
    """The tags of a run a webhook asked for: launched at once while the queue has room (the fast lane),
    and ahead of a backlog in the run queue and in the vendor pools' op slots (``dagster/priority``)."""
    return {**WEBHOOK_LANE, "dagster/priority": WEBHOOK_RUN_PRIORITY}


def destination_tag(system: str) -> str:
    """The tag key marking runs that write to ``system``."""
    return f"{DESTINATION_TAG_PREFIX}{system}"


def destination_tags(systems: Iterable[str]) -> dict[str, str]:
    """One ``ml_connector/destination.<system>: "true"`` per system written."""
    return {destination_tag(system): "true" for system in sorted(set(systems))}


def written_system(key: dg.AssetKey, group_name: str | None) -> str | None:
    """The system materializing ``key`` writes to; None for a landing asset (it only reads its system)."""
    system = key.path[0] if len(key.path) > 1 else None
    return None if system is None or group_name == system else system


def job_tags(flow: str, *, writes: Iterable[str], kind: str | None = None) -> dict[str, str]:
    """The tags of a flow's op job: its flow, what it is (``replay``...), and the systems it writes to."""
    return {FLOW_TAG: flow, **({JOB_KIND_TAG: kind} if kind else {}), **destination_tags(writes)}


def tags_for_assets(assets: Iterable[dg.AssetsDefinition | dg.AssetSpec]) -> dict[str, str]:
    """The destination tags of a run materializing ``assets`` (for jobs and schedules defined with them)."""
    systems = set()
    for asset in assets:
        specs = asset.specs if isinstance(asset, dg.AssetsDefinition) else [asset]
        systems |= {system for spec in specs if (system := written_system(spec.key, spec.group_name))}
    return destination_tags(systems)


def tags_for_selection(repository: dg.RepositoryDefinition | None,
                       selection: dg.AssetSelection | Iterable[dg.AssetKey]) -> Mapping[str, str]:
    """The destination tags of a run of ``selection`` in ``repository`` (a sensor's, at tick time).

    Without a repository (a sensor evaluated on its own in a test) there is nothing to look up: no tags.
    """
    if repository is None:
        return {}
    graph = repository.asset_graph
    keys = selection.resolve(graph) if isinstance(selection, dg.AssetSelection) else set(selection)
    return destination_tags(system for key in keys if graph.has(key)
                            and (system := written_system(key, graph.get(key).group_name)))
