"""The simulator: routing under ``/api/1.0``, rate limits, ``POST /batch``, and the demo user's hand."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Simulator
from .calls import Answer, AsanaError, Call, Caller, Pager, ok
from .catalog import INSTANTIATE_DELAY_S, CatalogEndpoints
from .oauth import OAuthEndpoints
from .render import (
    TASK_OPT_IN,
    custom_field_json,
    error_body,
    job_json,
    project_json,
    task_json,
    template_json,
    user_json,
    webhook_json,
    workspace_json,
)
from .tasks import TaskEndpoints
from .tenant import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    Tenant,
    demo_pat,
    demo_refresh_token,
    demo_tenant,
)
from .webhooks import DELIVERY_TIMEOUT_S, AsanaDispatcher, WebhookEndpoints, retry_delays

API_PREFIX = "/api/1.0"
FREE_PER_MINUTE = 150
PAID_PER_MINUTE = 1500
SEARCH_PER_MINUTE = 60
CONCURRENT_READS = 50
CONCURRENT_WRITES = 15
BATCH_LIMIT = 10
_PHRASES = ("6 sad squid snuggle softly", "18 brave badgers bake bread", "3 quiet otters orbit oslo")
_TOO_MANY = "You have made too many requests recently. Please, be chill."


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Call], Answer]
    scope: str | None


class AsanaSimulator(OAuthEndpoints, CatalogEndpoints, TaskEndpoints, WebhookEndpoints, Simulator):
    """Asana's REST API for one organisation (see the package doc)."""

    name: ClassVar[str] = "asana"
    default_port: ClassVar[int] = 8805
    state_attributes: ClassVar[tuple[str, ...]] = (*Simulator.state_attributes, "tenant")

    def __init__(
        self,
        *,
        seed: int = 0,
        premium: bool = False,
        time_scale: float = 1.0,
        offset_ttl_s: float = 1800.0,
        index_delay_s: float = 10.0,
        instantiate_delay_s: float = INSTANTIATE_DELAY_S,
        service_time_s: float = 0.0,
        allow_loopback_targets: bool = True,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        redirect_uris: Sequence[str] = (DEMO_REDIRECT_URI,),
        webhook_transport: httpx.BaseTransport | None = None,
        start: datetime | None = None,
    ) -> None:
        """A fresh organisation.

        ``premium``: the workspace's plan (free: 150 requests/min and search answers 402; premium:
        1,500/min and search). ``time_scale`` shrinks every delay (job completion, the search
        index, webhook retries and their 10 s answer timeout). ``offset_ttl_s``: life of a paging
        offset. ``service_time_s``: how long each request holds its concurrency slot.
        ``allow_loopback_targets``: webhooks may target 127.0.0.1 (the sandbox receiver); the
        ``localhost`` hostname is refused as Asana does. ``webhook_transport``: where handshakes and
        deliveries go in-process (tests); by default over the network.
        """
        super().__init__(seed=seed)
        self.premium = premium
        self.time_scale = time_scale
        self.index_delay_s = index_delay_s
        self.instantiate_delay_s = instantiate_delay_s
        self.service_time_s = service_time_s
        self.allow_loopback_targets = allow_loopback_targets
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        if start is not None:
            self.clock.offset = start.timestamp() - self.clock.time()
        self.tenant: Tenant = demo_tenant(self.now())
        self.pats = {demo_pat(seed): self.tenant.me}
        self.demo_refresh_token = self._remember_refresh_token(demo_refresh_token(seed, client_secret), ("default",))
        secret = hashlib.sha256(f"asana-offsets:{seed}:{client_secret}".encode()).digest()
        self.pager = Pager(secret, self.clock.time, offset_ttl_s)
        self.outbox: dict[str, list[dict[str, Any]]] = {}
        self.delivery_hooks: dict[str, str] = {}
        self._minute: dict[str, deque[float]] = {}
        self._search_minute: dict[str, deque[float]] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        timeout = max(DELIVERY_TIMEOUT_S * time_scale, 1.0)
        self.dispatcher = AsanaDispatcher(self, self._delivery_outcome, retry_delays_s=retry_delays(),
                                          time_scale=time_scale, transport=webhook_transport, timeout_s=timeout)
        self.handshake_client = httpx.Client(transport=webhook_transport, timeout=timeout)
        self._routes = self._route_table()

    # -- the Simulator contract ----------------------------------------------------------------

    def credentials(self) -> dict[str, Any]:
        return {
            "pat": next(iter(self.pats)), "client_id": self.client_id, "client_secret": self.client_secret,
            "refresh_token": self.demo_refresh_token, "redirect_uri": self.redirect_uris[0],
            "workspace_gid": self.tenant.workspace_gid,
        }

    def secret_values(self) -> list[str]:
        return [*super().secret_values(), *self.pats, self.client_secret,
                *(w.secret for w in self.tenant.webhooks.values())]

    def state_identity(self) -> dict[str, Any]:
        secret = hashlib.sha256(self.client_secret.encode()).hexdigest()[:16]
        return {**super().state_identity(), "client_id": self.client_id, "client_secret": secret}

    def collections(self) -> dict[str, Any]:
        with self.lock:
            self._advance_jobs()
            t = self.tenant
            return {
                "workspaces": [workspace_json(t)],
                "users": [user_json(u, t) for u in t.users.values()],
                "projects": [project_json(p, t) for p in t.projects.values()],
                "custom_fields": [custom_field_json(f, t) for f in t.fields.values()],
                "project_templates": [template_json(p, t) for p in t.templates.values()],
                "tasks": [self._task_default(g) for g in t.tasks],
                "jobs": [job_json(j, t) for j in t.jobs.values()],
                "webhooks": [webhook_json(w, t) for w in t.webhooks.values()],
            }

    def rate_limited_response(self, retry_after_s: float) -> Response:
        return JSONResponse(error_body(_TOO_MANY), status_code=429,
                            headers={"Retry-After": str(max(1, int(retry_after_s + 0.999)))})

    def server_error_response(self, status_code: int) -> Response:
        return JSONResponse(error_body("Server Error", phrase=self._phrase()), status_code=status_code)

    def close(self) -> None:
        """Stop the webhook delivery thread."""
        self.dispatcher.close()
        self.handshake_client.close()

    def flush_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued delivery has succeeded or given up."""
        return self.dispatcher.flush(timeout_s)

    # -- what users do in Asana (tests, the demo) ----------------------------------------------

    def field_gid(self, name: str) -> str:
        """The gid of the custom field called ``name``."""
        return next(f.gid for f in self.tenant.fields.values() if f.name == name)

    def option_gid(self, field_name: str, option_name: str) -> str:
        """The gid of an enum option by field and option name."""
        custom_field = self.tenant.fields[self.field_gid(field_name)]
        return next(o.gid for o in custom_field.options if o.name == option_name)

    def project_gid(self, name: str) -> str:
        return next(p.gid for p in self.tenant.projects.values() if p.name == name)

    def template_gid(self, name: str = "PO project template") -> str:
        return next(t.gid for t in self.tenant.templates.values() if t.name == name)

    def edit_task(self, gid: str, *, user: str | None = None, **changes: Any) -> dict[str, Any]:
        """A team member edits a task in the UI (``completed=True``, ``custom_fields={...}``...); emits events."""
        with self.lock:
            task = self._task(gid)
            before = task.snapshot()
            self._apply(task, changes, creating=False)
            task.modified_at = self.clock.time()
            self._index(task)
            self._task_changed(task, before, user or self._other_user())
            self._flush_outbox()
            return self._task_default(gid)

    def comment(self, gid: str, text: str, *, user: str | None = None) -> str:
        """A team member comments on a task; emits the story event. Returns the story gid."""
        with self.lock:
            task = self._task(gid)
            story = self.tenant.mint()
            task.modified_at = self.clock.time()
            self._story_added(task, user or self._other_user(), story)
            self._flush_outbox()
            return story

    def send_heartbeats(self) -> None:
        """Asana's empty ``{"events": []}`` delivery, once to every webhook."""
        with self.lock:
            for webhook in list(self.tenant.webhooks.values()):
                self._deliver(webhook, [])

    def _other_user(self) -> str:
        return list(self.tenant.users)[3]

    def _task_default(self, gid: str) -> dict[str, Any]:
        return {k: v for k, v in task_json(self.tenant.tasks[gid], self.tenant).items() if k not in TASK_OPT_IN}

    def _expand(self, ref: dict[str, Any]) -> dict[str, Any] | None:
        """The full record behind a nested reference (users, projects, tasks)."""
        gid, kind, t = ref["gid"], ref.get("resource_type"), self.tenant
        if kind == "user" and gid in t.users:
            return user_json(t.users[gid], t)
        if kind == "project" and gid in t.projects:
            return project_json(t.projects[gid], t)
        if kind == "task" and gid in t.tasks:
            return task_json(t.tasks[gid], t)
        return None

    def _phrase(self) -> str:
        with self.lock:
            return _PHRASES[self._fault_rng.randrange(len(_PHRASES))]

    # -- routing -------------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        return [
            Route("/-/oauth_authorize", self._authorize, methods=["GET"]),
            Route("/-/oauth_token", self._token, methods=["POST"]),
            Route(API_PREFIX + "/{path:path}", self._api, methods=methods),
        ]

    def _route_table(self) -> list[_Route]:
        table: list[tuple[str, str, Callable[[Call], Answer], str | None]] = [
            ("POST", "/batch", self._batch, None),
            ("GET", "/workspaces", self._workspaces, "workspaces:read"),
            ("GET", "/workspaces/{workspace_gid}", self._workspace_get, "workspaces:read"),
            ("GET", "/users", self._users, "users:read"),
            ("GET", "/workspaces/{workspace_gid}/users", self._users, "users:read"),
            ("GET", "/users/{user_gid}", self._user_get, "users:read"),
            ("GET", "/projects", self._projects, "projects:read"),
            ("GET", "/workspaces/{workspace_gid}/projects", self._projects, "projects:read"),
            ("GET", "/projects/{project_gid}", self._project_get, "projects:read"),
            ("GET", "/projects/{project_gid}/custom_field_settings", self._project_fields, "projects:read"),
            ("GET", "/projects/{project_gid}/tasks", self._project_tasks, "tasks:read"),
            ("GET", "/workspaces/{workspace_gid}/custom_fields", self._custom_fields, "custom_fields:read"),
            ("GET", "/custom_fields/{custom_field_gid}", self._custom_field_get, "custom_fields:read"),
            ("POST", "/custom_fields/{custom_field_gid}/enum_options", self._enum_option_create, "custom_fields:write"),
            ("PUT", "/enum_options/{enum_option_gid}", self._enum_option_update, "custom_fields:write"),
            ("GET", "/project_templates", self._templates, "project_templates:read"),
            ("GET", "/teams/{team_gid}/project_templates", self._templates, "project_templates:read"),
            ("GET", "/project_templates/{project_template_gid}", self._template_get, "project_templates:read"),
            ("POST", "/project_templates/{project_template_gid}/instantiateProject", self._instantiate, "projects:write"),
            ("GET", "/jobs/{job_gid}", self._job_get, "jobs:read"),
            ("GET", "/tasks", self._tasks, "tasks:read"),
            ("POST", "/tasks", self._task_create, "tasks:write"),
            ("GET", "/tasks/{task_gid}", self._task_get, "tasks:read"),
            ("PUT", "/tasks/{task_gid}", self._task_update, "tasks:write"),
            ("DELETE", "/tasks/{task_gid}", self._task_delete, "tasks:delete"),
            ("GET", "/tasks/{task_gid}/subtasks", self._subtasks, "tasks:read"),
            ("POST", "/tasks/{task_gid}/subtasks", self._subtask_create, "tasks:write"),
            ("GET", "/workspaces/{workspace_gid}/tasks/search", self._search, "tasks:read"),
            ("GET", "/webhooks", self._webhook_list, "webhooks:read"),
            ("POST", "/webhooks", self._webhook_create, "webhooks:write"),
            ("GET", "/webhooks/{webhook_gid}", self._webhook_get, "webhooks:read"),
            ("PUT", "/webhooks/{webhook_gid}", self._webhook_update, "webhooks:write"),
            ("DELETE", "/webhooks/{webhook_gid}", self._webhook_delete, "webhooks:delete"),
        ]
        routes = []
        for method, template, handler, scope in table:
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            if template.endswith("{user_gid}"):
                regex = regex.replace("[^/]+", "(?:me|[^/]+)")
            routes.append(_Route(method, re.compile(f"^{regex}/?$"), handler, scope))
        return routes

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]]:
        known_path = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found:
                known_path = True
                if route.method == method:
                    return route, found.groupdict()
        raise AsanaError(405 if known_path else 404, "No matching route for request")

    # -- one request ---------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        caller = self._authenticate(request.headers.get("authorization"))
        if isinstance(caller, Answer):
            return _response(caller)
        retry_after = self._count(self._minute, caller.token_key, self._per_minute())
        if retry_after is not None:
            return self.rate_limited_response(retry_after)
        kind = "read" if request.method in ("GET", "HEAD") else "write"
        slot = (caller.token_key, kind)
        with self.lock:
            cap = CONCURRENT_READS if kind == "read" else CONCURRENT_WRITES
            if self._in_flight.get(slot, 0) >= cap:
                return self.rate_limited_response(1)
            self._in_flight[slot] = self._in_flight.get(slot, 0) + 1
        try:
            if self.service_time_s:
                await asyncio.sleep(self.service_time_s)
            raw = await request.body()
            try:
                body = _parse_body(raw, request.headers.get("content-type", ""))
            except ValueError:
                return _response(Answer(400, error_body("Could not parse request data, invalid JSON")))
            query: dict[str, list[str]] = {}
            for name, value in request.query_params.multi_items():
                query.setdefault(name, []).append(value)
            call = Call(caller, request.method, "/" + request.path_params["path"], {}, query, body,
                        str(request.base_url).rstrip("/") + API_PREFIX)
            answer = await asyncio.to_thread(self._dispatch, call)
        finally:
            with self.lock:
                self._in_flight[slot] -= 1
        return _response(answer)

    def _dispatch(self, call: Call) -> Answer:
        try:
            route, params = self._match(call.method, call.path)
            self._check_scope(call.caller, route.scope)
            call.params = params
            call.expand = self._expand
            if route.handler == self._batch:
                return self._batch(call)
            if route.handler == self._search:
                retry_after = self._count(self._search_minute, call.caller.token_key, SEARCH_PER_MINUTE)
                if retry_after is not None:
                    raise AsanaError(429, _TOO_MANY, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
            with self.lock:
                self._advance_jobs()
                try:
                    return route.handler(call)
                finally:
                    self._flush_outbox()
        except AsanaError as error:
            return error.answer()

    def _check_scope(self, caller: Caller, scope: str | None) -> None:
        if scope is None or "default" in caller.scopes or scope in caller.scopes:
            return
        raise AsanaError(403, f"Forbidden: this request needs the {scope} scope, which the token was not granted")

    def _per_minute(self) -> int:
        return PAID_PER_MINUTE if self.premium else FREE_PER_MINUTE

    def _count(self, windows: dict[str, deque[float]], key: str, limit: int) -> float | None:
        """Count one call in the token's 60 s window; the seconds to wait if over ``limit``.

        Refused calls count too, as at Asana: a client that keeps hammering stays locked out.
        """
        with self.lock:
            now = self.clock.time()
            window = windows.setdefault(key, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            window.append(now)
            if len(window) <= limit:
                return None
            return max(0.0, window[-limit] + 60 - now)

    # -- POST /batch ---------------------------------------------------------------------------

    def _batch(self, call: Call) -> Answer:
        """Up to 10 actions, run "in parallel": in an order shuffled by the fault seed, each on its own."""
        actions = call.data.get("actions")
        if not isinstance(actions, list) or not actions:
            raise AsanaError(400, "actions: Missing input")
        if len(actions) > BATCH_LIMIT:
            raise AsanaError(400, f"actions: Too many actions; a batch request takes at most {BATCH_LIMIT}")
        order = list(range(len(actions)))
        with self.lock:
            self._fault_rng.shuffle(order)
        results: list[dict[str, Any]] = [{}] * len(actions)
        for index in order:
            answer = self._action(call, actions[index])
            result = {"status_code": answer.status, "headers": {k.lower(): v for k, v in answer.headers.items()},
                      "body": answer.body}
            results[index] = result
        return ok(results)

    def _action(self, call: Call, action: Any) -> Answer:
        try:
            if not isinstance(action, dict) or not isinstance(action.get("relative_path"), str):
                raise AsanaError(400, "relative_path: Missing input")
            method = str(action.get("method", "")).upper()
            path = action["relative_path"]
            if method not in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"):
                raise AsanaError(400, f"method: Not a valid method: {action.get('method')}")
            if "?" in path or not path.startswith("/"):
                raise AsanaError(400, "relative_path: Must be a path relative to /api/1.0, without a query string")
            if path.rstrip("/") == "/batch":
                raise AsanaError(400, "relative_path: A batch request cannot contain another batch request")
            data, options = action.get("data") or {}, action.get("options") or {}
            if not isinstance(data, dict) or not isinstance(options, dict):
                raise AsanaError(400, "data: Not an object")
            retry_after = self._count(self._minute, call.caller.token_key, self._per_minute())
            if retry_after is not None:
                raise AsanaError(429, _TOO_MANY, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
            query = {k: [str(v)] for k, v in options.items() if k in ("limit", "offset")}
            if options.get("fields"):
                query["opt_fields"] = [",".join(map(str, options["fields"]))]
            if method in ("GET", "HEAD"):
                query.update({k: [str(v)] for k, v in data.items()})
            body = {"data": data} if method in ("POST", "PUT", "PATCH") else None
            inner = Call(call.caller, method, path, {}, query, body, call.base_url)
            faulty = self._faults_apply_to(method, path)
            if faulty and self.fault_roll(self.fault_plan.error_rate, "server_error_5xx"):
                return Answer(500, error_body("Server Error", phrase=self._phrase()))
            answer = self._dispatch(inner)
            if faulty and answer.status < 300 and self.fault_roll(self.fault_plan.timeout_after_rate, "timeout_after_apply"):
                # Applied, yet answered as failed: the client cannot know which.
                return Answer(500, error_body("Server Error", phrase=self._phrase()))
            return answer
        except AsanaError as error:
            return error.answer()


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "x-www-form-urlencoded" in content_type:
        # Asana takes form fields as the members of ``data``.
        return {"data": dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))}
    return json.loads(raw)


def _response(answer: Answer) -> Response:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
