"""The mutations the connector uses: items, column values, webhooks, columns, groups.

Each item write takes its board's write lock first: monday runs one mutation at a time per board,
and a concurrent one on the same board fails with ``RESOURCE_LOCKED`` (the other aliases of the
request are unaffected). A write is validated whole before anything changes, so a refused one
(``ColumnValueException``, ``InvalidColumnIdException``, ``ItemsLimitationException``...) leaves
no trace. Writes made here fire the board's webhooks, as writes in monday's UI do.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from graphql import GraphQLResolveInfo

from .errors import MondayFieldError
from .render import RequestContext, as_id, board_or_error, column_json, group_json, item_json, webhook_json
from .tenant import Board, Column, Group, Item, Subscription
from .values import GUIDE, changed_at_stamp, parse_input

__all__ = ["MUTATION_RESOLVERS", "SIMULATED_COLUMN_TYPES", "SIMULATED_WEBHOOK_EVENTS"]

SIMULATED_COLUMN_TYPES = frozenset({"text", "numbers", "date", "status", "people", "link", "dropdown"})
SIMULATED_WEBHOOK_EVENTS = frozenset({
    "create_item", "change_column_value", "change_specific_column_value", "change_status_column_value",
    "change_name", "item_archived", "item_deleted",
})  # fmt: skip
_ID_PREFIX = {"text": "text", "numbers": "numeric", "date": "date", "status": "color", "people": "multiple_person",
              "link": "link", "dropdown": "dropdown"}  # fmt: skip


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


def _random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def parse_column_values(
    ctx: RequestContext, board: Board, raw: Any, *, create_labels: bool
) -> tuple[dict[str, Any], str | None]:
    """``column_values`` (a JSON string) -> (column id -> stored value, new item name or None)."""
    if raw is None:
        return {}, None
    if not isinstance(raw, str):
        raise MondayFieldError("column_values must be a JSON-encoded string", "JsonParseException", status_code=400)
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise MondayFieldError(f"column_values is not valid JSON: {exc}", "JsonParseException", status_code=400) from None
    if not isinstance(parsed, dict):
        raise MondayFieldError(GUIDE, "ColumnValueException", column_value=raw)
    stamp = changed_at_stamp(ctx.sim.clock.time())
    values: dict[str, Any] = {}
    name = None
    for column_id, value in parsed.items():
        column = board.column(column_id)
        if column is None:
            raise MondayFieldError("This column ID doesn't exist for the board", "InvalidColumnIdException",
                                   column_id=column_id)  # fmt: skip
        if column.type == "name":
            if not isinstance(value, str) or not value.strip():
                raise MondayFieldError(GUIDE, "ColumnValueException", column_value=str(value), column_type="NameColumn")
            name = value
            continue
        values[column_id] = parse_input(column, value, users=ctx.tenant.users, stamp=stamp, create_labels=create_labels)
    return values, name


def _item_on_board(ctx: RequestContext, board: Board, item_id: Any) -> Item:
    if item_id is None:
        raise MondayFieldError("item_id is required", "InvalidArgumentException", status_code=400)
    item = ctx.tenant.items.get(as_id(item_id, "item_id"))
    if item is None or item.board_id != board.id or item.state == "deleted":
        raise MondayFieldError("Item not found in board", "InvalidItemIdException", item_id=str(item_id))
    return item


def _create_item(_: Any, info: GraphQLResolveInfo, board_id: str, item_name: str, group_id: str | None = None,
                 column_values: Any = None, create_labels_if_missing: bool = False, **_ignored: Any) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    sim = ctx.sim
    with sim.lock:
        board = board_or_error(ctx, board_id)
    with sim.board_write(board.id), sim.lock:
        group = board.group(group_id) if group_id else board.top_group()
        if group is None:
            raise MondayFieldError("Group not found", "InvalidGroupIdException", group_id=group_id)
        if len(ctx.tenant.board_items(board.id, include_archived=True)) >= board.items_limit:
            raise MondayFieldError(
                f"You have reached the limit of {board.items_limit} items on this board",
                "ItemsLimitationException", board_id=str(board.id), items_limit=board.items_limit,
            )
        values, name = parse_column_values(ctx, board, column_values, create_labels=bool(create_labels_if_missing))
        now = sim.clock.time()
        stored = {k: v for k, v in values.items() if v is not None}
        item = Item(ctx.tenant.new_id("items"), board.id, group.id, name or item_name, ctx.user_id, now, now,
                    stored, dict.fromkeys(stored, now))  # fmt: skip
        ctx.tenant.items[item.id] = item
        board.updated_at = now
        sim.webhooks.item_created(board, item, ctx.user_id)
        return item_json(ctx, item)


def apply_changes(ctx: RequestContext, board: Board, item: Item, values: dict[str, Any], name: str | None) -> None:
    """Write validated values to ``item`` and fire the webhooks of what really changed."""
    now = ctx.sim.clock.time()
    for column_id, value in values.items():
        previous = item.values.get(column_id)
        if _same(previous, value):
            continue
        if value is None:
            item.values.pop(column_id, None)
        else:
            item.values[column_id] = value
        item.changed_at[column_id] = now
        ctx.sim.webhooks.column_changed(board, item, board.column(column_id), previous, value, ctx.user_id)  # type: ignore[arg-type]
    if name is not None and name != item.name:
        previous_name, item.name = item.name, name
        ctx.sim.webhooks.name_changed(board, item, previous_name, ctx.user_id)
    item.updated_at = board.updated_at = now


def _same(previous: Any, value: Any) -> bool:
    return _without_stamp(previous) == _without_stamp(value)


def _without_stamp(value: Any) -> Any:
    # changed_at moves on every write; a value equal but for it is no change (no webhook)
    return {k: v for k, v in value.items() if k != "changed_at"} if isinstance(value, dict) else value


def _change_multiple(_: Any, info: GraphQLResolveInfo, board_id: str, column_values: Any, item_id: str | None = None,
                     create_labels_if_missing: bool = False) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
    with ctx.sim.board_write(board.id), ctx.sim.lock:
        item = _item_on_board(ctx, board, item_id)
        values, name = parse_column_values(ctx, board, column_values, create_labels=bool(create_labels_if_missing))
        apply_changes(ctx, board, item, values, name)
        return item_json(ctx, item)


def _change_one(ctx: RequestContext, board_id: str, item_id: str | None, column_id: str, value: Any,
                create_labels: bool) -> dict[str, Any]:  # fmt: skip
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
    with ctx.sim.board_write(board.id), ctx.sim.lock:
        item = _item_on_board(ctx, board, item_id)
        values, name = parse_column_values(ctx, board, json.dumps({column_id: value}), create_labels=create_labels)
        apply_changes(ctx, board, item, values, name)
        return item_json(ctx, item)


def _change_column_value(_: Any, info: GraphQLResolveInfo, board_id: str, column_id: str, value: Any,
                         item_id: str | None = None, create_labels_if_missing: bool = False) -> dict[str, Any]:  # fmt: skip
    if not isinstance(value, str):
        raise MondayFieldError("value must be a JSON-encoded string", "JsonParseException", status_code=400)
    try:
        decoded = json.loads(value)
    except ValueError as exc:
        raise MondayFieldError(f"value is not valid JSON: {exc}", "JsonParseException", status_code=400) from None
    return _change_one(_ctx(info), board_id, item_id, column_id, decoded, bool(create_labels_if_missing))


def _change_simple_column_value(_: Any, info: GraphQLResolveInfo, board_id: str, column_id: str,
                                item_id: str | None = None, value: str | None = None,
                                create_labels_if_missing: bool = False) -> dict[str, Any]:  # fmt: skip
    return _change_one(_ctx(info), board_id, item_id, column_id, value, bool(create_labels_if_missing))


def _remove_item(info: GraphQLResolveInfo, item_id: str | None, state: str, event: str) -> dict[str, Any]:
    ctx = _ctx(info)
    with ctx.sim.lock:
        item = ctx.tenant.items.get(as_id(item_id, "item_id")) if item_id is not None else None
        if item is None or item.state == "deleted":
            raise MondayFieldError("Item not found", "InvalidItemIdException", item_id=str(item_id))
        board = ctx.tenant.boards[item.board_id]
    with ctx.sim.board_write(board.id), ctx.sim.lock:
        item.state = state
        item.updated_at = ctx.sim.clock.time()
        ctx.sim.webhooks.item_removed(board, item, event, ctx.user_id)
        return item_json(ctx, item)


def _archive_item(_: Any, info: GraphQLResolveInfo, item_id: str | None = None) -> dict[str, Any]:
    return _remove_item(info, item_id, "archived", "item_archived")


def _delete_item(_: Any, info: GraphQLResolveInfo, item_id: str | None = None) -> dict[str, Any]:
    return _remove_item(info, item_id, "deleted", "item_deleted")


def _create_webhook(_: Any, info: GraphQLResolveInfo, board_id: str, url: str, event: str,
                    config: Any = None) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
    if event not in SIMULATED_WEBHOOK_EVENTS:
        raise MondayFieldError(f"The sandbox does not simulate {event} webhooks", "InvalidArgumentException",
                               status_code=400)  # fmt: skip
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise MondayFieldError("config is not valid JSON", "JsonParseException", status_code=400) from None
    if config is not None and not isinstance(config, dict):
        raise MondayFieldError("config must be a JSON object", "InvalidArgumentException", status_code=400)
    if event == "change_specific_column_value" and not (config and board.column(str(config.get("columnId")))):
        raise MondayFieldError("config.columnId must name a column of the board", "InvalidArgumentException",
                               status_code=400)  # fmt: skip
    ctx.sim.webhooks.verify_url(url)  # outside the lock: the receiver may call us back
    with ctx.sim.lock:
        subscription = Subscription(ctx.tenant.new_id("webhooks"), board.id, url, event, config, ctx.sim.clock.time())
        ctx.tenant.subscriptions[subscription.id] = subscription
        return webhook_json(subscription)


def _delete_webhook(_: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:  # noqa: A002 - the SDL's name
    ctx = _ctx(info)
    with ctx.sim.lock:
        subscription = ctx.tenant.subscriptions.pop(as_id(id, "webhook_id"), None)
        if subscription is None:
            raise MondayFieldError("Webhook not found", "InvalidWebhookIdException", webhook_id=str(id))
        return webhook_json(subscription)


def _create_column(_: Any, info: GraphQLResolveInfo, board_id: str, title: str, column_type: str,
                   id: str | None = None, description: str | None = None, defaults: Any = None,  # noqa: A002
                   after_column_id: str | None = None, **_ignored: Any) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    if column_type not in SIMULATED_COLUMN_TYPES:
        raise MondayFieldError(f"The sandbox does not simulate {column_type} columns", "InvalidArgumentException",
                               status_code=400)  # fmt: skip
    settings = _column_settings(column_type, defaults)
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
        taken = {column.id for column in board.columns}
        column_id = id or f"{_ID_PREFIX[column_type]}_mkq{_random_suffix()}"
        if column_id in taken:
            raise MondayFieldError("A column with this id already exists on the board", "ColumnIdTakenException",
                                   column_id=column_id)  # fmt: skip
        column = Column(column_id, title, column_type, settings, description)
        position = next((i + 1 for i, c in enumerate(board.columns) if c.id == after_column_id), len(board.columns))
        board.columns.insert(position, column)
        return column_json(board, column)


def _column_settings(column_type: str, defaults: Any) -> dict[str, Any]:
    if isinstance(defaults, str):
        try:
            defaults = json.loads(defaults)
        except ValueError:
            raise MondayFieldError("defaults is not valid JSON", "JsonParseException", status_code=400) from None
    defaults = defaults or {}
    if column_type == "status":
        labels = defaults.get("labels") or {"0": "Working on it", "1": "Done", "2": "Stuck"}
        if isinstance(labels, list):
            labels = {str(i): label for i, label in enumerate(labels)}
        return {"labels": {str(k): v for k, v in labels.items()}, "labels_colors": {}, "done_colors": []}
    if column_type == "dropdown":
        labels = (defaults.get("settings") or defaults).get("labels") or []
        options = [{"id": int(label.get("id", i)), "name": label["name"]} if isinstance(label, dict)
                   else {"id": i, "name": str(label)} for i, label in enumerate(labels, start=1)]  # fmt: skip
        return {"labels": options}
    return {}


def _create_group(_: Any, info: GraphQLResolveInfo, board_id: str, group_name: str, group_color: str | None = None,
                  **_ignored: Any) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
        position = str(max((float(g.position) for g in board.groups), default=0) + 32768)
        group = Group(f"group_mkq{_random_suffix()}", group_name, group_color or "#579bfc", position)
        board.groups.append(group)
        return group_json(board, group)


MUTATION_RESOLVERS = {
    "create_item": _create_item, "change_multiple_column_values": _change_multiple,
    "change_column_value": _change_column_value, "change_simple_column_value": _change_simple_column_value,
    "archive_item": _archive_item, "delete_item": _delete_item, "create_webhook": _create_webhook,
    "delete_webhook": _delete_webhook, "create_column": _create_column, "create_group": _create_group,
}  # fmt: skip
