"""Pydantic models of what monday.com's GraphQL API answers, and of what the client writes.

Ids are strings (monday's ``ID`` scalar; they are numeric, but never do arithmetic on them). Column
``settings`` arrive as a JSON object (``settings_str`` is deprecated since 2025-10). An item's
column values are keyed by column id; :meth:`Item.value` decodes one with
:func:`~ml_connector_dagster.systems.monday.columns.decode_column_value`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .columns import decode_column_value

__all__ = [
    "AliasOutcome",
    "ApiVersion",
    "Board",
    "BatchResult",
    "Column",
    "ColumnValue",
    "Complexity",
    "Group",
    "Item",
    "ItemDraft",
    "ItemUpdate",
    "MondayError",
    "MondayUser",
    "Webhook",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MondayError(_Model):
    """One entry of ``errors[]``: ``code`` from ``extensions``, ``path`` naming the field or alias."""

    message: str
    code: str | None = None
    path: list[str | int] = Field(default_factory=list)
    extensions: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> MondayError:
        extensions = entry.get("extensions") or {}
        return cls(message=str(entry.get("message", "")), code=extensions.get("code"),
                   path=list(entry.get("path") or []), extensions=dict(extensions))  # fmt: skip

    @property
    def alias(self) -> str | None:
        """The top-level field (alias) the error belongs to, if any."""
        return str(self.path[0]) if self.path else None

    @property
    def retry_in_seconds(self) -> float | None:
        value = self.extensions.get("retry_in_seconds")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Complexity(_Model):
    """``complexity { before after query reset_in_x_seconds }``: the budget around one request."""

    before: int
    after: int
    query: int
    reset_in_x_seconds: int


class ApiVersion(_Model):
    value: str
    kind: str
    display_name: str | None = None


class MondayUser(_Model):
    id: str
    name: str
    email: str


class Column(_Model):
    id: str
    title: str
    type: str
    settings: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    archived: bool = False

    @field_validator("settings", mode="before")
    @classmethod
    def _settings(cls, value: Any) -> Any:
        if isinstance(value, str):  # some versions answer the JSON scalar as a string
            return json.loads(value) if value else {}
        return value or {}

    def status_labels(self) -> list[str]:
        """A status column's labels, by index order."""
        labels = self.settings.get("labels") or {}
        return [label for _, label in sorted(((int(i), label) for i, label in labels.items()), key=lambda p: p[0])]

    def dropdown_labels(self) -> list[str]:
        return [option["name"] for option in self.settings.get("labels") or []]


class Group(_Model):
    id: str
    title: str
    position: str | None = None
    archived: bool | None = None


class Board(_Model):
    """A board with its columns in board order (mapping by position uses this order)."""

    id: str
    name: str
    url: str | None = Field(default=None, description="The board's address in monday's UI (the account's domain).")
    state: str | None = None
    workspace_id: str | None = None
    items_count: int | None = None
    columns: list[Column] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)

    def column_by_title(self, title: str) -> Column | None:
        """The column whose title matches ``title`` (case- and space-insensitive), or None."""
        wanted = " ".join(title.split()).casefold()
        return next((c for c in self.columns if " ".join(c.title.split()).casefold() == wanted), None)

    def column_types(self) -> dict[str, str]:
        """Column id -> type, what :func:`~.columns.encode_column_values` needs."""
        return {column.id: column.type for column in self.columns}


class ColumnValue(_Model):
    id: str
    type: str
    text: str | None = None
    value: str | None = None  # the API's JSON *string*
    labels: list[str] | None = None  # DropdownValue.values, when read


class Item(_Model):
    id: str
    name: str
    state: str | None = None
    board_id: str | None = None
    group_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    column_values: dict[str, ColumnValue] = Field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Any) -> Item:
        """An item as ``ItemFields`` answers it (board/group nested, column values a list).

        The answer is reshaped without trusting it, then validated: a malformed item is a
        ``ValidationError`` naming the field (``column_values.#2.type``), never a KeyError.
        """
        return cls.model_validate(_item_fields(raw))

    def text(self, column_id: str) -> str | None:
        value = self.column_values.get(column_id)
        return None if value is None else value.text

    def value(self, column_id: str) -> Any:
        """The decoded Python value of one column (None when empty or absent)."""
        column = self.column_values.get(column_id)
        if column is None:
            return None
        return decode_column_value(column.type, column.value, column.text, column.labels)


def _item_fields(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return raw  # refused by validation as not an object
    fields = {key: raw[key] for key in ("id", "name", "state", "created_at", "updated_at") if key in raw}
    if isinstance(fields.get("id"), int) and not isinstance(fields["id"], bool):
        fields["id"] = str(fields["id"])
    for nested in ("board", "group"):
        value = raw.get(nested)
        if value is not None:
            fields[f"{nested}_id"] = value.get("id") if isinstance(value, Mapping) else value
    if raw.get("column_values") is not None:
        fields["column_values"] = _column_values(raw["column_values"])
    return fields


def _column_values(entries: Any) -> Any:
    """``[{id, type, text, value, values}]`` -> ``{id: {...}}``; what cannot be keyed stays for validation to name."""
    if not isinstance(entries, list):
        return entries
    keyed: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            keyed[f"#{index}"] = entry
            continue
        fields = dict(entry)
        options = fields.pop("values", None)
        if options is not None:
            fields["labels"] = ([o.get("label") if isinstance(o, Mapping) else o for o in options]
                                if isinstance(options, list) else options)  # fmt: skip
        keyed[entry["id"]] = fields
    return keyed


class Webhook(_Model):
    id: str
    board_id: str
    event: str
    config: dict[str, Any] | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _config(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value else value or None


class ItemDraft(_Model):
    """An item to create: its name, group, and already-encoded column values (column id -> wire value)."""

    name: str = Field(min_length=1)
    column_values: dict[str, Any] = Field(default_factory=dict)
    group_id: str | None = None
    create_labels_if_missing: bool = False


class ItemUpdate(_Model):
    """New values for an existing item (column id -> wire value; ``"name"`` renames it)."""

    item_id: str
    column_values: dict[str, Any] = Field(min_length=1)
    create_labels_if_missing: bool = False


class AliasOutcome(_Model):
    """What became of one draft or update of a batch: the item, or monday's error for it."""

    index: int
    item: Item | None = None
    error: MondayError | None = None

    @property
    def ok(self) -> bool:
        return self.item is not None


class BatchResult(_Model):
    """One outcome per input, in the caller's order: a failed alias never hides the others."""

    outcomes: list[AliasOutcome]

    @property
    def items(self) -> list[Item]:
        return [o.item for o in self.outcomes if o.item is not None]

    @property
    def failed(self) -> list[AliasOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    def __len__(self) -> int:
        return len(self.outcomes)

    @classmethod
    def merge(cls, parts: Sequence[BatchResult]) -> BatchResult:
        return cls(outcomes=sorted((o for part in parts for o in part.outcomes), key=lambda o: o.index))
