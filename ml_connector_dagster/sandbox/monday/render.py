"""How the simulator renders its tenant as monday's GraphQL objects (dicts the resolvers return).

Rendered objects carry the tenant object under a private key (``_board``, ``_item``...) for the
nested resolvers of :mod:`.graph`; ``/_sandbox/state`` strips those keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import MondayFieldError
from .tenant import Board, Column, Group, Item, Subscription, Tenant, User, Workspace
from .values import render_text

if TYPE_CHECKING:
    from .complexity import Spend
    from .simulator import MondaySimulator

__all__ = [
    "RequestContext", "account_json", "as_id", "board_json", "board_or_error", "column_json", "column_value_json",
    "group_json", "item_json", "iso", "user_json", "webhook_json", "workspace_json",
]  # fmt: skip

_TYPENAMES = {
    "text": "TextValue", "numbers": "NumbersValue", "date": "DateValue", "status": "StatusValue",
    "people": "PeopleValue", "link": "LinkValue", "dropdown": "DropdownValue",
}  # fmt: skip


@dataclass
class RequestContext:
    """What every resolver of one request sees."""

    sim: MondaySimulator
    user_id: int
    version: str
    spend: Spend

    @property
    def tenant(self) -> Tenant:
        return self.sim.tenant


def iso(moment: float) -> str:
    """monday's timestamps: ISO 8601, seconds, ``Z``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_id(value: Any, what: str = "board_id") -> int:
    """An ``ID`` argument as the integer monday uses (InvalidArgument when it is not one)."""
    text = str(value).strip()
    if not text.isdigit():
        code = {"board_id": "InvalidBoardIdException", "item_id": "InvalidItemIdException"}.get(what, "InvalidArgumentException")
        raise MondayFieldError(f"Invalid {what}: {value!r}", code, status_code=400, **{what: str(value)})
    return int(text)


def board_or_error(ctx: RequestContext, board_id: Any) -> Board:
    board = ctx.tenant.boards.get(as_id(board_id))
    if board is None or board.state == "deleted":
        raise MondayFieldError("Board not found", "InvalidBoardIdException", board_id=str(board_id))
    return board


def user_json(ctx: RequestContext, user: User) -> dict[str, Any]:
    slug = ctx.tenant.account_slug
    return {
        "id": str(user.id), "name": user.name, "email": user.email, "title": user.title,
        "created_at": iso(user.created_at), "kind": "admin" if user.is_admin else "member",
        "status": "ACTIVE", "is_deleted": False, "is_email_confirmed": True, "enabled": True,
        "is_admin": user.is_admin, "is_guest": False, "is_pending": False, "is_verified": True,
        "is_view_only": False, "time_zone_identifier": user.time_zone, "utc_hours_diff": 1,
        "url": f"https://{slug}.monday.com/users/{user.id}", "country_code": "NO", "teams": [],
        "current_language": "en", "location": None, "phone": None, "mobile_phone": None,
        "account_id": str(ctx.tenant.account_id), "account": account_json(ctx),
    }  # fmt: skip


def account_json(ctx: RequestContext) -> dict[str, Any]:
    tenant = ctx.tenant
    return {
        "id": str(tenant.account_id), "name": tenant.account_name, "slug": tenant.account_slug, "tier": "pro",
        "country_code": "NO", "first_day_of_the_week": "monday", "show_timeline_weekends": False,
        "active_members_count": len(tenant.users), "is_during_trial": False, "is_trial_expired": False,
        "logo": None, "sign_up_product_kind": "core", "products": [],
    }  # fmt: skip


def board_json(ctx: RequestContext, board: Board) -> dict[str, Any]:
    owner = user_json(ctx, ctx.tenant.users[board.owner_id])
    return {
        "id": str(board.id), "name": board.name, "description": board.description,
        "board_kind": board.board_kind, "state": board.state, "workspace_id": str(board.workspace_id),
        "items_limit": board.items_limit, "item_terminology": board.item_terminology,
        "created_at": iso(board.created_at), "updated_at": iso(board.updated_at), "permissions": "everyone",
        "url": f"https://{ctx.tenant.account_slug}.monday.com/boards/{board.id}", "type": "board",
        "hierarchy_type": "classic", "board_folder_id": None, "tags": [], "owner": owner, "owners": [owner],
        "creator": owner, "subscribers": [owner], "views": [], "updates": [], "activity_logs": [],
        "_board": board,
    }  # fmt: skip


