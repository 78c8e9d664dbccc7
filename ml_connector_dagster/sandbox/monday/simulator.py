"""The simulator: one monday.com account behind ``POST /v2``, with monday's gates in monday's order.

A request passes, in turn: authentication (the raw personal or OAuth token in ``Authorization``;
``Bearer`` is refused), the ``API-Version`` header, the per-minute request limit and the concurrency limit
(both 429 with ``Retry-After``), the body, parsing and SDL validation (HTTP 200 with ``errors[]``),
the per-query complexity cap and the per-minute complexity budget (HTTP 200,
``COMPLEXITY_BUDGET_EXHAUSTED`` with ``extensions.retry_in_seconds``), then execution in a worker
thread — so concurrent requests really overlap, and a mutation on a board another request is
writing fails with ``RESOURCE_LOCKED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from graphql import (
    FragmentDefinitionNode,
    GraphQLError,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector_dagster.systems.monday.sdl import CURRENT_VERSION, SUPPORTED_VERSIONS

from ..framework import RateWindow, Simulator
from .complexity import PER_MINUTE_PERSONAL, PER_QUERY_LIMIT, ComplexityBudget, Spend, query_complexity
from .demo import DEMO_USER_ID, USERS, build_tenant, demo_api_token
from .errors import MondayFieldError, error_entry, http_error, monday_body
from .graph import executable_schema
from .mutations import apply_changes
from .oauth import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI, MondayOAuth
from .render import (
    RequestContext,
    board_json,
    column_json,
    column_value_json,
    group_json,
    item_json,
    webhook_json,
)
from .scopes import scope_middleware
from .tenant import Board, Column, Cursor, Item, Tenant
from .values import changed_at_stamp, parse_input
from .webhooks import WebhookHub

__all__ = ["DEMO_SIGNING_SECRET", "MondaySimulator", "sandbox_credentials"]

API_PATH = "/v2"
DEMO_SIGNING_SECRET = "sandbox-monday-signing-secret-not-for-production"
DEFAULT_REQUESTS_PER_MINUTE = 5_000
DEFAULT_MAX_CONCURRENCY = 40
STATE_FULL_LIMIT = 5_000
WAREHOUSE_USER_ID = USERS[1][0]
_VERSION_SHAPE = re.compile(r"^\d{4}-\d{2}$")


def sandbox_credentials(seed: int = 0) -> dict[str, str]:
    """What :meth:`MondaySimulator.credentials` answers for a fresh simulator, without building one."""
    return {
        "api_token": demo_api_token(seed),
        "signing_secret": DEMO_SIGNING_SECRET,
        "api_version": CURRENT_VERSION,
        "user_id": str(DEMO_USER_ID),
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "redirect_uri": DEMO_REDIRECT_URI,
    }


class MondaySimulator(Simulator):
    """monday.com's GraphQL API for one account (see the package doc for what it holds and refuses)."""

    name: ClassVar[str] = "monday"
    default_port: ClassVar[int] = 8806
    state_attributes: ClassVar[tuple[str, ...]] = (*Simulator.state_attributes, "tenant")

    def __init__(
        self,
        *,
        seed: int = 0,
        webhook_url: str | None = None,
        signing_secret: str = DEMO_SIGNING_SECRET,
        start: datetime | None = None,
        time_scale: float = 1.0,
        complexity_per_minute: int = PER_MINUTE_PERSONAL,
        requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        mutation_hold_s: float = 0.0,
        webhook_transport: httpx.BaseTransport | None = None,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        redirect_uris: Sequence[str] = (DEMO_REDIRECT_URI,),
    ) -> None:
        """A fresh account with the demo workspace.

        ``complexity_per_minute``: the token's budget (10M for a personal token). ``mutation_hold_s``:
        how long each item write keeps its board locked (makes per-board serialisation observable).
        ``time_scale`` shrinks the webhook retry schedule (every minute for 30 minutes).
        ``webhook_url`` is not used: subscriptions are made with ``create_webhook``, as in monday.
        ``client_id``, ``client_secret``, ``redirect_uris``: the OAuth app installed on the account.
        """
        super().__init__(seed=seed, webhook_url=webhook_url)
        if start is not None:
            start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            self.clock.advance(start.timestamp() - self.clock.time())
        self.signing_secret = signing_secret
        self.api_token = demo_api_token(seed)
        self.user_id = DEMO_USER_ID
        self.tenant: Tenant = build_tenant(seed, self.now())
        self.cursors: dict[str, Cursor] = {}
        self.budget = ComplexityBudget(complexity_per_minute, self.clock.time)
        self.rate_window = RateWindow(requests_per_minute, 60, self.clock)
        self.max_concurrency = max_concurrency
        self.mutation_hold_s = mutation_hold_s
        self._in_flight = 0
        self._board_locks: dict[int, threading.Lock] = {}
        self.webhooks = WebhookHub(self, time_scale=time_scale, transport=webhook_transport)
        self.oauth = MondayOAuth(self.clock, self._issue_oauth_token, client_id=client_id,
                                 client_secret=client_secret, redirect_uris=redirect_uris)

    # -- the Simulator contract ----------------------------------------------------------------
    def vendor_routes(self) -> list[BaseRoute]:
        return [Route(API_PATH, self._graphql_endpoint, methods=["POST"]), *self.oauth.routes()]

    def credentials(self) -> dict[str, Any]:
        return {
            "api_token": self.api_token,
            "signing_secret": self.signing_secret,
            "api_version": CURRENT_VERSION,
            "user_id": str(self.user_id),
            "client_id": self.oauth.client_id,
            "client_secret": self.oauth.client_secret,
            "redirect_uri": self.oauth.redirect_uris[0],
        }

    def secret_values(self) -> list[str]:
        return [self.api_token, self.signing_secret, self.oauth.client_secret, *super().secret_values()]

    def collections(self) -> dict[str, Any]:
        with self.lock:
            ctx = self._context(self.user_id)
            items = [self._item_record(ctx, item) for item in self.tenant.items.values() if item.state != "deleted"]
            return {
                "workspaces": [{"id": str(w.id), "name": w.name, "kind": w.kind, "description": w.description}
                               for w in self.tenant.workspaces.values()],  # fmt: skip
                "boards": [self._board_record(ctx, b) for b in self.tenant.boards.values()],
                "items": items if len(items) <= STATE_FULL_LIMIT
                else {"totalCount": len(items), "summarised": True, "latest": items[-100:]},
                "users": [{"id": str(u.id), "name": u.name, "email": u.email, "title": u.title}
                          for u in self.tenant.users.values()],  # fmt: skip
                "webhooks": [webhook_json(s) | {"url": s.url} for s in self.tenant.subscriptions.values()],
            }

    def rate_limited_response(self, retry_after_s: float) -> Response:
        return http_error(429, "Rate limit exceeded for the current minute", "RATE_LIMIT_EXCEEDED",
                          account_id=self.tenant.account_id, retry_after_s=retry_after_s)  # fmt: skip

    def server_error_response(self, status_code: int) -> Response:
        return JSONResponse({"error_message": "Internal server error", "status_code": status_code}, status_code=status_code)

    def close(self) -> None:
        """Stop the webhook delivery thread."""
        self.webhooks.close()

    # -- helpers for tests and the demo (people working in monday) -------------------------------
    def board_named(self, name: str) -> Board:
        """The board called ``name`` (KeyError if none)."""
        with self.lock:
            for board in self.tenant.boards.values():
                if board.name == name:
                    return board
        raise KeyError(name)

    def item(self, item_id: int | str) -> dict[str, Any] | None:
        """One item as the API shows it (``/_sandbox/state`` shape), or None."""
        with self.lock:
            item = self.tenant.items.get(int(item_id))
            return None if item is None or item.state == "deleted" else self._item_record(self._context(self.user_id), item)

    def items_on(self, board_id: int) -> list[dict[str, Any]]:
        """Every active item of a board, in board order."""
        with self.lock:
            ctx = self._context(self.user_id)
            return [self._item_record(ctx, item) for item in self.tenant.board_items(board_id)]

    def set_column_value(self, item_id: int | str, column: str, value: Any, *, user_id: int = WAREHOUSE_USER_ID) -> dict[str, Any]:
        """Change one column as a user would in monday's UI (``column``: id or title; ``value``: API JSON form).

        Fires the board's webhooks. Raises :class:`MondayFieldError` for a value the column refuses.
        """
        with self.lock:
            item = self.tenant.items[int(item_id)]
            board = self.tenant.boards[item.board_id]
            target = self._column(board, column)
            stored = parse_input(target, value, users=self.tenant.users, stamp=changed_at_stamp(self.clock.time()))
            apply_changes(self._context(user_id), board, item, {target.id: stored}, None)
            return self._item_record(self._context(self.user_id), item)

    def mark_received(self, item_id: int | str, *, user_id: int = WAREHOUSE_USER_ID) -> dict[str, Any]:
        """The warehouse marks an invoice or order "Received" (its "Status" column); webhooks fire."""
        return self.set_column_value(item_id, "Status", {"label": "Received"}, user_id=user_id)

    def add_items(self, board_id: int, count: int, *, name_prefix: str = "Imported row") -> list[int]:
        """Bulk-add ``count`` empty items (an import in monday's UI: no webhooks, no budget)."""
        with self.lock:
            board = self.tenant.boards[board_id]
            now = self.clock.time()
            group = board.top_group().id
            ids = []
            for n in range(count):
                item = Item(self.tenant.new_id("items"), board_id, group, f"{name_prefix} {n + 1}", self.user_id, now, now)
                self.tenant.items[item.id] = item
                ids.append(item.id)
            return ids

    def board_busy(self, board_id: int) -> bool:
        """True while a mutation holds the board's write lock."""
        with self.lock:
            lock = self._board_locks.get(board_id)
        return lock is not None and lock.locked()

    def flush_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued webhook delivery has succeeded or given up."""
        return self.webhooks.dispatcher.flush(timeout_s)

    # -- used by the resolvers -------------------------------------------------------------------
    @contextlib.contextmanager
    def board_write(self, board_id: int) -> Iterator[None]:
        """Hold ``board_id``'s write lock for one mutation (RESOURCE_LOCKED when another holds it)."""
        with self.lock:
            lock = self._board_locks.setdefault(board_id, threading.Lock())
        if not lock.acquire(blocking=False):
            raise MondayFieldError("Resource is currently locked, please try again later", "RESOURCE_LOCKED",
                                   status_code=423, board_id=str(board_id))  # fmt: skip
        try:
            yield
            if self.mutation_hold_s:
                time.sleep(self.mutation_hold_s)
        finally:
            lock.release()

    # -- the endpoint ----------------------------------------------------------------------------
    async def _graphql_endpoint(self, request: Request) -> Response:
        account_id = self.tenant.account_id
        caller = self._authenticate(request.headers.get("authorization"))
        if caller is None:
            return http_error(401, "Not Authenticated", "UNAUTHENTICATED", account_id=None)
        raw_version = request.headers.get("api-version")
        version = CURRENT_VERSION if raw_version is None else raw_version.strip()
        if version not in SUPPORTED_VERSIONS:
            shape = "is not a valid API version" if not _VERSION_SHAPE.match(version) else "is not a supported API version"
            return http_error(400, f"{version!r} {shape}; supported: {', '.join(SUPPORTED_VERSIONS)}",
                              "InvalidVersionException", account_id=account_id)  # fmt: skip
        allowed, _, reset_s = self.rate_window.hit()
        if not allowed:
            return http_error(429, "Rate limit exceeded for the current minute", "RATE_LIMIT_EXCEEDED",
                              account_id=account_id, retry_after_s=reset_s)  # fmt: skip
        with self.lock:
            busy = self._in_flight >= self.max_concurrency
            if not busy:
                self._in_flight += 1
        if busy:
            return http_error(429, "Concurrency limit exceeded", "maxConcurrencyExceeded", account_id=account_id,
                              retry_after_s=1)  # fmt: skip
        try:
            return await self._answer(request, *caller, version)
        finally:
            with self.lock:
                self._in_flight -= 1

    def _authenticate(self, authorization: str | None) -> tuple[int, frozenset[str] | None] | None:
        """(user id, granted scopes) of the caller; scopes None for a personal token (its user's rights)."""
        # Personal and OAuth tokens go bare in Authorization; "Bearer <token>" is not a token monday knows.
        credential = (authorization or "").strip()
        if credential and credential == self.api_token:
            return self.user_id, None
        token = self.valid_token(credential, "access")
        return (int(token.subject), frozenset(token.scopes)) if token is not None else None

    def _issue_oauth_token(self, scopes: tuple[str, ...]) -> str:
        # OAuth tokens live until the app is uninstalled: no expiry, no refresh token.
        return self.issue_token("access", str(self.user_id), None, scopes=scopes, client_id=self.oauth.client_id).value

    async def _answer(self, request: Request, user_id: int, scopes: frozenset[str] | None, version: str) -> Response:
        account_id = self.tenant.account_id
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return http_error(400, "The request body is not valid JSON", "BadRequest", account_id=account_id)
        query = payload.get("query") if isinstance(payload, dict) else None
        variables = payload.get("variables") if isinstance(payload, dict) else None
        if not isinstance(query, str) or not query.strip():
            return http_error(400, "No query string was present", "BadRequest", account_id=account_id)
        if variables is not None and not isinstance(variables, dict):
            return http_error(400, "variables must be a JSON object", "BadRequest", account_id=account_id)
        try:
            document = parse(query)
        except GraphQLError as exc:
            return self._errors([_parse_error(exc)])
        schema = executable_schema(version)
        problems = validate(schema, document)
        if problems:
            return self._errors([_validation_error(problem) for problem in problems])
        operation = get_operation_ast(document, payload.get("operationName"))
        if operation is None:
            return self._errors([error_entry("No operation named by operationName", "OPERATION_NOT_FOUND")])
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        cost = query_complexity(operation, fragments, variables)
        if cost > PER_QUERY_LIMIT:
            return self._errors([error_entry(
                f"Query has complexity of {cost}, which exceeds max complexity of {PER_QUERY_LIMIT}",
                "maxComplexityExceeded", complexity=cost, maxComplexity=PER_QUERY_LIMIT,
            )])  # fmt: skip
        spend = self.budget.spend(cost)
        if not spend.ok:
            retry = spend.reset_in_x_seconds
            entry = error_entry("Complexity budget exhausted", "COMPLEXITY_BUDGET_EXHAUSTED", retry_in_seconds=retry)
            return self._errors([entry], headers={"Retry-After": str(retry)})
        context = RequestContext(self, user_id, version, spend)
        middleware = None if scopes is None else [scope_middleware(scopes)]
        result = await asyncio.to_thread(
            execute, schema, document, None, context, variables, payload.get("operationName"),
            middleware=middleware,
        )
        errors = [error.formatted for error in result.errors or []]
        return JSONResponse(monday_body(account_id=account_id, data=result.data, errors=errors))

    def _errors(self, errors: list[dict[str, Any]], headers: Mapping[str, str] | None = None) -> JSONResponse:
        body = monday_body(account_id=self.tenant.account_id, errors=errors, include_data=False)
        return JSONResponse(body, headers=dict(headers or {}))

    # -- rendering for the state endpoint and the helpers ----------------------------------------
    def _context(self, user_id: int) -> RequestContext:
        return RequestContext(self, user_id, CURRENT_VERSION, Spend(True, 0, 0, 0, 0))

    def _board_record(self, ctx: RequestContext, board: Board) -> dict[str, Any]:
        record = _public(board_json(ctx, board))
        record["columns"] = [column_json(board, c) for c in board.columns if not c.archived]
        record["groups"] = [_public(group_json(board, g)) for g in board.groups if not g.deleted]
        record["items_count"] = len(self.tenant.board_items(board.id))
        return record

    def _item_record(self, ctx: RequestContext, item: Item) -> dict[str, Any]:
        board = self.tenant.boards[item.board_id]
        record = _public(item_json(ctx, item))
        group = board.group(item.group_id)
        record["board"] = {"id": str(board.id)}
        record["group"] = {"id": item.group_id, "title": group.title if group else None}
        record["column_values"] = [
            {key: value[key] for key in ("id", "type", "text", "value")}
            for value in (column_value_json(ctx, board, c, item) for c in board.columns if c.type != "name")
        ]
        return record

    @staticmethod
    def _column(board: Board, column: str) -> Column:
        found = board.column(column) or next((c for c in board.columns if c.title == column), None)
        if found is None:
            raise KeyError(f"no column {column!r} on board {board.name!r}")
        return found


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items()
            if not key.startswith("_") and key not in ("owner", "owners", "creator", "subscribers")}  # fmt: skip


