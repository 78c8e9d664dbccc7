"""Item listings: ``items_page`` filters (``query_params``) and cursors valid 60 minutes.

A first page snapshots the matching item ids; its cursor (and every later one) points into that
snapshot, so a listing neither skips nor repeats items written while it is read. Items deleted since
are left out; the others show their current values.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from .errors import MondayFieldError
from .render import RequestContext, item_json
from .tenant import Board, Cursor, Item
from .values import render_text

__all__ = ["CURSOR_TTL_S", "MAX_PAGE_SIZE", "check_limit", "filtered_items", "first_page", "next_page"]

MAX_PAGE_SIZE = 500
CURSOR_TTL_S = 3600.0


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise MondayFieldError(f"limit must be between 1 and {MAX_PAGE_SIZE}", "InvalidArgumentException",
                               status_code=400, limit=limit)  # fmt: skip


def first_page(ctx: RequestContext, board_id: int, item_ids: list[int], limit: int) -> dict[str, Any]:
    """The first page of a listing, with a cursor (valid 60 minutes) when more remain."""
    check_limit(limit)
    return _page(ctx, Cursor(board_id, item_ids, 0, ctx.sim.clock.time()), limit)


def next_page(ctx: RequestContext, cursor: str, limit: int) -> dict[str, Any]:
    """The page after ``cursor`` (CursorException when unknown, CursorExpiredError after 60 minutes)."""
    check_limit(limit)
    with ctx.sim.lock:
        state = ctx.sim.cursors.get(cursor)
    if state is None:
        raise MondayFieldError("Invalid cursor", "CursorException", status_code=400)
    if ctx.sim.clock.time() - state.created_at > CURSOR_TTL_S:
        raise MondayFieldError("The cursor has expired, please query the first page again", "CursorExpiredError",
                               status_code=400)  # fmt: skip
    return _page(ctx, state, limit)


def _page(ctx: RequestContext, state: Cursor, limit: int) -> dict[str, Any]:
    items = ctx.tenant.items
    chosen = state.item_ids[state.position:state.position + limit]
    position = state.position + len(chosen)
    cursor = None
    if position < len(state.item_ids):
        token = f"1,{state.board_id},{secrets.token_urlsafe(18)},{position}"
        cursor = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        with ctx.sim.lock:
            ctx.sim.cursors[cursor] = Cursor(state.board_id, state.item_ids, position, state.created_at)
    # Items deleted since the first page are skipped; the others show their current values.
    page = [item_json(ctx, items[i]) for i in chosen if i in items and items[i].state != "deleted"]
    return {"cursor": cursor, "items": page}


def _rule_match(ctx: RequestContext, board: Board, item: Item, rule: dict[str, Any]) -> bool:
    column_id = rule.get("column_id")
    operator = rule.get("operator") or "any_of"
    values = rule.get("compare_value")
    values = values if isinstance(values, list) else [values]
    if column_id == "__last_updated__":
        # compare_value: ["EXACT", "<ISO date or datetime>"], as monday's last-updated filter takes it
        moment = _moment(values[-1] if values else None)
        return _compare(item.updated_at, moment, operator)
    if column_id == "name":
        return _text_match(item.name, values, operator)
    column = board.column(str(column_id))
    if column is None:
        raise MondayFieldError("This column ID doesn't exist for the board", "InvalidColumnIdException",
                               column_id=str(column_id))  # fmt: skip
    stored = item.values.get(column.id)
    if operator == "is_empty":
        return stored is None
    if operator == "is_not_empty":
        return stored is not None
    if column.type == "status":
        index = None if stored is None else stored["index"]
        label = column.status_labels().get(index) if index is not None else None
        hit = any(v == index or (isinstance(v, str) and v == label) for v in values)
        return hit if operator == "any_of" else not hit if operator == "not_any_of" else _unsupported(operator)
    text = render_text(column, stored, ctx.tenant.users) or ""
    if column.type in ("numbers", "date") and operator in _ORDERING:
        if stored is None:
            return False
        left = float(stored) if column.type == "numbers" else date.fromisoformat(stored["date"]).toordinal()
        rights = [float(v) if column.type == "numbers" else date.fromisoformat(str(v)).toordinal() for v in values if v != "EXACT"]
        return _compare(left, rights[0] if operator != "between" else rights, operator)
    return _text_match(text, values, operator)


_ORDERING = frozenset({"greater_than", "greater_than_or_equals", "lower_than", "lower_than_or_equal", "between"})


def _moment(value: Any) -> float:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MondayFieldError("invalid compare_value", "InvalidArgumentException", status_code=400) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _compare(left: float, right: Any, operator: str) -> bool:
    if operator == "greater_than":
        return left > right
    if operator == "greater_than_or_equals":
        return left >= right
    if operator == "lower_than":
        return left < right
    if operator == "lower_than_or_equal":
        return left <= right
    if operator == "between" and isinstance(right, list) and len(right) == 2:
        return right[0] <= left <= right[1]
    return _unsupported(operator)


def _text_match(text: str, values: list[Any], operator: str) -> bool:
    wanted = [str(v) for v in values]
    if operator == "any_of":
        return text in wanted
    if operator == "not_any_of":
        return text not in wanted
    if operator == "contains_text":
        return any(w.lower() in text.lower() for w in wanted)
    if operator == "not_contains_text":
        return not any(w.lower() in text.lower() for w in wanted)
    if operator == "starts_with":
        return any(text.startswith(w) for w in wanted)
    if operator == "ends_with":
        return any(text.endswith(w) for w in wanted)
    return _unsupported(operator)


def _unsupported(operator: str) -> bool:
    raise MondayFieldError(f"The sandbox does not simulate the {operator} operator here", "InvalidArgumentException",
                           status_code=400)  # fmt: skip


def filtered_items(ctx: RequestContext, board: Board, query: dict[str, Any] | None, group_id: str | None = None) -> list[int]:
    """The ids an ``items_page`` lists: board order, narrowed by ``query_params`` (ids, rules, order_by)."""
    items = ctx.tenant.board_items(board.id)
    if group_id is not None:
        items = [i for i in items if i.group_id == group_id]
    query = query or {}
    if query.get("groups"):
        raise MondayFieldError("The sandbox does not simulate query_params.groups", "InvalidArgumentException",
                               status_code=400)  # fmt: skip
    if query.get("ids"):
        wanted = {int(i) for i in query["ids"]}
        items = [i for i in items if i.id in wanted]
    rules = query.get("rules") or []
    if rules:
        combine = any if query.get("operator") == "or" else all
        items = [i for i in items if combine(_rule_match(ctx, board, i, rule) for rule in rules)]
    for order in reversed(query.get("order_by") or []):
        items.sort(key=_order_key(ctx, board, order["column_id"]), reverse=order.get("direction") == "desc")
    return [i.id for i in items]


def _order_key(ctx: RequestContext, board: Board, column_id: str) -> Callable[[Item], Any]:
    if column_id == "__last_updated__":
        return lambda item: item.updated_at
    if column_id == "__creation_log__":
        return lambda item: item.created_at
    if column_id == "name":
        return lambda item: item.name
    column = board.column(column_id)
    if column is None:
        raise MondayFieldError("This column ID doesn't exist for the board", "InvalidColumnIdException", column_id=column_id)
    return lambda item: render_text(column, item.values.get(column.id), ctx.tenant.users) or ""
