"""The account a Monday simulator holds: users, workspaces, boards with typed columns, groups, items.

Plain dataclasses (they pickle, so the tenant persists with :meth:`Simulator.save_state`). Item
column values are stored the way monday.com stores them, as the object its ``value`` field answers
(JSON-encoded) — ``"text"`` for text and numbers, ``{"index": 1, ...}`` for a status,
``{"date": ..., "time": ...}`` for a date — so rendering is a ``json.dumps`` away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Board", "Column", "Cursor", "Group", "Item", "Subscription", "Tenant", "User", "Workspace"]


@dataclass
class User:
    id: int
    name: str
    email: str
    title: str
    is_admin: bool = False
    created_at: float = 0.0
    time_zone: str = "Europe/Oslo"


@dataclass
class Workspace:
    id: int
    name: str
    description: str | None = None
    kind: str = "open"
    created_at: float = 0.0


@dataclass
class Column:
    id: str
    title: str
    type: str  # the API's ColumnType name: text, numbers, date, status, people, link, dropdown, name
    settings: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    width: int | None = None
    archived: bool = False
    revision: int = 1

    def status_labels(self) -> dict[int, str]:
        """Index -> label of a status column (monday keys them by the index as a string)."""
        return {int(index): label for index, label in self.settings.get("labels", {}).items()}

    def dropdown_labels(self) -> dict[int, str]:
        """Id -> label of a dropdown column."""
        return {int(option["id"]): option["name"] for option in self.settings.get("labels", [])}


@dataclass
class Group:
    id: str
    title: str
    color: str
    position: str
    archived: bool = False
    deleted: bool = False


@dataclass
class Board:
    id: int
    name: str
    workspace_id: int
    owner_id: int
    columns: list[Column]
    groups: list[Group]
    description: str | None = None
    board_kind: str = "public"
    state: str = "active"
    items_limit: int = 10_000
    item_terminology: str = "item"
    created_at: float = 0.0
    updated_at: float = 0.0

    def column(self, column_id: str) -> Column | None:
        return next((c for c in self.columns if c.id == column_id and not c.archived), None)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id and not g.deleted), None)

    def top_group(self) -> Group:
        return next(g for g in self.groups if not g.deleted and not g.archived)


@dataclass
class Item:
    id: int
    board_id: int
    group_id: str
    name: str
    creator_id: int
    created_at: float
    updated_at: float
    values: dict[str, Any] = field(default_factory=dict)  # column id -> stored value (None: empty)
    changed_at: dict[str, float] = field(default_factory=dict)  # column id -> last change
    state: str = "active"  # active | archived | deleted


@dataclass
class Subscription:
    """A webhook registered with ``create_webhook``."""

    id: int
    board_id: int
    url: str
    event: str
    config: dict[str, Any] | None
    created_at: float


@dataclass
class Cursor:
    """A page position: the matching item ids as of the first page, and how far the reader got."""

    board_id: int
    item_ids: list[int]
    position: int
    created_at: float


@dataclass
class Tenant:
    """Everything the account holds (what ``save_state`` persists)."""

    account_id: int
    account_name: str
    account_slug: str
    users: dict[int, User]
    workspaces: dict[int, Workspace]
    boards: dict[int, Board]
    items: dict[int, Item]
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=dict)

    def new_id(self, kind: str) -> int:
        """The next id of ``kind`` (items, boards, webhooks...): increasing, never reused."""
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def board_items(self, board_id: int, *, include_archived: bool = False) -> list[Item]:
        """A board's items in board order (creation order), deleted ones never."""
        wanted = ("active", "archived") if include_archived else ("active",)
        return [item for item in self.items.values() if item.board_id == board_id and item.state in wanted]