_UNDEFINED_FIELD = re.compile(r"^Cannot query field '(\w+)' on type '(\w+)'\.")
_UNKNOWN_ARGUMENT = re.compile(r"^Unknown argument '(\w+)' on field '(\w+)\.(\w+)'\.")
_MISSING_ARGUMENT = re.compile(r"^Field '(\w+)' argument '(\w+)' of type '.+' is required, but it was not provided\.")


def _validation_error(error: GraphQLError) -> dict[str, Any]:
    """A validation failure in monday's (graphql-ruby's) words and codes."""
    message, extensions = error.message, {"code": "GRAPHQL_VALIDATION_FAILED"}
    if match := _UNDEFINED_FIELD.match(error.message):
        field_name, type_name = match.groups()
        message = f"Field '{field_name}' doesn't exist on type '{type_name}'"
        extensions = {"code": "undefinedField", "typeName": type_name, "fieldName": field_name}
    elif match := _UNKNOWN_ARGUMENT.match(error.message):
        argument, type_name, field_name = match.groups()
        message = f"Field '{field_name}' doesn't accept argument '{argument}'"
        extensions = {"code": "argumentNotAccepted", "name": field_name, "typeName": "Field", "argumentName": argument}
    elif match := _MISSING_ARGUMENT.match(error.message):
        field_name, argument = match.groups()
        message = f"Field '{field_name}' is missing required arguments: {argument}"
        extensions = {"code": "missingRequiredArguments", "className": "Field", "name": field_name,
                      "arguments": argument}  # fmt: skip
    entry: dict[str, Any] = {"message": message}
    if error.locations:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    entry["extensions"] = extensions
    return entry


def _parse_error(error: GraphQLError) -> dict[str, Any]:
    detail = error.message.removeprefix("Syntax Error: ")
    entry: dict[str, Any] = {"message": f"Parse error: {detail}"}
    if error.locations:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    entry["extensions"] = {"code": "PARSE_ERROR"}
    return entry
