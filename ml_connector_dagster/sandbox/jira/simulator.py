"""The simulator: one Jira Cloud site, its routes, rate limits, metadata and search endpoints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import random
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector_dagster.systems.jira import adf

from ..delivery import WebhookDispatcher
from ..framework import RateWindow, Simulator
from .issues import IssueEndpoints
from .jql import (
    JqlError,
    JqlSearch,
    parse_jql,
)
from .oauth import OAuthEndpoints
from .records import (
    AdminWebhook,
    Call,
    DynamicWebhook,
    Handler,
    Issue,
    error_body,
    jira_error,
)
from .render import (
    Rendering,
    field_selection,
)
from .site import (
    CLOUD_ID,
    CUSTOM_FIELDS,
    DEMO_API_TOKEN,
    DEMO_APP_SECRET,
    DEMO_CLIENT_ID,
    DEMO_EMAIL,
    DEMO_REDIRECT_URI,
    DEMO_SCOPES,
    DEMO_USER,
    DEMO_WEBHOOK_SECRET,
    ISSUE_TYPES,
    PAGE_TOKEN_TTL_S,
    PRIORITIES,
    PROJECTS,
    RECONCILE_LIMIT,
    REFRESH_TOKEN_IDLE_S,
    RESOLUTIONS,
    STATUSES,
    USERS,
    CustomField,
    IssueType,
    Project,
    jira_time,
)
from .webhooks import WebhookEndpoints


class JiraSimulator(OAuthEndpoints, IssueEndpoints, JqlSearch, WebhookEndpoints, Rendering, Simulator):
    """Jira Cloud REST v3 for one site, with 3LO, JQL, workflows and webhooks (see the module doc)."""

    name: ClassVar[str] = "jira"
    default_port: ClassVar[int] = 8804
    # Issues carry their comments, changelog and search-index versions; tokens their rotation state.
    # 2: an issue keeps its description as JSON text; 3: its search versions keep the issue as indexed
    state_version: ClassVar[int] = 3
    state_attributes: ClassVar[tuple[str, ...]] = (
        *Simulator.state_attributes, "issues", "keys", "webhooks", "admin_webhooks", "transition_log",
        "auth_codes", "id_counters",
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        webhook_url: str | None = None,
        app_secret: str = DEMO_APP_SECRET,
        index_delay_s: float = 2.0,
        time_scale: float = 1.0,
        burst_per_s: int = 100,
        refresh_reuse_window_s: float = 600.0,
        client_id: str = DEMO_CLIENT_ID,
        redirect_uris: Sequence[str] = (DEMO_REDIRECT_URI,),
        site_url: str | None = None,
        seed_issues: int = 6,
        webhook_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """A fresh site.

        ``webhook_url``: an admin webhook (all issue and comment events, ``X-Hub-Signature`` with the
        demo webhook secret) is configured to it. ``index_delay_s``: how long (sim clock, times
        ``time_scale``) a write stays invisible to JQL. ``time_scale`` also shrinks webhook retry
        delays. ``burst_per_s``: requests per second per endpoint and method before 429.
        ``refresh_reuse_window_s``: how long a rotated refresh token keeps working. ``seed_issues``:
        older issues already on the site. ``webhook_transport``: where deliveries go in-process
        (tests); by default they go over the network.
        """
        super().__init__(seed=seed, webhook_url=webhook_url)
        self.app_secret = app_secret
        self.client_id = client_id
        self.redirect_uris = tuple(redirect_uris)
        self.index_delay_s = index_delay_s
        self.time_scale = time_scale
        self.burst_per_s = burst_per_s
        self.refresh_reuse_window_s = refresh_reuse_window_s
        self.site_url = (site_url or f"http://127.0.0.1:{self.default_port}").rstrip("/")
        self.users = {u.account_id: u for u in USERS}
        self.statuses = {s.id: s for s in STATUSES}
        self.issue_types = {t.id: t for t in ISSUE_TYPES}
        self.custom_fields = {f.id: f for f in CUSTOM_FIELDS}
        self.projects = {p.key: p for p in PROJECTS}
        self.issues: dict[int, Issue] = {}
        self.keys: dict[str, int] = {}
        self.webhooks: dict[int, DynamicWebhook] = {}
        self.admin_webhooks: dict[int, AdminWebhook] = {}
        self.transition_log: list[dict[str, Any]] = []
        self.auth_codes: dict[str, dict[str, Any]] = {}
        self._rate_windows: dict[str, RateWindow] = {}
        self._ids = itertools.count(10000)
        self._comment_ids = itertools.count(10100)
        self._changelog_ids = itertools.count(10200)
        self._webhook_ids = itertools.count(1)
        self._project_counters = dict.fromkeys(self.projects, 0)
        rng = random.Random(seed)
        # Jira retries a failed delivery up to 5 times, minutes apart (scaled for tests).
        delays = tuple(round(rng.uniform(60, 300)) for _ in range(5))
        self.dispatcher = WebhookDispatcher(
            self, lambda body: {}, retry_delays_s=delays, time_scale=time_scale, transport=webhook_transport
        )
        self.demo_refresh_token = self._remember_token(
            demo_refresh_token(seed, app_secret),
            "refresh", REFRESH_TOKEN_IDLE_S, DEMO_SCOPES, client_id=client_id,
        )
        if webhook_url:
            self.add_admin_webhook(webhook_url, secret=DEMO_WEBHOOK_SECRET)
        self._seed_issues(rng, seed_issues)

    def credentials(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.app_secret,
            "cloud_id": CLOUD_ID,
            "redirect_uri": self.redirect_uris[0],
            "refresh_token": self.demo_refresh_token,
            "scopes": list(DEMO_SCOPES),
            "email": DEMO_EMAIL,
            "api_token": DEMO_API_TOKEN,
            "webhook_secret": DEMO_WEBHOOK_SECRET,
            "site_url": self.site_url,
            "account_id": DEMO_USER.account_id,
        }

    def secret_values(self) -> list[str]:
        return [*super().secret_values(), self.app_secret, DEMO_API_TOKEN, DEMO_WEBHOOK_SECRET,
                *(w.secret for w in self.admin_webhooks.values() if w.secret)]

    def collections(self) -> dict[str, Any]:
        with self.lock:
            base = self.site_url
            return {
                "issues": [self._issue_json(i, base, "UTC") for i in self.issues.values()],
                "projects": [self._project_json(p, base) for p in self.projects.values()],
                "fields": self._fields_json(),
                "issue_types": [self._issuetype_json(t, base) for t in self.issue_types.values()],
                "statuses": [self._status_json(s, base) for s in self.statuses.values()],
                "comments": [
                    {**self._comment_json(c, base, "UTC"), "issueKey": i.key}
                    for i in self.issues.values() for c in i.comments
                ],
                "webhooks": [self._webhook_json(w) for w in self._live_webhooks()],
                "admin_webhooks": [self._admin_webhook_json(w, base) for w in self.admin_webhooks.values()],
                "transitions": list(self.transition_log),
                "users": [self._user_json(u, base, email=True) for u in self.users.values()],
            }

    def rate_limited_response(self, retry_after_s: float) -> Response:
        seconds = max(1, int(retry_after_s + 0.999))
        return self._too_many_requests(seconds, "jira-burst-based")

    def server_error_response(self, status_code: int) -> Response:
        return jira_error(status_code, "Service temporarily unavailable. Please try again later.")

    def close(self) -> None:
        """Stop the webhook delivery thread."""
        self.dispatcher.close()

    def flush_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued webhook delivery has succeeded or given up."""
        return self.dispatcher.flush(timeout_s)

    @property
    def id_counters(self) -> dict[str, Any]:
        """The next value of every numbering series (issue, comment, changelog, webhook ids; issue keys)."""
        series = {}
        for attribute in _ID_SERIES:
            # A count cannot be peeked: take its next value and start a new count there.
            series[attribute] = next(getattr(self, attribute))
            setattr(self, attribute, itertools.count(series[attribute]))
        return {"series": series, "project_keys": dict(self._project_counters)}

    @id_counters.setter
    def id_counters(self, counters: dict[str, Any]) -> None:
        series = {attribute: int(counters["series"][attribute]) for attribute in _ID_SERIES}
        for attribute, next_value in series.items():
            setattr(self, attribute, itertools.count(next_value))
        self._project_counters = {**dict.fromkeys(self.projects, 0), **counters["project_keys"]}

    def state_identity(self) -> dict[str, Any]:
        # The app secret derives the demo refresh token; its digest tells a changed secret apart.
        app = hashlib.sha256(self.app_secret.encode()).hexdigest()[:16]
        return {**super().state_identity(), "client_id": self.client_id, "app_secret": app}

    def add_comment(self, key: str, text: str, author: str | None = None) -> dict[str, Any]:
        """A user comments on ``key`` (plain text, stored as ADF); emits comment_created."""
        with self.lock:
            issue = self._issue_or_raise(key)
            comment = self._add_comment(issue, adf.from_plain_text(text), self.users[author or USERS[1].account_id])
            return self._comment_json(comment, self.site_url, "UTC")

    def resolve_issue(self, key: str, resolution: str = "Done", author: str | None = None) -> None:
        """A user moves ``key`` to its workflow's done status with ``resolution``; emits the webhook."""
        with self.lock:
            issue = self._issue_or_raise(key)
            done = next(t for t in issue.project.workflow.transitions if t.resolves)
            resolution_id = next((rid for rid, name in RESOLUTIONS.items() if name == resolution), None)
            if resolution_id is None:
                raise ValueError(f"unknown resolution {resolution!r}")
            if issue.status_id != done.to:
                self._apply_transition(issue, done, self.users[author or USERS[1].account_id], resolution_id)

    def set_status(self, key: str, status_name: str, author: str | None = None) -> None:
        """A user moves ``key`` to ``status_name`` by the transition that leads there; emits the webhook."""
        with self.lock:
            issue = self._issue_or_raise(key)
            transition = next(
                (t for t in issue.project.workflow.transitions if self.statuses[t.to].name == status_name), None
            )
            if transition is None:
                raise ValueError(f"no transition of {issue.project.key}'s workflow leads to {status_name!r}")
            if issue.status_id != transition.to:
                self._apply_transition(issue, transition, self.users[author or USERS[1].account_id], None)

    def reindex(self) -> None:
        """Let the search index catch up with every write now."""
        with self.lock:
            now = self.clock.time()
            for issue in self.issues.values():
                self._record_version(issue, now, only=True)

    def add_admin_webhook(
        self,
        url: str,
        *,
        secret: str | None = DEMO_WEBHOOK_SECRET,
        events: Sequence[str] = ("jira:issue_created", "jira:issue_updated", "jira:issue_deleted",
                                 "comment_created", "comment_updated", "comment_deleted"),
        jql: str = "",
        name: str = "ml-connector",
    ) -> int:
        """An admin configures a webhook (System > WebHooks) with a secret: X-Hub-Signature deliveries."""
        if jql:
            self._check_jql(parse_jql(jql), DEMO_USER)
        with self.lock:
            webhook_id = next(self._webhook_ids)
            self.admin_webhooks[webhook_id] = AdminWebhook(
                webhook_id, name, url, list(events), jql, secret, self.clock.time()
            )
            return webhook_id

    def issue(self, key: str) -> dict[str, Any]:
        """``key`` as GET /issue returns it (UTC timestamps)."""
        with self.lock:
            return self._issue_json(self._issue_or_raise(key), self.site_url, "UTC")

    def _issue_or_raise(self, key: str) -> Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise KeyError(key)
        return issue

    def vendor_routes(self) -> list[BaseRoute]:
        api: list[tuple[str, str, Handler, str | None]] = [
            ("GET", "/myself", self._myself, "read:jira-user"),
            ("GET", "/serverInfo", self._server_info, None),
            ("GET", "/project/search", self._project_search, "read:jira-work"),
            ("GET", "/project", self._project_list, "read:jira-work"),
            ("GET", "/project/{project}", self._project_get, "read:jira-work"),
            ("GET", "/issuetype", self._issuetype_list, "read:jira-work"),
            ("GET", "/status", self._status_list, "read:jira-work"),
            ("GET", "/resolution", self._resolution_list, "read:jira-work"),
            ("GET", "/priority", self._priority_list, "read:jira-work"),
            ("GET", "/field", self._field_list, "read:jira-work"),
            ("GET", "/user/search", self._user_search, "read:jira-user"),
            ("GET", "/users/search", self._users_all, "read:jira-user"),
            ("GET", "/issue/createmeta/{project}/issuetypes", self._createmeta_types, "read:jira-work"),
            ("GET", "/issue/createmeta/{project}/issuetypes/{type_id}", self._createmeta_fields, "read:jira-work"),
            ("POST", "/issue/bulk", self._issue_bulk, "write:jira-work"),
            ("POST", "/issue", self._issue_create, "write:jira-work"),
            ("GET", "/issue/{key}", self._issue_get, "read:jira-work"),
            ("PUT", "/issue/{key}", self._issue_edit, "write:jira-work"),
            ("DELETE", "/issue/{key}", self._issue_delete, "write:jira-work"),
            ("GET", "/issue/{key}/comment", self._comment_list, "read:jira-work"),
            ("POST", "/issue/{key}/comment", self._comment_create, "write:jira-work"),
            ("GET", "/issue/{key}/transitions", self._transition_list, "read:jira-work"),
            ("POST", "/issue/{key}/transitions", self._transition_do, "write:jira-work"),
            ("GET", "/search/jql", self._search, "read:jira-work"),
            ("POST", "/search/jql", self._search, "read:jira-work"),
            ("POST", "/search/approximate-count", self._approximate_count, "read:jira-work"),
            ("GET", "/webhook", self._webhook_list, "manage:jira-webhook"),
            ("POST", "/webhook", self._webhook_register, "manage:jira-webhook"),
            ("DELETE", "/webhook", self._webhook_delete, "manage:jira-webhook"),
            ("PUT", "/webhook/refresh", self._webhook_refresh, "manage:jira-webhook"),
        ]
        admin: list[tuple[str, str, Handler, str | None]] = [
            ("GET", "/webhook", self._admin_webhook_list, "manage:jira-configuration"),
            ("POST", "/webhook", self._admin_webhook_create, "manage:jira-configuration"),
            ("DELETE", "/webhook/{webhook_id}", self._admin_webhook_delete, "manage:jira-configuration"),
        ]
        routes: list[BaseRoute] = [
            Route("/authorize", self._authorize, methods=["GET"]),
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/oauth/token/accessible-resources", self._accessible_resources, methods=["GET"]),
        ]
        for prefix in ("/ex/jira/{cloud_id}", ""):
            routes.append(Route(f"{prefix}/rest/api/3/search", self._search_removed, methods=["GET", "POST"]))
            for method, path, handler, scope in api:
                routes.append(Route(f"{prefix}/rest/api/3{path}", self._endpoint(handler, scope, path), methods=[method]))
            for method, path, handler, scope in admin:
                routes.append(
                    Route(f"{prefix}/rest/webhooks/1.0{path}", self._endpoint(handler, scope, path), methods=[method])
                )
        return routes

    def _endpoint(self, handler: Handler, scope: str | None, template: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            caller = self._authenticate(request, scope)
            if isinstance(caller, Response):
                return caller
            window = self._rate_window(f"{request.method} {template}")
            allowed, remaining, reset = window.hit()
            if not allowed:
                return self._too_many_requests(max(1, int(reset + 0.999)), "jira-burst-based")
            raw = await request.body()
            body: Any = None
            if raw:
                try:
                    body = orjson.loads(raw)  # strict as Jira's own parser: no NaN, no lone surrogates
                except ValueError:
                    return jira_error(400, "Invalid request payload. Refer to the REST API documentation and try again.")
            query: dict[str, list[str]] = {}
            for name, value in request.query_params.multi_items():
                query.setdefault(name, []).append(value)
            params = {k: v for k, v in request.path_params.items() if k != "cloud_id"}
            with self.lock:
                response = handler(Call(caller, params, query, body))
            response.headers["X-RateLimit-Limit"] = str(window.limit)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
            if remaining < window.limit * 0.2:
                response.headers["X-RateLimit-NearLimit"] = "true"
            return response

        return endpoint

    def _rate_window(self, key: str) -> RateWindow:
        with self.lock:
            window = self._rate_windows.get(key)
            if window is None:
                window = self._rate_windows[key] = RateWindow(self.burst_per_s, 1.0, self.clock)
            return window

    def _too_many_requests(self, seconds: int, reason: str) -> Response:
        reset = (self.now() + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%MZ")
        return JSONResponse(
            error_body(["Rate limit exceeded."]),
            status_code=429,
            headers={
                "Retry-After": str(seconds),
                "X-RateLimit-Limit": str(self.burst_per_s),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset,
                "RateLimit-Reason": reason,
            },
        )

    async def _search_removed(self, request: Request) -> Response:
        return jira_error(
            410,
            "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
            "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046",
        )

    def _find_project(self, ref: Any) -> Project | None:
        ref = str(ref)
        return self.projects.get(ref.upper()) or next((p for p in self.projects.values() if p.id == ref), None)

    def _find_issue(self, ref: str) -> Issue | None:
        if ref.isdigit():
            return self.issues.get(int(ref))
        issue_id = self.keys.get(ref.upper())
        return self.issues.get(issue_id) if issue_id is not None else None

    def _custom_field_by_clause(self, name: str) -> CustomField | None:
        match = re.fullmatch(r"cf\[(\d+)\]", name, re.I)
        if match:
            return self.custom_fields.get(f"customfield_{match[1]}")
        lowered = name.lower()
        if lowered.startswith("customfield_"):
            return self.custom_fields.get(lowered)
        return next((f for f in self.custom_fields.values() if f.name.lower() == lowered), None)

    def _seed_issues(self, rng: random.Random, count: int) -> None:
        topics = [
            ("FIN", "Q4 accrual review for freight costs", "10001"),
            ("FIN", "Update bank details for Lindqvist Logistik AB", "10001"),
            ("PROC", "Frame agreement renewal: Nordic Steel Oy", "10001"),
            ("ACU", "Vendor master data: duplicate entry for Fjord Paper AS", "10004"),
            ("FIN", "Reconcile supplier statement: Hansen Elektro A/S", "10001"),
            ("PROC", "Price list update from Baltic Bearings UAB", "10001"),
        ]
        start = self.clock.time() - 14 * 86400
        for n in range(count):
            project_key, summary, type_id = topics[n % len(topics)]
            reporter = rng.choice(USERS[1:]).account_id
            created = start + n * 3600 * 7 + rng.randint(0, 3600)
            issue = self._new_issue(self.projects[project_key], self.issue_types[type_id], summary, reporter, created)
            issue.description = adf.from_plain_text(f"{summary}.\n\nOpened by the finance team.")
            self._record_version(issue, created, only=True)

    def _new_issue(self, project: Project, issuetype: IssueType, summary: str, reporter: str, now: float) -> Issue:
        self._project_counters[project.key] += 1
        issue = Issue(
            id=next(self._ids),
            key=f"{project.key}-{self._project_counters[project.key]}",
            project=project,
            issuetype=issuetype,
            status_id=project.workflow.initial,
            summary=summary,
            reporter=reporter,
            creator=reporter,
            created=now,
            updated=now,
            status_changed=now,
        )
        self.issues[issue.id] = issue
        self.keys[issue.key] = issue.id
        return issue

    def _reindex_later(self, issue: Issue) -> None:
        delay = self.index_delay_s
        lagging = self.fault_plan.search_index_delay_s
        if lagging is not None and lagging > delay:  # an index falling behind: counted as a fault
            delay = lagging
            self.count_fault("search_index_delay")
        self._record_version(issue, self.clock.time() + delay * self.time_scale)

    def _indexed(self, issue: Issue, now: float) -> tuple[dict[str, Any], Issue] | None:
        """The newest version of ``issue`` the search index holds at ``now``: what JQL matches, and the
        issue as a search answers it (None: not indexed yet)."""
        visible = [(snap, answer) for at, snap, answer in issue.versions if at <= now]
        return visible[-1] if visible else None

    def _myself(self, call: Call) -> Response:
        body = self._user_json(call.caller.user, call.caller.api_base, email=True)
        body.update({
            "locale": "en_US",
            "groups": {"size": 3, "items": []},
            "applicationRoles": {"size": 1, "items": []},
            "expand": "groups,applicationRoles",
        })
        return JSONResponse(body)

    def _server_info(self, call: Call) -> Response:
        return JSONResponse({
            "baseUrl": self.site_url,
            "displayUrl": self.site_url,
            "version": "1001.0.0-SNAPSHOT",
            "versionNumbers": [1001, 0, 0],
            "deploymentType": "Cloud",
            "buildNumber": 100283,
            "buildDate": "2026-11-01T00:00:00.000+0000",
            "serverTime": jira_time(self.clock.time(), call.caller.user.time_zone),
            "scmInfo": "57a0ca5b4a0bb0ac5f3fee4764acb1c14e4d7e71",
            "serverTitle": "Jira",
        })

    def _project_search(self, call: Call) -> Response:
        start, size = self._paging(call, default=50, cap=100)
        wanted_keys = {k.upper() for k in call.args("keys")}
        text = (call.arg("query") or "").lower()
        projects = [
            p for p in sorted(self.projects.values(), key=lambda p: p.key)
            if (not wanted_keys or p.key in wanted_keys) and (not text or text in p.key.lower() or text in p.name.lower())
        ]
        page = projects[start : start + size]
        base = call.caller.api_base
        body: dict[str, Any] = {
            "self": f"{base}/rest/api/3/project/search?startAt={start}&maxResults={size}",
            "maxResults": size,
            "startAt": start,
            "total": len(projects),
            "isLast": start + size >= len(projects),
            "values": [self._project_json(p, base) for p in page],
        }
        if not body["isLast"]:
            body["nextPage"] = f"{base}/rest/api/3/project/search?startAt={start + size}&maxResults={size}"
        return JSONResponse(body)

    def _project_list(self, call: Call) -> Response:
        return JSONResponse([self._project_json(p, call.caller.api_base) for p in self.projects.values()])

    def _project_get(self, call: Call) -> Response:
        project = self._find_project(call.params["project"])
        if project is None:
            return jira_error(404, f"No project could be found with key '{call.params['project']}'.")
        return JSONResponse(self._project_json(project, call.caller.api_base, expanded=True))

    def _issuetype_list(self, call: Call) -> Response:
        return JSONResponse([self._issuetype_json(t, call.caller.api_base) for t in self.issue_types.values()])

    def _status_list(self, call: Call) -> Response:
        return JSONResponse([self._status_json(s, call.caller.api_base) for s in self.statuses.values()])

    def _resolution_list(self, call: Call) -> Response:
        return JSONResponse([self._resolution_json(r, call.caller.api_base) for r in RESOLUTIONS])

    def _priority_list(self, call: Call) -> Response:
        return JSONResponse([self._priority_json(p, call.caller.api_base) for p in PRIORITIES])

    def _field_list(self, call: Call) -> Response:
        return JSONResponse(self._fields_json())

    def _user_search(self, call: Call) -> Response:
        text = (call.arg("query") or "").lower()
        account_id = call.arg("accountId")
        if not text and not account_id:
            return jira_error(400, "The query parameter 'query' or 'accountId' is required.")
        users = [
            u for u in self.users.values()
            if (account_id and u.account_id == account_id)
            or (text and any(part.startswith(text) for part in [u.display_name.lower(), *u.display_name.lower().split(), u.email]))
        ]
        start, size = self._paging(call, default=50, cap=1000)
        return JSONResponse([self._user_json(u, call.caller.api_base) for u in users[start : start + size]])

    def _users_all(self, call: Call) -> Response:
        start, size = self._paging(call, default=50, cap=1000)
        users = list(self.users.values())[start : start + size]
        return JSONResponse([self._user_json(u, call.caller.api_base) for u in users])

    def _createmeta_types(self, call: Call) -> Response:
        project = self._find_project(call.params["project"])
        if project is None:
            return jira_error(404, f"No project could be found with key '{call.params['project']}'.")
        types = [self._issuetype_json(self.issue_types[t], call.caller.api_base) for t in project.issue_types]
        return JSONResponse({"maxResults": 50, "startAt": 0, "total": len(types), "issueTypes": types})

    def _createmeta_fields(self, call: Call) -> Response:
        project = self._find_project(call.params["project"])
        if project is None:
            return jira_error(404, f"No project could be found with key '{call.params['project']}'.")
        type_id = call.params["type_id"]
        if type_id not in project.issue_types:
            return jira_error(404, f"Issue type with id '{type_id}' does not exist or is not valid for project '{project.key}'.")
        base = call.caller.api_base
        required = {"summary", "issuetype", "project", "reporter"} | ({"parent"} if self.issue_types[type_id].subtask else set())
        ids = ["summary", "issuetype", "parent", "project", "description", "reporter", "assignee", "priority",
               "labels", "duedate", *project.custom_fields]
        if not self.issue_types[type_id].subtask:
            ids.remove("parent")
        fields = []
        for fid in ids:
            meta: dict[str, Any] = {
                "required": fid in required,
                "schema": self._field_schema(fid),
                "name": self._field_name(fid),
                "key": fid,
                "fieldId": fid,
                "hasDefaultValue": fid in {"priority", "reporter"},
                "operations": ["add", "set", "remove"] if fid == "labels" else ["set"],
            }
            if fid == "project":
                meta["allowedValues"] = [self._project_json(project, base)]
            elif fid == "issuetype":
                meta["allowedValues"] = [self._issuetype_json(self.issue_types[type_id], base)]
            elif fid == "priority":
                meta["allowedValues"] = [self._priority_json(p, base) for p in PRIORITIES]
                meta["defaultValue"] = self._priority_json("3", base)
            elif fid in {"assignee", "reporter"}:
                meta["autoCompleteUrl"] = f"{base}/rest/api/3/user/search?query="
            fields.append(meta)
        return JSONResponse({"maxResults": 50, "startAt": 0, "total": len(fields), "fields": fields})

    @staticmethod
    def _paging(call: Call, *, default: int, cap: int) -> tuple[int, int]:
        try:
            start = max(0, int(call.arg("startAt", "0") or 0))
            size = int(call.arg("maxResults", str(default)) or default)
        except ValueError:
            start, size = 0, default
        return start, max(1, min(size, cap))

    def _search(self, call: Call) -> Response:
        if isinstance(call.body, dict):
            body = call.body
            allowed = {"jql", "nextPageToken", "maxResults", "fields", "expand", "properties", "fieldsByKeys",
                       "reconcileIssues"}
            if set(body) - allowed or not isinstance(body.get("fields", []), list):
                return jira_error(400, "Invalid request payload. Refer to the REST API documentation and try again.")
            jql = body.get("jql")
            page_token = body.get("nextPageToken")
            max_results = body.get("maxResults", 50)
            field_spec = [f.strip() for raw in body.get("fields", []) for f in str(raw).split(",") if f.strip()]
            reconcile = body.get("reconcileIssues") or []
            expand = [e.strip() for e in str(body.get("expand") or "").split(",") if e.strip()]
        else:
            jql = call.arg("jql")
            page_token = call.arg("nextPageToken")
            max_results = call.arg("maxResults", "50")
            field_spec = call.args("fields")
            reconcile = call.args("reconcileIssues")
            expand = call.args("expand")
        try:
            max_results = int(max_results)
            reconcile_ids = {int(i) for i in reconcile}
        except (TypeError, ValueError):
            return jira_error(400, "Invalid request payload. Refer to the REST API documentation and try again.")
        if len(reconcile_ids) > RECONCILE_LIMIT:
            return jira_error(400, f"reconcileIssues accepts at most {RECONCILE_LIMIT} issue ids.")
        try:
            matches = self._run_jql(jql, call.caller.user, reconcile_ids)
        except JqlError as exc:
            return jira_error(400, str(exc))
        ids_only = set(field_spec) <= {"id"}
        cap = 5000 if set(field_spec) <= {"id", "key"} else 100
        size = max(1, min(max_results, cap))
        fingerprint = hashlib.sha256(f"{jql}|{sorted(field_spec)}".encode()).hexdigest()[:16]
        start = 0
        if page_token:
            start = self._read_page_token(str(page_token), fingerprint)
            if start is None:
                return jira_error(400, "The provided next page token is invalid or expired.")
        page = matches[start : start + size]
        base = call.caller.api_base
        if ids_only:
            issues = [{"id": str(i.id)} for i in page]
        else:
            selection = field_selection(field_spec, default_all=False)
            tz = call.caller.user.time_zone
            issues = [self._issue_json(i, base, tz, selection, expand) for i in page]
        result: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(matches)}
        if not result["isLast"]:
            result["nextPageToken"] = self._page_token(fingerprint, start + size)
        return JSONResponse(result)

    def _approximate_count(self, call: Call) -> Response:
        jql = call.body.get("jql") if isinstance(call.body, dict) else None
        try:
            return JSONResponse({"count": len(self._run_jql(jql, call.caller.user, set()))})
        except JqlError as exc:
            return jira_error(400, str(exc))

    def _page_token(self, fingerprint: str, offset: int) -> str:
        raw = json.dumps({"q": fingerprint, "o": offset, "t": int(self.clock.time())}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_page_token(self, token: str, fingerprint: str) -> int | None:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if data["q"] != fingerprint or self.clock.time() - data["t"] > PAGE_TOKEN_TTL_S:
                return None
            return int(data["o"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None


_ID_SERIES = ("_ids", "_comment_ids", "_changelog_ids", "_webhook_ids")


def demo_refresh_token(seed: int = 0, app_secret: str = DEMO_APP_SECRET) -> str:
    """The pre-consented refresh token a fresh simulator with this seed accepts (the demo's first one)."""
    return f"demo-refresh-{hashlib.sha256(f'{seed}:{app_secret}'.encode()).hexdigest()[:40]}"


def sandbox_credentials(seed: int = 0) -> dict[str, str]:
    """What :meth:`JiraSimulator.credentials` answers for a fresh simulator with ``seed``, without building one."""
    return {
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_APP_SECRET,
        "refresh_token": demo_refresh_token(seed),
        "email": DEMO_EMAIL,
        "api_token": DEMO_API_TOKEN,
        "webhook_secret": DEMO_WEBHOOK_SECRET,
    }
