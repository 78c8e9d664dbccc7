"""Pydantic models of the Asana records the connector reads and writes, and custom field values.

Only the fields the connector uses are typed; everything else Asana sends is ignored, so a new
Asana field never breaks parsing. :func:`custom_field_value` turns a Python value into what a task
write puts under ``custom_fields[<gid>]`` for that field's type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ml_connector_dagster.core.moments import to_utc

__all__ = [
    "AsanaRef",
    "BatchAction",
    "BatchResult",
    "CustomField",
    "CustomFieldValue",
    "EnumOption",
    "EnumOptionNotFound",
    "Job",
    "Project",
    "ProjectTemplate",
    "Task",
    "User",
    "Webhook",
    "Workspace",
    "custom_field_value",
    "custom_field_values",
    "parse_asana_datetime",
]

MAX_TEXT_VALUE = 1024
IDEMPOTENT_METHODS = frozenset({"get", "put", "delete", "head"})


class EnumOptionNotFound(LookupError):
    """No enabled option of an enum custom field has the wanted name."""


def parse_asana_datetime(value: Any) -> datetime | None:
    """An Asana timestamp (ISO 8601, ``Z``) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"Asana timestamp without an offset: {value!r}")
    return to_utc(moment)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class AsanaRef(_Lenient):
    """Any Asana object by gid (compact form: gid, resource_type, name)."""

    gid: str
    resource_type: str | None = None
    name: str | None = None


class User(AsanaRef):
    email: str | None = None


class Workspace(AsanaRef):
    is_organization: bool | None = None


class EnumOption(_Lenient):
    gid: str
    name: str = ""
    enabled: bool = True
    color: str | None = None


class CustomField(_Lenient):
    """A custom field definition: its type and, for enums, its options (disabled ones included)."""

    gid: str
    name: str = ""
    resource_subtype: str | None = None
    precision: int | None = None
    enum_options: list[EnumOption] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _subtype_from_type(cls, data: Any) -> Any:
        # ``type`` is the deprecated twin of ``resource_subtype``; either may be the one asked for.
        if isinstance(data, dict) and not data.get("resource_subtype") and data.get("type"):
            return {**data, "resource_subtype": data["type"]}
        return data

    @field_validator("enum_options", mode="before")
    @classmethod
    def _null_options(cls, value: Any) -> Any:
        return [] if value is None else value

    def option_named(self, name: str, *, include_disabled: bool = False) -> EnumOption | None:
        """The option called ``name`` (case-insensitive, surrounding blanks ignored)."""
        wanted = name.strip().casefold()
        return next((o for o in self.enum_options
                     if o.name.strip().casefold() == wanted and (o.enabled or include_disabled)), None)


class DateValue(_Lenient):
    date: str | None = None
    date_time: str | None = None


class CustomFieldValue(CustomField):
    """A custom field as it appears on a task, with the task's value."""

    text_value: str | None = None
    number_value: float | None = None
    enum_value: EnumOption | None = None
    date_value: DateValue | None = None
    display_value: str | None = None

    @property
    def value(self) -> str | float | date | None:
        """The value in Python terms: text, number, the enum option's name, or a date."""
        if self.text_value is not None:
            return self.text_value
        if self.number_value is not None:
            return self.number_value
        if self.enum_value is not None:
            return self.enum_value.name
        if self.date_value is not None and self.date_value.date:
            return date.fromisoformat(self.date_value.date)
        return None


class Project(AsanaRef):
    archived: bool | None = None
    notes: str | None = None
    permalink_url: str | None = None
    start_on: date | None = None
    due_on: date | None = None


class ProjectTemplate(AsanaRef):
    description: str | None = None


class Job(_Lenient):
    """An asynchronous job (project instantiation): ``status`` in_progress / succeeded / failed."""

    gid: str
    status: str = "not_started"
    new_project: AsanaRef | None = None


