"""What the simulated site stores (issues, comments, webhooks) and how handlers see a request."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from ml_connector_dagster.systems.jira import adf

from .site import (
    IssueType,
    Project,
    User,
)


@dataclass
class Comment:
    id: int
    issue_id: int
    author: str
    body: dict[str, Any]
    created: float
    updated: float


@dataclass
class Issue:
    id: int
    key: str
    project: Project
    issuetype: IssueType
    status_id: str
    summary: str
    reporter: str
    creator: str
    created: float
    updated: float
    status_changed: float
    # Kept as JSON text, as Jira's database keeps it: 100k described issues held as Python dicts
    # take gigabytes, and the simulator then spends most of its time allocating and collecting them.
    description_json: bytes | None = None
    description_text: str | None = None  # its plain text, for JQL: read once, when it is set
    assignee: str | None = None
    priority_id: str = "3"
    labels: list[str] = field(default_factory=list)
    duedate: str | None = None
    parent_id: int | None = None
    resolution_id: str | None = None
    resolutiondate: float | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    changelog: list[dict[str, Any]] = field(default_factory=list)
    # The search index: (visible from, what JQL matches, the issue as a search answers it) for each
    # write, oldest first.
    versions: list[tuple[float, dict[str, Any], Issue]] = field(default_factory=list)

    @property
    def description(self) -> dict[str, Any] | None:
        """The description (ADF), read from its JSON text: a fresh copy each time."""
        return None if self.description_json is None else orjson.loads(self.description_json)

    @description.setter
    def description(self, value: dict[str, Any] | None) -> None:
        self.description_json = None if value is None else orjson.dumps(value)
        self.description_text = adf.plain_text(value) if value else None

    @property
    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])

    def as_indexed(self) -> Issue:
        """The issue as it stands now, for a search to answer with later: Jira's search returns what its
        index holds (a status, a field, a label as they were), not the issue as it is."""
        indexed = copy.copy(self)
        indexed.labels, indexed.custom, indexed.versions = list(self.labels), dict(self.custom), []
        return indexed

    def snapshot(self) -> dict[str, Any]:
        """What JQL sees of the issue."""
        return {
            "id": self.id,
            "key": self.key,
            "project": self.project.id,
            "issuetype": self.issuetype.id,
            "status": self.status_id,
            "resolution": self.resolution_id,
            "priority": self.priority_id,
            "assignee": self.assignee,
            "reporter": self.reporter,
            "labels": list(self.labels),
            "summary": self.summary,
            "description": self.description_text,
            "created": self.created,
            "updated": self.updated,
            "resolutiondate": self.resolutiondate,
            "duedate": self.duedate,
            "parent": self.parent_id,
            **{fid: (adf.plain_text(v) if isinstance(v, dict) else v) for fid, v in self.custom.items()},
        }


class FieldErrors(Exception):
    """Field-level validation errors, as Jira's ``errors`` object."""

    def __init__(self, errors: Mapping[str, str], messages: Sequence[str] = ()) -> None:
        super().__init__("field errors")
        self.errors = dict(errors)
        self.messages = list(messages)


def error_body(messages: Sequence[str] = (), errors: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"errorMessages": list(messages), "errors": dict(errors or {})}


def jira_error(status: int, *messages: str, errors: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(messages, errors), status_code=status)


@dataclass
class Caller:
    user: User
    via: str  # oauth | basic
    api_base: str  # base of `self` links: .../ex/jira/{cloudId} or the site root
    client_id: str | None = None


@dataclass
class Call:
    """One API request as a handler sees it."""

    caller: Caller
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return [part.strip() for raw in self.query.get(name, []) for part in raw.split(",") if part.strip()]


@dataclass
class DynamicWebhook:
    id: int
    url: str
    events: list[str]
    jql: str
    field_ids: list[str] | None
    client_id: str
    account_id: str
    expires_at: float


@dataclass
class AdminWebhook:
    id: int
    name: str
    url: str
    events: list[str]
    jql: str
    secret: str | None
    created: float

Handler = Callable[[Call], Response]
