"""The GraphQL layer: monday's SDL per API version, with resolvers for what the connector uses.

The schemas are built from the vendor's SDL (``systems/monday/sdl/<version>.graphql``), so a
document is validated exactly as monday validates it: an unknown field or argument of *that*
version fails before anything runs. Resolvers cover boards, columns, groups, items, column values
(text, numbers, date, status, people, link, dropdown), the three item pages, users, workspaces,
the account, versions, webhooks and complexity, plus the mutations in :mod:`.mutations`. Any other
field of the SDL resolves to null (an error where the SDL says non-null): it is not simulated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from graphql import GraphQLResolveInfo, GraphQLSchema, build_schema

from ml_connector_dagster.systems.monday.sdl import CURRENT_VERSION, SUPPORTED_VERSIONS, sdl_path

from .errors import MondayFieldError
from .pages import filtered_items, first_page, next_page
from .render import (
    RequestContext,
    account_json,
    as_id,
    board_json,
    board_or_error,
    column_json,
    column_value_json,
    group_json,
    item_json,
    user_json,
    webhook_json,
    workspace_json,
)
from .tenant import Board, Column, Item
from .values import render_text

__all__ = ["VERSION_KINDS", "executable_schema"]

VERSION_KINDS = {"2026-01": ("maintenance", "Maintenance"), "2026-10": ("current", "Current")}


# -- resolvers ----------------------------------------------------------------------------------

Resolver = Callable[..., Any]


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


def _boards(_: Any, info: GraphQLResolveInfo, ids: list[str] | None = None, limit: int = 25, page: int = 1,
            state: str = "active", workspace_ids: list[str] | None = None, board_kind: str | None = None,
            **_ignored: Any) -> list[dict[str, Any]]:  # fmt: skip
    ctx = _ctx(info)
    with ctx.sim.lock:
        boards = list(ctx.tenant.boards.values())
        if ids:
            wanted = {as_id(i) for i in ids}
            boards = [b for b in boards if b.id in wanted]
        if workspace_ids:
            spaces = {as_id(w, "workspace_id") for w in workspace_ids if w is not None}
            boards = [b for b in boards if b.workspace_id in spaces]
        if board_kind:
            boards = [b for b in boards if b.board_kind == board_kind]
        if state != "all":
            boards = [b for b in boards if b.state == state]
        start = (max(page, 1) - 1) * limit
        return [board_json(ctx, b) for b in boards[start:start + limit]]


def _board_columns(board: dict[str, Any], info: GraphQLResolveInfo, ids: list[str] | None = None,
                   types: list[str] | None = None, **_ignored: Any) -> list[dict[str, Any]]:  # fmt: skip
    raw: Board = board["_board"]
    return [column_json(raw, c) for c in raw.columns
            if not c.archived and (not ids or c.id in ids) and (not types or c.type in types)]  # fmt: skip


def _board_groups(board: dict[str, Any], info: GraphQLResolveInfo, ids: list[str] | None = None) -> list[dict[str, Any]]:
    raw: Board = board["_board"]
    return [group_json(raw, g) for g in raw.groups if not g.deleted and (not ids or g.id in ids)]


def _board_items_page(board: dict[str, Any], info: GraphQLResolveInfo, limit: int, cursor: str | None = None,
                      query_params: dict[str, Any] | None = None, **_ignored: Any) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    if cursor:
        return next_page(ctx, cursor, limit)
    with ctx.sim.lock:
        ids = filtered_items(ctx, board["_board"], query_params)
    return first_page(ctx, board["_board"].id, ids, limit)


def _group_items_page(group: dict[str, Any], info: GraphQLResolveInfo, limit: int, cursor: str | None = None,
                      query_params: dict[str, Any] | None = None, **_ignored: Any) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    if cursor:
        return next_page(ctx, cursor, limit)
    with ctx.sim.lock:
        ids = filtered_items(ctx, group["_board"], query_params, group_id=group["id"])
    return first_page(ctx, group["_board"].id, ids, limit)


def _board_items_count(board: dict[str, Any], info: GraphQLResolveInfo) -> int:
    with _ctx(info).sim.lock:
        return len(_ctx(info).tenant.board_items(board["_board"].id))


def _board_top_group(board: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any]:
    return group_json(board["_board"], board["_board"].top_group())


def _board_workspace(board: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any] | None:
    space = _ctx(info).tenant.workspaces.get(board["_board"].workspace_id)
    return None if space is None else workspace_json(space)


def _items_page_by_column_values(_: Any, info: GraphQLResolveInfo, board_id: str, limit: int,
                                 columns: list[dict[str, Any]] | None = None, cursor: str | None = None,
                                 **_ignored: Any) -> dict[str, Any]:  # fmt: skip
    ctx = _ctx(info)
    if cursor and columns:
        raise MondayFieldError("You can't use both cursor and columns in the same query", "InvalidArgumentException",
                               status_code=400)  # fmt: skip
    if cursor:
        return next_page(ctx, cursor, limit)
    if not columns:
        raise MondayFieldError("columns is required when no cursor is given", "InvalidArgumentException", status_code=400)
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
        matchers = []
        for condition in columns:
            column = board.column(condition["column_id"]) if condition["column_id"] != "name" else Column("name", "Name", "name")
            if column is None:
                raise MondayFieldError("This column ID doesn't exist for the board", "InvalidColumnIdException",
                                       column_id=condition["column_id"])  # fmt: skip
            matchers.append((column, {str(v) for v in condition["column_values"] if v is not None}))
        ids = [item.id for item in ctx.tenant.board_items(board.id)
               if all(_shown(ctx, column, item) in wanted for column, wanted in matchers)]  # fmt: skip
    return first_page(ctx, board.id, ids, limit)


def _shown(ctx: RequestContext, column: Column, item: Item) -> str:
    if column.type == "name":
        return item.name
    return render_text(column, item.values.get(column.id), ctx.tenant.users) or ""


def _next_items_page(_: Any, info: GraphQLResolveInfo, cursor: str, limit: int) -> dict[str, Any]:
    return next_page(_ctx(info), cursor, limit)


def _items(_: Any, info: GraphQLResolveInfo, ids: list[str] | None = None, limit: int = 25, page: int = 1,
           newest_first: bool = False, exclude_nonactive: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    ctx = _ctx(info)
    with ctx.sim.lock:
        items = [i for i in ctx.tenant.items.values() if i.state != "deleted"]
        if ids:
            if len(ids) > 100:
                raise MondayFieldError("You can query at most 100 items by ids", "InvalidArgumentException", status_code=400)
            wanted = {as_id(i, "item_id") for i in ids}
            items = [i for i in items if i.id in wanted]
        if exclude_nonactive:
            items = [i for i in items if i.state == "active"]
        if newest_first:
            items.reverse()
        start = (max(page, 1) - 1) * limit
        return [item_json(ctx, i) for i in items[start:start + limit]]


def _item_board(item: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any] | None:
    board = _ctx(info).tenant.boards.get(item["_item"].board_id)
    return None if board is None else board_json(_ctx(info), board)


def _item_group(item: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any] | None:
    board = _ctx(info).tenant.boards.get(item["_item"].board_id)
    group = None if board is None else board.group(item["_item"].group_id)
    return None if group is None else group_json(board, group)


def _item_creator(item: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any] | None:
    user = _ctx(info).tenant.users.get(item["_item"].creator_id)
    return None if user is None else user_json(_ctx(info), user)


def _item_column_values(item: dict[str, Any], info: GraphQLResolveInfo, ids: list[str] | None = None,
                        types: list[str] | None = None, **_ignored: Any) -> list[dict[str, Any]]:  # fmt: skip
    ctx = _ctx(info)
    raw: Item = item["_item"]
    with ctx.sim.lock:
        board = ctx.tenant.boards[raw.board_id]
        return [column_value_json(ctx, board, c, raw) for c in board.columns
                if c.type != "name" and not c.archived and (not ids or c.id in ids) and (not types or c.type in types)]


def _me(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    ctx = _ctx(info)
    return user_json(ctx, ctx.tenant.users[ctx.user_id])


def _users(_: Any, info: GraphQLResolveInfo, ids: list[str] | None = None, emails: list[str] | None = None,
           limit: int | None = None, page: int = 1, name: str | None = None, **_ignored: Any) -> list[dict[str, Any]]:  # fmt: skip
    ctx = _ctx(info)
    users = list(ctx.tenant.users.values())
    if ids:
        users = [u for u in users if str(u.id) in {str(i) for i in ids}]
    if emails:
        users = [u for u in users if u.email in emails]
    if name:
        users = [u for u in users if name.lower() in u.name.lower()]
    if limit:
        users = users[(max(page, 1) - 1) * limit:max(page, 1) * limit]
    return [user_json(ctx, u) for u in users]


def _workspaces(_: Any, info: GraphQLResolveInfo, ids: list[str] | None = None, **_ignored: Any) -> list[dict[str, Any]]:
    spaces = list(_ctx(info).tenant.workspaces.values())
    if ids:
        spaces = [s for s in spaces if str(s.id) in {str(i) for i in ids}]
    return [workspace_json(s) for s in spaces]


def _version(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    return _version_json(_ctx(info).version)


def _version_json(version: str) -> dict[str, Any]:
    kind, display = VERSION_KINDS.get(version, ("current", "Current"))
    return {"value": version, "kind": kind, "display_name": display}


def _versions(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return [_version_json(v) for v in SUPPORTED_VERSIONS]


def _webhooks(_: Any, info: GraphQLResolveInfo, board_id: str, app_webhooks_only: bool = False) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    with ctx.sim.lock:
        board = board_or_error(ctx, board_id)
        return [webhook_json(s) for s in ctx.tenant.subscriptions.values() if s.board_id == board.id]


def _complexity(_: Any, info: GraphQLResolveInfo) -> dict[str, int]:
    spend = _ctx(info).spend
    return {"before": spend.before, "after": spend.after, "query": spend.query,
            "reset_in_x_seconds": spend.reset_in_x_seconds}  # fmt: skip


def _account(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    return account_json(_ctx(info))


def _resolve_column_value_type(value: dict[str, Any], info: GraphQLResolveInfo, abstract: Any) -> str:
    return value["__typename"]


QUERY_RESOLVERS: dict[str, Resolver] = {
    "boards": _boards, "items": _items, "items_page_by_column_values": _items_page_by_column_values,
    "next_items_page": _next_items_page, "complexity": _complexity, "me": _me, "users": _users,
    "workspaces": _workspaces, "version": _version, "versions": _versions, "webhooks": _webhooks,
    "account": _account,
}  # fmt: skip
TYPE_RESOLVERS: dict[str, dict[str, Resolver]] = {
    "Board": {"columns": _board_columns, "groups": _board_groups, "items_page": _board_items_page,
              "items_count": _board_items_count, "top_group": _board_top_group, "workspace": _board_workspace},
    "Group": {"items_page": _group_items_page},
    "Item": {"board": _item_board, "group": _item_group, "creator": _item_creator, "column_values": _item_column_values},
}  # fmt: skip


def _attach(schema: GraphQLSchema, type_name: str, resolvers: dict[str, Resolver]) -> None:
    fields = schema.type_map[type_name].fields  # type: ignore[union-attr]
    for name, resolver in resolvers.items():
        if name in fields:  # a field may not exist in every version
            fields[name].resolve = resolver


@lru_cache(maxsize=len(SUPPORTED_VERSIONS))
def executable_schema(version: str = CURRENT_VERSION) -> GraphQLSchema:
    """The schema of API ``version`` with the sandbox's resolvers attached (its own copy)."""
    from .mutations import MUTATION_RESOLVERS

    schema = build_schema(sdl_path(version).read_text(encoding="utf-8"))
    _attach(schema, "Query", QUERY_RESOLVERS)
    _attach(schema, "Mutation", {**MUTATION_RESOLVERS, "complexity": _complexity})
    for type_name, resolvers in TYPE_RESOLVERS.items():
        _attach(schema, type_name, resolvers)
    schema.type_map["ColumnValue"].resolve_type = _resolve_column_value_type  # type: ignore[union-attr]
    return schema

