"""Which task of a kind's Asana project carries a Visma ID: the question every create asks first.

Asana cannot be asked by key (its search is premium-only and eventually consistent), so the answer
is a listing of the project. Kept in the ledger's destination index (:mod:`~ml_connector_dagster.core.
destination_index`), it is listed whole once and then only as far as it changed: a run looks up
its records after one ``GET /tasks?project=&modified_since=`` request, not the project's every page.
A task deleted in Asana is not seen by such a listing; the push drops it from the index when Asana
answers 404 for it, and the partition audit reads back the tasks it counts (:meth:`ProjectIndex.holders_now`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import datetime

from ml_connector_dagster.core.destination_index import (
    AuditIncomplete,
    DestinationIndex,
    IndexedDestination,
    Listed,
    ReadBack,
)
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.asana.client import BATCH_LIMIT, PAGE_SIZE, AsanaClient
from ml_connector_dagster.systems.asana.models import Task

from .visma_asana_render import AsanaContext, TaskKind

__all__ = ["INDEX_FIELDS", "AuditIncomplete", "ProjectIndex"]

INDEX_FIELDS = ("modified_at", "custom_fields.text_value", "custom_fields.name")


def _listed(tasks: Iterable[Task], field_gid: str) -> Iterator[Listed]:
    for task in tasks:
        yield Listed(task.gid, task.text(field_gid) or None, task.modified_at)


class ProjectIndex(IndexedDestination):
    """The kind's project by Visma ID, refreshed from Asana before it is first read (and when asked)."""

    page_size = PAGE_SIZE

    def __init__(self, client: AsanaClient, ledger: Ledger, context: AsanaContext, kind: TaskKind) -> None:
        visma_id = context.field_gid("visma_id")
        assert visma_id is not None
        self.client, self.project, self.field = client, context.projects[kind.name], visma_id
        super().__init__(DestinationIndex(ledger, f"asana:{self.project}:{visma_id}"))

    def changes(self, since: datetime | None) -> Iterator[Listed]:
        if since is None:
            return _listed(self.client.project_tasks(self.project, INDEX_FIELDS), self.field)
        return _listed(self.client.tasks_modified_since(self.project, since, INDEX_FIELDS), self.field)

    def read_requests(self, count: int) -> int:
        # Tasks are read back in batch actions: Asana counts the batch request and each of its actions.
        return count + math.ceil(count / BATCH_LIMIT)

    def read_back(self, dest_ids: list[str]) -> ReadBack:
        """A task deleted, or moved out of the project, is gone."""
        results = self.client.read_tasks(dest_ids)
        gone = {gid for gid, result in results.items() if result.status_code == 404 or (
            result.ok and self.project not in {ref.get("gid") for ref in (result.data or {}).get("projects", [])})}
        return ReadBack(gone=gone, unread={gid for gid, result in results.items() if not result.ok and gid not in gone})