class Task(AsanaRef):
    notes: str | None = None
    completed: bool | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    due_on: date | None = None
    assignee: AsanaRef | None = None
    parent: AsanaRef | None = None
    projects: list[AsanaRef] = Field(default_factory=list)
    custom_fields: list[CustomFieldValue] = Field(default_factory=list)
    permalink_url: str | None = None
    num_subtasks: int | None = None

    @field_validator("completed_at", "created_at", "modified_at", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> datetime | None:
        return parse_asana_datetime(value)

    @field_validator("projects", "custom_fields", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value

    def custom(self, field_gid: str) -> CustomFieldValue | None:
        """The task's value of custom field ``field_gid`` (None when the field is not on the task)."""
        return next((f for f in self.custom_fields if f.gid == field_gid), None)

    def text(self, field_gid: str) -> str | None:
        """The text value of custom field ``field_gid``, or None."""
        found = self.custom(field_gid)
        return found.text_value if found else None


class Webhook(_Lenient):
    gid: str
    resource: AsanaRef | None = None
    target: str = ""
    active: bool = True
    created_at: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure_content: str | None = None
    delivery_retry_count: int | None = None
    filters: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("created_at", "last_success_at", "last_failure_at", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> datetime | None:
        return parse_asana_datetime(value)

    @property
    def hook(self) -> str | None:
        """The receiver's hook id carried in the target's ``hook`` query parameter."""
        values = parse_qs(urlsplit(self.target).query).get("hook")
        return values[0] if values else None


class BatchAction(BaseModel):
    """One action of ``POST /batch``: a request relative to ``/api/1.0`` (no query string)."""

    model_config = ConfigDict(frozen=True)

    method: Literal["get", "post", "put", "delete", "patch", "head"]
    relative_path: str
    data: dict[str, Any] | None = None
    options: dict[str, Any] | None = None

    @field_validator("relative_path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value:
            raise ValueError("relative_path is a path such as /tasks/123, without a query string")
        return value

    @property
    def idempotent(self) -> bool:
        """Whether sending the action twice is harmless (creates are not)."""
        return self.method in IDEMPOTENT_METHODS

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class BatchResult(_Lenient):
    """What one action answered; ``index`` is its position in the caller's sequence.

    ``in_doubt`` marks a non-idempotent action whose outcome is unknown (5xx or no answer): it may
    have been applied, so look it up before sending it again.
    """

    index: int
    status_code: int
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    in_doubt: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def errors(self) -> list[str]:
        """Asana's error messages for this action."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return [str(e.get("message")) for e in errors or [] if isinstance(e, dict)]


def custom_field_value(custom_field: CustomField, value: Any) -> str | float | None:
    """``value`` as a task write sends it for ``custom_field``; None clears the field.

    text -> the string (at most 1,024 characters); number -> a float; date -> ``YYYY-MM-DD``;
    enum -> the gid of the *enabled* option named ``value`` (or an :class:`EnumOption`, or an
    option gid). Raises ValueError for a value that does not fit the type and
    :class:`EnumOptionNotFound` for an enum name the field has no enabled option for.
    """
    if value is None:
        return None
    subtype = custom_field.resource_subtype
    if subtype == "text":
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_TEXT_VALUE:
            raise ValueError(f"{custom_field.name}: text longer than {MAX_TEXT_VALUE} characters")
        return text
    if subtype == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ValueError(f"{custom_field.name}: a number is expected, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{custom_field.name}: {value} is not a finite number")
        return number
    if subtype == "date":
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        return date.fromisoformat(str(value)).isoformat()
    if subtype == "enum":
        return _enum_option_gid(custom_field, value)
    raise ValueError(f"{custom_field.name}: custom fields of type {subtype!r} are not supported")


def _enum_option_gid(custom_field: CustomField, value: Any) -> str:
    if isinstance(value, EnumOption):
        value = value.gid
    text = str(value)
    by_gid = next((o for o in custom_field.enum_options if o.gid == text), None)
    option = by_gid or custom_field.option_named(text)
    if option is None or not option.enabled:
        raise EnumOptionNotFound(f"{custom_field.name} has no enabled option {text!r}")
    return option.gid


def custom_field_values(fields: Mapping[str, CustomField], values: Mapping[str, Any]) -> dict[str, str | float | None]:
    """``custom_fields`` of a task write from ``{field name or gid: value}`` and the fields by name or gid."""
    payload: dict[str, str | float | None] = {}
    for key, value in values.items():
        custom_field = fields.get(key) or next((f for f in fields.values() if f.gid == key), None)
        if custom_field is None:
            raise KeyError(f"no custom field {key!r}")
        payload[custom_field.gid] = custom_field_value(custom_field, value)
    return payload
