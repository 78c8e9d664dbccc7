"""Pydantic models of the Jira Cloud REST v3 records the connector reads and writes.

Only the fields the connector uses are typed; everything else Jira sends is kept (``extra="allow"``)
or ignored, so a new Jira field never breaks parsing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ml_connector_dagster.core.moments import to_utc

__all__ = [
    "AccessibleResource",
    "BulkCreateResult",
    "Comment",
    "CreatedIssue",
    "FailedElement",
    "IssueFields",
    "JiraField",
    "JiraIssue",
    "JiraUser",
    "NamedRef",
    "StatusRef",
    "Transition",
    "Webhook",
    "WebhookRegistration",
    "parse_jira_datetime",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def parse_jira_datetime(value: Any) -> datetime | None:
    """A Jira timestamp as an aware UTC datetime: epoch millis, or ISO 8601 with ``+0000`` style offsets."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        try:
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        except (OverflowError, OSError):
            # A ValueError, so that a model field reading it fails validation by name, not with a crash.
            raise ValueError(f"Jira timestamp out of range: {value!r:.40}") from None
    else:
        text = str(value)
        # Jira writes "2019-06-01T12:42:30.000+0000"; fromisoformat wants "+00:00".
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
            text = f"{text[:-2]}:{text[-2:]}"
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"Jira timestamp without an offset: {value!r}")
    return to_utc(moment)


class AccessibleResource(_Lenient):
    """A Jira site the OAuth grant reaches (``GET /oauth/token/accessible-resources``)."""

    id: str = Field(description="The cloudId.")
    name: str = ""
    url: str = ""
    scopes: list[str] = Field(default_factory=list)


class NamedRef(_Lenient):
    """A reference to a Jira object by id and name (resolution, issue type, priority...)."""

    id: str | None = None
    name: str | None = None


class StatusCategory(_Lenient):
    key: str | None = None
    name: str | None = None


class StatusRef(NamedRef):
    """An issue status, with its category (``new`` / ``indeterminate`` / ``done``)."""

    status_category: StatusCategory | None = Field(None, alias="statusCategory")


class IssueFields(BaseModel):
    """The fields of an issue: the typed subset below, plus every other field kept as sent."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    summary: str | None = None
    status: StatusRef | None = None
    resolution: NamedRef | None = None
    labels: list[str] = Field(default_factory=list)
    updated: datetime | None = None
    created: datetime | None = None

    @field_validator("updated", "created", mode="before")
    @classmethod
    def _jira_timestamp(cls, value: Any) -> datetime | None:
        return parse_jira_datetime(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _null_labels(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def custom(self) -> dict[str, Any]:
        """The custom fields, by field id (``customfield_10050``)."""
        return {k: v for k, v in (self.model_extra or {}).items() if k.startswith("customfield_")}

    def get(self, field_id: str) -> Any:
        """Any field's raw value by id (typed fields as their JSON form), or None."""
        if field_id in type(self).model_fields:
            value = getattr(self, field_id)
            return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value
        return (self.model_extra or {}).get(field_id)


class JiraIssue(_Lenient):
    """An issue as ``GET /issue/{key}`` or ``/search/jql`` returns it."""

    id: str
    key: str | None = None
    self_url: str | None = Field(None, alias="self")
    fields: IssueFields = Field(default_factory=IssueFields)

    @property
    def status_name(self) -> str | None:
        return self.fields.status.name if self.fields.status else None

    @property
    def resolution_name(self) -> str | None:
        return self.fields.resolution.name if self.fields.resolution else None


class JiraField(_Lenient):
    """A field definition (``GET /field``): system or custom."""

    id: str
    name: str
    custom: bool = False
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    clause_names: list[str] = Field(default_factory=list, alias="clauseNames")

    @property
    def schema_type(self) -> str | None:
        """``string``, ``number``, ``array``, ``option``... (None for fields without a schema)."""
        return self.schema_.get("type")

    @property
    def custom_type(self) -> str | None:
        """The custom field type key, e.g. ``com.atlassian.jira.plugin.system.customfieldtypes:textfield``."""
        return self.schema_.get("custom")


class Transition(_Lenient):
    """A workflow transition available on an issue."""

    id: str
    name: str = ""
    to: StatusRef = Field(default_factory=StatusRef)

    @property
    def to_status(self) -> str | None:
        return self.to.name


class Comment(_Lenient):
    """An issue comment; ``body`` is an ADF document."""

    id: str
    body: Any = None
    created: datetime | None = None
    updated: datetime | None = None

    @field_validator("created", "updated", mode="before")
    @classmethod
    def _jira_timestamp(cls, value: Any) -> datetime | None:
        return parse_jira_datetime(value)


class JiraUser(_Lenient):
    """The calling user (``GET /myself``)."""

    account_id: str = Field(alias="accountId")
    display_name: str | None = Field(None, alias="displayName")
    time_zone: str | None = Field(None, alias="timeZone")


class CreatedIssue(_Lenient):
    """One issue created by a bulk create, with the caller's index of the element that made it.

    ``transition_status`` answers the transition the element asked for (Jira applies it right after
    the create): 204 when the issue moved, 4xx with ``transition_error`` when it stayed in its
    workflow's initial status, None when none was asked for or Jira said nothing of it.
    """

    index: int
    id: str
    key: str
    self_url: str | None = None
    transition_status: int | None = None
    transition_error: str | None = None

    @property
    def transitioned(self) -> bool:
        """Whether the transition the create asked for was applied."""
        return self.transition_status is not None and 200 <= self.transition_status < 300


class FailedElement(_Lenient):
    """One bulk-create element Jira refused, with the caller's index and Jira's reasons."""

    index: int
    status: int | None = None
    errors: dict[str, str] = Field(default_factory=dict, description="Field id -> message.")
    error_messages: list[str] = Field(default_factory=list)

    @property
    def message(self) -> str:
        """The reasons on one line: ``"description: Operation value must be an Atlassian Document."``."""
        parts = [*self.error_messages, *(f"{name}: {text}" for name, text in sorted(self.errors.items()))]
        return "; ".join(parts) or f"rejected with status {self.status}"


class BulkCreateResult(_Lenient):
    """The outcome of a bulk create: indexes refer to the caller's sequence of issue updates."""

    created: list[CreatedIssue] = Field(default_factory=list)
    failed: list[FailedElement] = Field(default_factory=list)

    def merged(self, other: BulkCreateResult) -> BulkCreateResult:
        """This result followed by ``other`` (the next chunk)."""
        return BulkCreateResult(created=[*self.created, *other.created], failed=[*self.failed, *other.failed])


class Webhook(_Lenient):
    """A dynamic webhook registered by this app (``GET /webhook``)."""

    id: int
    url: str | None = None
    events: list[str] = Field(default_factory=list)
    jql_filter: str = Field("", alias="jqlFilter")
    expiration: datetime | None = Field(None, alias="expirationDate")

    @field_validator("expiration", mode="before")
    @classmethod
    def _jira_timestamp(cls, value: Any) -> datetime | None:
        return parse_jira_datetime(value)

    def matches(self, url: str, events: list[str] | tuple[str, ...], jql_filter: str) -> bool:
        """Same target, same events (any order), same JQL filter (whitespace aside)."""
        same_jql = " ".join(self.jql_filter.split()) == " ".join(jql_filter.split())
        return self.url == url and set(self.events) == set(events) and same_jql


class WebhookRegistration(_Lenient):
    """One entry of ``webhookRegistrationResult``: the new id, or why Jira refused."""

    created_webhook_id: int | None = Field(None, alias="createdWebhookId")
    errors: list[str] = Field(default_factory=list)
