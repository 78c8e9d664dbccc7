"""What a flow plans for Jira: the action per record, its rendered issue, and the decisions the
ledger and a batched external-id lookup make (:func:`triage`, then :func:`decide`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.core.ledger import Link
from ml_connector_dagster.systems.jira.client import JiraClient
from ml_connector_dagster.systems.jira.models import JiraIssue

from .text import utc_text

__all__ = [
    "LOOKUP_BATCH",
    "RECHECK",
    "Action",
    "FieldIds",
    "PlannedIssueBase",
    "RenderedIssueBase",
    "decide",
    "known_issue_id",
    "lookup_issues",
    "triage",
]

LOOKUP_BATCH = 40  # external ids per search; also bounds reconcileIssues (Jira's limit is 50)
UNKNOWN_LOOKUP_BATCH = 100  # external ids per search when no issue id is known (the client's maximum)
# Field values whose JSON form is themselves (a description is plain JSON from the ADF builders).
_JSON_READY = (str, int, float, dict, list, tuple)
RECHECK = "recheck"  # content hash of a link whose issue must be compared again on the next run


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    LINK = "link"  # found in Jira without a ledger link: adopt it (and bring it up to date)
    SKIP = "skip"
    FILTERED = "filtered"
    FAILED = "failed"


class FieldIds(BaseModel):
    """Jira field ids of a flow's custom fields (resolved by name once per run)."""

    model_config = ConfigDict(frozen=True)

    external_id: str
    amount: str
    currency: str | None = None


class RenderedIssueBase(BaseModel):
    """A source record rendered as a Jira issue: what every flow's rendering has, and how two compare."""

    model_config = ConfigDict(frozen=True)
    unhashed: ClassVar[frozenset[str]] = frozenset({"facts"})  # fields that never make an update

    external_id: str
    summary: str
    description: dict[str, Any]
    amount: float
    currency: str
    last_modified: datetime
    facts: dict[str, str]

    @property
    def content_hash(self) -> str:
        """Equal for two renderings that would leave the issue identical.

        The hash of ``model_dump(mode="json")`` without the unhashed fields, as it always was, but
        without pydantic walking the description (a few hundred nodes of plain JSON already): only
        the fields JSON has no type for (dates) are put in pydantic's JSON form.
        """
        hashed: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name in self.unhashed:
                continue
            value = getattr(self, name)
            if value is None or isinstance(value, _JSON_READY):
                hashed[name] = value
            else:  # dates, and anything else pydantic writes in its own way
                hashed[name] = self.model_dump(mode="json", include={name})[name]
        return content_hash(hashed)

    @property
    def source_version(self) -> str:
        """The source version this rendering is of: its last-modified timestamp."""
        return utc_text(self.last_modified)


class PlannedIssueBase(BaseModel):
    """What a push will do with one record, and why: what every flow's plan says of a record."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    external_id: str
    action: Action
    reason: str | None = None
    issue: RenderedIssueBase | None = None
    issue_id: str | None = None
    issue_key: str | None = None
    current_status: str | None = None
    payload: dict[str, Any] | None = Field(None, description="The landed record, kept for a dead letter.")
    partition_key: str | None = None


def _linked(link: Link | None) -> bool:
    return link is not None and link.state == "linked"


def triage(link: Link | None, content_hash: str, *, filtered: bool) -> Action | None:
    """What the ledger alone decides: FILTERED, SKIP (unchanged), or None (ask Jira).

    A linked record keeps its issue in step even if a filter would no longer select it.
    """
    if link is None and filtered:
        return Action.FILTERED
    if _linked(link) and link.content_hash == content_hash:  # type: ignore[union-attr]
        return Action.SKIP
    return None


def decide(link: Link | None, found: JiraIssue | None, *, filtered: bool) -> Action:
    """What to do once Jira was asked: UPDATE or LINK what exists, else CREATE (or FILTERED).

    A linked record the search does not return (reconciled by id) is still an UPDATE: it goes to
    the linked key and fails there, with Jira's reason, if the issue was deleted. An earlier create
    of a record the filters now leave out keeps its pending intent, so a later run still adopts the
    issue if that create did reach Jira; nothing is sent now.
    """
    if found is not None:
        return Action.UPDATE if _linked(link) else Action.LINK
    if _linked(link):
        return Action.UPDATE
    return Action.FILTERED if filtered else Action.CREATE


def known_issue_id(link: Link | None) -> str | None:
    """The issue id the ledger links, to reconcile a search with."""
    return link.dest_id if link is not None and link.state == "linked" else None


def lookup_issues(
    client: JiraClient, project_key: str, field_id: str, wanted: Sequence[tuple[str, str | None]],
    *, fields: Sequence[str] = (),
) -> dict[str, JiraIssue]:
    """Issues of ``project_key`` by external id (text field ``field_id``), for ``(external id, issue
    id if known)`` pairs, batched.

    The known issue ids of a batch go in ``reconcileIssues``, so issues written moments ago are
    found although the search index has not caught up; unknown ones depend on the index.
    """
    found: dict[str, JiraIssue] = {}
    known = [pair for pair in wanted if pair[1]]
    unknown = [pair for pair in wanted if not pair[1]]
    # Without issue ids to reconcile, a batch is bounded only by the query: fewer, larger searches.
    for pairs, size in ((known, LOOKUP_BATCH), (unknown, UNKNOWN_LOOKUP_BATCH)):
        for start in range(0, len(pairs), size):
            batch = pairs[start : start + size]
            reconcile = [issue_id for _, issue_id in batch if issue_id]
            found.update(client.find_by_external_ids(
                project_key, field_id, [external_id for external_id, _ in batch],
                reconcile_ids=reconcile or None, fields=fields, batch_size=size,
            ))  # fmt: skip
    return found