def column_json(board: Board, column: Column) -> dict[str, Any]:
    return {
        "id": column.id, "title": column.title, "type": column.type, "description": column.description,
        "width": column.width, "archived": column.archived, "settings": column.settings,
        "settings_str": json.dumps(column.settings, ensure_ascii=False), "revision": f"{board.id}-{column.revision}",
        "capabilities": {"calculated": None, "visibility": None},
    }  # fmt: skip


def group_json(board: Board, group: Group) -> dict[str, Any]:
    return {"id": group.id, "title": group.title, "color": group.color, "position": group.position,
            "archived": group.archived, "deleted": group.deleted, "_board": board, "_group": group}  # fmt: skip


def item_json(ctx: RequestContext, item: Item) -> dict[str, Any]:
    slug = ctx.tenant.account_slug
    return {
        "id": str(item.id), "name": item.name, "state": item.state, "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at), "creator_id": str(item.creator_id),
        "email": f"pulse-{item.id}-{slug}@monday.com", "url": f"https://{slug}.monday.com/boards/{item.board_id}/pulses/{item.id}",
        "relative_link": f"/boards/{item.board_id}/pulses/{item.id}", "subscribers": [], "subitems": [],
        "updates": [], "assets": [], "parent_item": None, "_item": item,
    }  # fmt: skip


def column_value_json(ctx: RequestContext, board: Board, column: Column, item: Item) -> dict[str, Any]:
    stored = item.values.get(column.id)
    users = ctx.tenant.users
    changed = item.changed_at.get(column.id)
    rendered: dict[str, Any] = {
        "__typename": _TYPENAMES.get(column.type, "UnsupportedValue"), "id": column.id, "type": column.type,
        "text": render_text(column, stored, users), "value": None if stored is None else json.dumps(stored, ensure_ascii=False),
        "is_leaf": True, "column": column_json(board, column), "updated_at": None if changed is None else iso(changed),
    }  # fmt: skip
    if column.type == "numbers":
        rendered.update(number=None if stored is None else float(stored), symbol="", direction="left")
    elif column.type == "date":
        rendered.update(date=stored and stored["date"], time=stored and stored.get("time"), icon=None)
    elif column.type == "status":
        index = None if stored is None else stored["index"]
        colors = column.settings.get("labels_colors", {}).get(str(index), {"color": "#c4c4c4", "border": "#b0b0b0"})
        rendered.update(index=index, label=None if index is None else column.status_labels().get(index),
                        is_done=index in column.settings.get("done_colors", []), label_style=colors, update_id=None)  # fmt: skip
    elif column.type == "people":
        entries = [] if stored is None else stored["personsAndTeams"]
        rendered["persons_and_teams"] = [{"id": str(p["id"]), "kind": p["kind"]} for p in entries]
    elif column.type == "link":
        rendered.update(url=stored and stored["url"], url_text=stored and stored["text"])
    elif column.type == "dropdown":
        options = column.dropdown_labels()
        rendered["values"] = [{"id": str(i), "label": options.get(i, "")} for i in ([] if stored is None else stored["ids"])]
    return rendered



def workspace_json(space: Workspace) -> dict[str, Any]:
    return {"id": str(space.id), "name": space.name, "description": space.description, "kind": space.kind,
            "state": "active", "created_at": iso(space.created_at), "is_default_workspace": False}  # fmt: skip


def webhook_json(subscription: Subscription) -> dict[str, Any]:
    config = None if subscription.config is None else json.dumps(subscription.config)
    return {"id": str(subscription.id), "board_id": str(subscription.board_id), "event": subscription.event,
            "config": config}  # fmt: skip
