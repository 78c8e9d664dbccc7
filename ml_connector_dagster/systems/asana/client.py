"""The Asana REST API client: PAT or OAuth, typed, paged to the end, batched, webhooks by handshake.

Asana's traps, handled here so that no flow meets them:

- Bodies go out as ``{"data": {...}}`` and come back as ``{"data": ...}``; errors are
  ``{"errors": [{"message"}]}`` and end up in the :class:`~ml_connector_dagster.core.http.ApiError`
  detail. OAuth refresh tokens do not rotate; the token endpoint wants a form body.
- Lists are paged with ``limit`` (<= 100) and ``next_page.offset`` until ``next_page`` is null,
  never judged by a short page. Offsets expire: an expired one restarts the listing from the top,
  and records already yielded are not yielded twice.
- ``POST /batch`` takes 10 actions and answers each one on its own: :meth:`AsanaClient.batch`
  maps every answer back to the caller's index. The rate limit counts the request and each of its
  actions, so a batch spends 11 of the shared budget's tokens (the budget is in counted requests). Creates are not idempotent: an action answered 429
  (refused, nothing applied) is resent after ``Retry-After``, any other unanswered or 5xx create is
  ``in_doubt`` and is only retried after a lookup (:meth:`AsanaClient.ensure_tasks`).
- Search is premium-only (402) and eventually consistent: dedupe lists a project's tasks once
  with the external-id custom field instead (:meth:`AsanaClient.tasks_by_external_id`).
- Webhooks are confirmed by a handshake during ``POST /webhooks``: the receiver honours it only
  while :func:`~.webhook.expect_handshake` has armed it (:meth:`AsanaClient.register_webhook`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn, Self
from urllib.parse import quote

import httpx

from ml_connector_dagster.core import http as core_http
from ml_connector_dagster.core.http import (
    ApiError,
    ClientError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    TransportFailure,
    build_http_client,
    raise_for_api_error,
    rate_cost,
    rate_limiter_for,
    retry_after_seconds,
    retry_safe,
)
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.oauth import StaticTokenAuth, _AccessToken, _CachedBearerAuth
from ml_connector_dagster.core.vault import Vault

from .models import (
    BatchAction,
    BatchResult,
    CustomField,
    EnumOption,
    Job,
    Project,
    ProjectTemplate,
    Task,
    User,
    Webhook,
    Workspace,
)
from .webhook import (
    DEFAULT_HANDSHAKE_TTL,
    cancel_handshake,
    expect_handshake,
    forget_webhook,
    secret_name,
    target_url,
)

__all__ = [
    "BATCH_LIMIT",
    "PAGE_SIZE",
    "AsanaClient",
    "AsanaRefreshTokenAuth",
    "BatchInterrupted",
    "EnsureResult",
    "HandshakeFailed",
    "NotFoundByName",
    "OffsetExpired",
    "PremiumRequired",
    "create_task_action",
]

logger = logging.getLogger("ml_connector.asana")

SYSTEM = "asana"
API_PATH = "/api/1.0"
TOKEN_PATH = "/-/oauth_token"
BATCH_LIMIT = 10
PAGE_SIZE = 100
MAX_OFFSET_RESTARTS = 3
_THROTTLED_ATTEMPTS = 5
# A 429 is answered before anything is applied, so resending is always safe; a free workspace's
# 150 requests/min can refuse a long backfill for several windows in a row, each waited out via
# Retry-After by the shared limiter. Three rounds turned a busy minute into dead letters.
_RESEND_ROUNDS = 30
TASK_FIELDS = ("name", "notes", "completed", "completed_at", "created_at", "modified_at", "due_on", "assignee",
               "parent", "projects", "permalink_url", "num_subtasks", "custom_fields.name",
               "custom_fields.resource_subtype", "custom_fields.text_value", "custom_fields.number_value",
               "custom_fields.enum_value", "custom_fields.enum_value.name", "custom_fields.date_value",
               "custom_fields.display_value")
FIELD_FIELDS = ("name", "resource_subtype", "precision", "enum_options", "enum_options.name", "enum_options.enabled",
                "enum_options.color")


class PremiumRequired(ClientError):
    """402: the endpoint (search) needs a premium workspace."""


class OffsetExpired(ClientError):
    """A paging offset kept expiring, even after restarting the listing."""


class HandshakeFailed(ClientError):
    """Asana could not complete the webhook handshake with the receiver, so no webhook was created."""


class NotFoundByName(LookupError):
    """No project, template or custom field has the configured name."""


class BatchInterrupted(TransportFailure):
    """A batch request got no answer: its actions may or may not have been applied.

    ``results`` holds what the requests answered before it (by index); ``in_doubt`` the indexes of
    the unanswered request's non-idempotent actions (look them up before sending them again);
    ``not_sent`` the indexes that are safe to send again (never sent, or idempotent).
    """

    def __init__(self, cause: TransportFailure, *, results: list[BatchResult], in_doubt: list[int],
                 not_sent: list[int]) -> None:
        super().__init__(system=cause.system, method=cause.method, url=cause.url,
                         detail=f"{cause.detail}; {len(in_doubt)} action(s) in doubt, {len(not_sent)} not sent",
                         may_have_been_applied=cause.may_have_been_applied)
        self.results = results
        self.in_doubt = in_doubt
        self.not_sent = not_sent


class EnsureResult(Mapping[str, str]):
    """external id -> task gid for every record that exists now; ``created``/``failed`` say what happened."""

    def __init__(self) -> None:
        self.existing: dict[str, str] = {}
        self.created: dict[str, str] = {}
        self.failed: dict[str, BatchResult] = {}

    def __getitem__(self, key: str) -> str:
        return self.created.get(key) or self.existing[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.existing, **self.created})

    def __len__(self) -> int:
        return len({**self.existing, **self.created})

    def __repr__(self) -> str:
        return f"EnsureResult(existing={len(self.existing)}, created={len(self.created)}, failed={len(self.failed)})"


class _Borrowed(httpx.BaseTransport):
    """A transport lent to the token endpoint's short-lived clients, which must not close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        return None


class AsanaRefreshTokenAuth(_CachedBearerAuth):
    """Asana OAuth: a long-lived refresh token that does not rotate, exchanged (form body) for
    one-hour access tokens before they expire and once when the API answers 401."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, refresh_token: str, *,
                 transport: httpx.BaseTransport | None = None, refresh_margin_s: float = 60,
                 clock: Any = time.time) -> None:
        if not (client_id and client_secret and refresh_token):
            raise ValueError("Asana OAuth needs a client id, a client secret and a refresh token "
                             "(are ASANA_CLIENT_ID / ASANA_CLIENT_SECRET / ASANA_REFRESH_TOKEN set?)")
        super().__init__(token_url, system=SYSTEM, clock=clock, refresh_margin_s=refresh_margin_s, transport=transport)
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token

    def _fetch_token(self) -> _AccessToken:
        form = {"grant_type": "refresh_token", "client_id": self._client_id, "client_secret": self._client_secret,
                "refresh_token": self._refresh_token}
        secrets = (self._client_secret, self._refresh_token)
        issued_at = self._clock()
        # The refresh token survives its use, so asking twice is harmless: the POST may be retried.
        with self._token_client(secrets) as client:
            response = client.post(self._token_url, data=form, extensions=retry_safe())
            if response.status_code != 200:
                self._raise_token_error(response, secrets, " (consent again to get a new refresh token)")
            parsed = self._parse(response, secrets)
        return self._access_token(parsed, issued_at)

    def __repr__(self) -> str:
        return f"AsanaRefreshTokenAuth(token_url={self._token_url!r}, client_id={self._client_id!r})"


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, list):
        return "; ".join(f"{e.get('message')}" + (f" (phrase: {e['phrase']})" if e.get("phrase") else "")
                         for e in errors if isinstance(e, dict))
    return str(body.get("error_description") or body.get("error") or "")


def _raise_for_asana_error(response: httpx.Response, secrets: Sequence[str]) -> None:
    """Raise the ApiError matching a non-2xx ``response``, with Asana's messages as the detail."""
    if response.status_code < 400:
        return
    detail = _error_detail(response)
    fields: dict[str, Any] = {"system": SYSTEM, "status_code": response.status_code, "method": response.request.method,
                              "url": str(response.request.url), "detail": detail, "secrets": secrets}
    if response.status_code == 402:
        raise PremiumRequired(**fields)
    try:
        raise_for_api_error(response, SYSTEM, secrets)
    except ApiError as exc:
        if not detail:
            raise
        _reraise(exc, fields)


def _reraise(exc: ApiError, fields: dict[str, Any]) -> NoReturn:
    extra = {"retry_after_s": exc.retry_after_s} if isinstance(exc, RateLimited) else {}
    raise type(exc)(**fields, **extra) from None


def _opt(fields: Iterable[str]) -> str:
    return ",".join(fields)


def create_task_action(draft: Mapping[str, Any]) -> BatchAction:
    """The batch action that creates one task from ``draft`` (its fields), answering its name and custom
    fields' text (the external id the create is matched back by)."""
    return BatchAction(method="post", relative_path="/tasks", data=dict(draft),
                       options={"fields": ["name", "custom_fields.text_value"]})


class AsanaClient:
    """Asana REST API 1.0 over one ``httpx.Client`` from :func:`build_http_client` (system ``asana``).

    Build it with :meth:`connect_pat` or :meth:`connect_oauth`; use it as a context manager or call
    :meth:`close`. Every non-2xx answer raises the matching
    :class:`~ml_connector_dagster.core.http.ApiError` with Asana's messages in its detail.
    """

    def __init__(self, http: httpx.Client, limiter: RateLimiter, *, secrets: Sequence[str] = ()) -> None:
        """Wrap a client whose ``base_url`` ends in ``/api/1.0/``."""
        self._http = http
        self._limiter = limiter
        self._secrets = tuple(s for s in secrets if s)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def connect_pat(cls, base_url: str, pat: str, *, transport: httpx.BaseTransport | None = None,
                    timeout: httpx.Timeout | None = None, retry: RetryPolicy | None = None,
                    rate_limiter: RateLimiter | None = None) -> Self:
        """A personal access token against ``{base_url}/api/1.0/`` (base_url: https://app.asana.com)."""
        if not pat:
            raise ValueError("Asana PAT auth needs a token (is ASANA_PAT set?)")
        return cls._build(base_url, StaticTokenAuth(pat), (pat,), transport, timeout, retry, rate_limiter)

    @classmethod
    def connect_oauth(cls, base_url: str, client_id: str, client_secret: str, refresh_token: str, *,
                      token_url: str | None = None, transport: httpx.BaseTransport | None = None,
                      timeout: httpx.Timeout | None = None, retry: RetryPolicy | None = None,
                      rate_limiter: RateLimiter | None = None) -> Self:
        """OAuth 2.0: one-hour access tokens from ``{base_url}/-/oauth_token`` with the refresh token."""
        auth = AsanaRefreshTokenAuth(token_url or f"{base_url.rstrip('/')}{TOKEN_PATH}", client_id, client_secret,
                                     refresh_token, transport=_Borrowed(transport) if transport is not None else None)
        return cls._build(base_url, auth, (client_secret, refresh_token), transport, timeout, retry, rate_limiter)

    @classmethod
    def _build(cls, base_url: str, auth: httpx.Auth, secrets: tuple[str, ...],
               transport: httpx.BaseTransport | None, timeout: httpx.Timeout | None, retry: RetryPolicy | None,
               rate_limiter: RateLimiter | None) -> Self:
        limiter = rate_limiter or rate_limiter_for(SYSTEM)
        http = build_http_client(
            SYSTEM, f"{base_url.rstrip('/')}{API_PATH}/", auth=auth, transport=transport, timeout=timeout,
            retry=retry, rate_limiter=limiter, secrets=secrets, headers={"Accept": "application/json"},
        )
        return cls(http, limiter, secrets=secrets)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsanaClient(base_url={str(self._http.base_url)!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call the transport may retry (GET/PUT/DELETE); returns the ``data`` of the answer."""
        response = self._http.request(method, path, **kwargs)
        _raise_for_asana_error(response, self._secrets)
        return response.json().get("data") if response.content else None

    def _create(self, path: str, data: Mapping[str, Any], params: Mapping[str, str] | None = None) -> Any:
        """A non-idempotent POST: resent only after a 429, which Asana answers before applying anything."""
        for attempt in range(1, _THROTTLED_ATTEMPTS + 1):
            response = self._http.post(path, json={"data": dict(data)}, params=params)
            if response.status_code != 429 or attempt == _THROTTLED_ATTEMPTS:
                break
            wait = retry_after_seconds(response) or 0.0
            if wait > RetryPolicy().max_retry_after_s:
                break
            # The shared limiter has seen Retry-After and holds the resend back until then.
            logger.warning("asana: POST %s throttled (429); resending after %.1fs", path, wait)
        _raise_for_asana_error(response, self._secrets)
        return response.json().get("data")

    def _pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a list, following ``next_page`` until it is null (an expired offset restarts)."""
        base = {**(params or {}), "limit": str(PAGE_SIZE)}
        yielded: set[str] = set()
        offset: str | None = None
        restarts = 0
        while True:
            response = self._http.get(path, params={**base, **({"offset": offset} if offset else {})})
            if offset and response.status_code == 400 and "offset" in _error_detail(response).lower():
                restarts += 1
                if restarts > MAX_OFFSET_RESTARTS:
                    raise OffsetExpired(system=SYSTEM, status_code=400, method="GET", url=str(response.request.url),
                                        detail="the paging offset kept expiring", secrets=self._secrets)
                logger.warning("asana: paging offset of %s expired; listing again from the first page", path)
                offset = None
                continue
            _raise_for_asana_error(response, self._secrets)
            body = response.json()
            for record in body.get("data") or []:
                if record.get("gid") not in yielded:
                    yielded.add(record.get("gid"))
                    yield record
            next_offset = (body.get("next_page") or {}).get("offset")
            if not next_offset:
                return
            if next_offset == offset:
                raise ApiError(system=SYSTEM, method="GET", url=str(response.request.url),
                               detail="Asana repeated a paging offset; stopping instead of looping")
            offset = next_offset

    # -- workspace, users, projects ------------------------------------------------------------

    def me(self) -> User:
        """The user the credentials act as."""
        return User.model_validate(self._call("GET", "users/me", params={"opt_fields": "name,email"}))

    def workspaces(self) -> list[Workspace]:
        return [Workspace.model_validate(w) for w in self._pages("workspaces", {"opt_fields": "name,is_organization"})]

    def users(self, workspace_gid: str) -> list[User]:
        """The workspace's users with their e-mail addresses (read-only in Asana)."""
        params = {"workspace": workspace_gid, "opt_fields": "name,email"}
        return [User.model_validate(u) for u in self._pages("users", params)]

    def projects(self, workspace_gid: str, *, archived: bool | None = False) -> list[Project]:
        params = {"workspace": workspace_gid, "opt_fields": "name,archived,permalink_url,start_on,due_on"}
        if archived is not None:
            params["archived"] = str(archived).lower()
        return [Project.model_validate(p) for p in self._pages("projects", params)]

    def project(self, project_gid: str) -> Project:
        """One project by gid (``NotFound`` once deleted)."""
        return Project.model_validate(self._call("GET", f"projects/{quote(project_gid)}",
                                                 params={"opt_fields": "name,archived,permalink_url,start_on,due_on"}))

    def project_named(self, workspace_gid: str, name: str) -> Project:
        """The unarchived project called ``name`` (NotFoundByName if none)."""
        found = [p for p in self.projects(workspace_gid) if p.name == name]
        if not found:
            raise NotFoundByName(f"no Asana project named {name!r} in workspace {workspace_gid}")
        return found[0]

    # -- custom fields and enum options --------------------------------------------------------

    def custom_fields(self, workspace_gid: str) -> list[CustomField]:
        """The workspace's custom fields with every enum option (disabled ones included)."""
        pages = self._pages(f"workspaces/{quote(workspace_gid)}/custom_fields", {"opt_fields": _opt(FIELD_FIELDS)})
        return [CustomField.model_validate(f) for f in pages]

    def custom_field(self, field_gid: str) -> CustomField:
        return CustomField.model_validate(self._call("GET", f"custom_fields/{quote(field_gid)}",
                                                     params={"opt_fields": _opt(FIELD_FIELDS)}))

    def custom_fields_by_name(self, workspace_gid: str, names: Iterable[str]) -> dict[str, CustomField]:
        """The custom fields called ``names`` (NotFoundByName naming the missing ones)."""
        by_name = {f.name: f for f in self.custom_fields(workspace_gid)}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise NotFoundByName(f"no Asana custom field named {', '.join(map(repr, missing))}")
        return {n: by_name[n] for n in names}

    def add_enum_option(self, field_gid: str, name: str, *, color: str | None = None,
                        insert_after: str | None = None) -> EnumOption:
        """Add an enabled option to an enum field. Prefer :meth:`ensure_enum_option` (idempotent)."""
        data: dict[str, Any] = {"name": name}
        if color:
            data["color"] = color
        if insert_after:
            data["insert_after"] = insert_after
        return EnumOption.model_validate(self._create(f"custom_fields/{quote(field_gid)}/enum_options", data))

    def ensure_enum_option(self, field_gid: str, name: str, *, color: str | None = None) -> EnumOption:
        """The enabled option called ``name``: found, re-enabled if disabled, or added.

        A create whose answer was lost is looked up by name before it is sent again.
        """
        for attempt in range(2):
            custom_field = self.custom_field(field_gid)
            existing = custom_field.option_named(name, include_disabled=True)
            if existing is not None:
                return existing if existing.enabled else self.enable_enum_option(existing.gid)
            try:
                return self.add_enum_option(field_gid, name, color=color)
            except TransportFailure as exc:
                if not exc.may_have_been_applied or attempt == 1:
                    raise
                logger.warning("asana: adding option %r got no answer; looking it up before trying again", name)
        raise AssertionError("unreachable: the second round returns or raises")

    def _update_option(self, option_gid: str, data: Mapping[str, Any]) -> EnumOption:
        return EnumOption.model_validate(self._call("PUT", f"enum_options/{quote(option_gid)}", json={"data": dict(data)}))

    def rename_enum_option(self, option_gid: str, name: str) -> EnumOption:
        """Rename an option; tasks holding it show the new name."""
        return self._update_option(option_gid, {"name": name})

    def disable_enum_option(self, option_gid: str) -> EnumOption:
        """Disable an option: tasks keep it, but it can no longer be set."""
        return self._update_option(option_gid, {"enabled": False})

    def enable_enum_option(self, option_gid: str) -> EnumOption:
        return self._update_option(option_gid, {"enabled": True})

    # -- tasks ---------------------------------------------------------------------------------

    def get_task(self, task_gid: str, fields: Sequence[str] = TASK_FIELDS) -> Task:
        return Task.model_validate(self._call("GET", f"tasks/{quote(task_gid)}", params={"opt_fields": _opt(fields)}))

    def create_task(self, fields: Mapping[str, Any]) -> Task:
        """Create a task (``name``, ``projects``, ``custom_fields``...). Not retried but after a 429."""
        return Task.model_validate(self._create("tasks", fields, {"opt_fields": _opt(TASK_FIELDS)}))

    def create_subtask(self, parent_gid: str, fields: Mapping[str, Any]) -> Task:
        """Create a subtask; give it ``projects`` too if it should carry the project's custom fields."""
        return Task.model_validate(self._create(f"tasks/{quote(parent_gid)}/subtasks", fields,
                                                {"opt_fields": _opt(TASK_FIELDS)}))

    def update_task(self, task_gid: str, fields: Mapping[str, Any]) -> Task:
        """Change a task; ``custom_fields`` only touches the fields given (None clears one)."""
        data = self._call("PUT", f"tasks/{quote(task_gid)}", json={"data": dict(fields)},
                          params={"opt_fields": _opt(TASK_FIELDS)})
        return Task.model_validate(data)

    def delete_task(self, task_gid: str) -> None:
        self._call("DELETE", f"tasks/{quote(task_gid)}")

    def project_tasks(self, project_gid: str, fields: Sequence[str] = TASK_FIELDS, *,
                      completed_since: datetime | None = None) -> Iterator[Task]:
        """Every task of the project (subtasks not included), page after page."""
        params = {"opt_fields": _opt(fields)}
        if completed_since is not None:
            params["completed_since"] = _utc(completed_since)
        for raw in self._pages(f"projects/{quote(project_gid)}/tasks", params):
            yield Task.model_validate(raw)

    def tasks_modified_since(self, project_gid: str, since: datetime, fields: Sequence[str] = TASK_FIELDS) -> Iterator[Task]:
        """The project's tasks modified at or after ``since`` (polling for the return path)."""
        params = {"project": project_gid, "modified_since": _utc(since), "opt_fields": _opt(fields)}
        for raw in self._pages("tasks", params):
            yield Task.model_validate(raw)

    def subtasks(self, task_gid: str, fields: Sequence[str] = TASK_FIELDS) -> Iterator[Task]:
        for raw in self._pages(f"tasks/{quote(task_gid)}/subtasks", {"opt_fields": _opt(fields)}):
            yield Task.model_validate(raw)

    def tasks_by_external_id(self, project_gid: str, field_gid: str) -> dict[str, Task]:
        """The project's tasks keyed by the text of custom field ``field_gid`` (e.g. the Visma id).

        One listing of the project, no search (premium-only and eventually consistent). When two
        tasks carry one id the oldest (lowest gid) wins and a warning is logged.
        """
        fields = ("name", "completed", "modified_at", "custom_fields.text_value", "custom_fields.name")
        found: dict[str, Task] = {}
        for task in self.project_tasks(project_gid, fields):
            value = task.text(field_gid)
            if not value:
                continue
            current = found.get(value)
            if current is not None:
                logger.warning("asana: tasks %s and %s both carry external id %r", current.gid, task.gid, value)
                if int(current.gid) <= int(task.gid):
                    continue
            found[value] = task
        return found

    def search_tasks(self, workspace_gid: str, **filters: str) -> list[Task]:
        """Task search (``text=``, ``projects.any=``, ``custom_fields.<gid>.value=``...).

        Premium workspaces only (:class:`PremiumRequired` otherwise), and eventually consistent:
        never the way to find out whether a record was already written.
        """
        params = {**filters, "opt_fields": _opt(TASK_FIELDS)}
        data = self._call("GET", f"workspaces/{quote(workspace_gid)}/tasks/search", params=params)
        return [Task.model_validate(t) for t in data or []]

    # -- batch ---------------------------------------------------------------------------------

    def batch(self, actions: Sequence[BatchAction]) -> list[BatchResult]:
        """Run ``actions`` through ``POST /batch``, 10 per request; one result per action, by index.

        An action answered 429 was refused before anything happened and is resent once the
        ``Retry-After`` has passed; an idempotent action answered 5xx is resent too. A create
        answered 5xx comes back ``in_doubt``. A request that got no answer raises
        :class:`BatchInterrupted`.
        """
        results: dict[int, BatchResult] = {}
        pending = list(range(len(actions)))
        for round_ in range(1, _RESEND_ROUNDS + 2):
            resend: list[int] = []
            for start in range(0, len(pending), BATCH_LIMIT):
                chunk = pending[start : start + BATCH_LIMIT]
                try:
                    answered = self._batch_request([actions[i] for i in chunk], chunk)
                except TransportFailure as exc:
                    doubtful = [i for i in chunk if not actions[i].idempotent] if exc.may_have_been_applied else []
                    never = [i for i in chunk if i not in doubtful] + pending[start + BATCH_LIMIT :]
                    raise BatchInterrupted(exc, results=[results[i] for i in sorted(results)], in_doubt=doubtful,
                                           not_sent=sorted(never + resend)) from exc
                for result in answered:
                    retriable = result.status_code == 429 or (result.status_code >= 500 and actions[result.index].idempotent)
                    if retriable and round_ <= _RESEND_ROUNDS:
                        resend.append(result.index)
                    elif result.status_code >= 500 and not actions[result.index].idempotent:
                        results[result.index] = result.model_copy(update={"in_doubt": True})
                    else:
                        results[result.index] = result
            if not resend:
                break
            logger.warning("asana: resending %d batch action(s) refused with 429 or failed idempotently", len(resend))
            pending = sorted(resend)
        return [results[i] for i in range(len(actions))]

    def _batch_request(self, actions: list[BatchAction], indexes: list[int]) -> list[BatchResult]:
        safe = retry_safe() if all(a.idempotent for a in actions) else {}
        # Asana counts the batch request and each of its actions against the token's budget.
        extensions = {**safe, **rate_cost(1 + len(actions))}
        response = self._http.post("batch", json={"data": {"actions": [a.as_json() for a in actions]}},
                                   extensions=extensions)
        if response.status_code == 429 and not safe:
            # The whole request was refused before any action ran: nothing applied, so resend it.
            self._limiter.pause_for(retry_after_seconds(response) or 1.0)
            return [BatchResult(index=i, status_code=429, body=None) for i in indexes]
        _raise_for_asana_error(response, self._secrets)
        answers = response.json().get("data")
        if not isinstance(answers, list) or len(answers) != len(actions):
            raise ApiError(system=SYSTEM, status_code=response.status_code, method="POST", url=str(response.request.url),
                           detail=f"the batch answered {len(answers or [])} results for {len(actions)} actions")
        results = []
        for index, answer in zip(indexes, answers, strict=True):
            headers = {str(k).lower(): str(v) for k, v in (answer.get("headers") or {}).items()}
            result = BatchResult(index=index, status_code=int(answer.get("status_code") or 0), body=answer.get("body"),
                                 headers=headers)
            if result.status_code == 429:
                self._limiter.pause_for(float(headers.get("retry-after") or 1))
            results.append(result)
        return results

    def create_tasks(self, drafts: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Create tasks through the batch API; results by index (creates in doubt are marked so)."""
        return self.batch([create_task_action(d) for d in drafts])

    def update_tasks(self, updates: Mapping[str, Mapping[str, Any]]) -> dict[str, BatchResult]:
        """Update tasks (gid -> fields) through the batch API; results by task gid."""
        gids = list(updates)
        actions = [BatchAction(method="put", relative_path=f"/tasks/{quote(g)}", data=dict(updates[g]),
                               options={"fields": ["name", "modified_at"]}) for g in gids]
        return dict(zip(gids, self.batch(actions), strict=True))

    def read_tasks(self, task_gids: Sequence[str], fields: Sequence[str] = ("projects",)) -> dict[str, BatchResult]:
        """Read tasks through the batch API (10 a request); results by gid, a deleted task answered 404."""
        gids = list(dict.fromkeys(task_gids))
        actions = [BatchAction(method="get", relative_path=f"/tasks/{quote(g)}", options={"fields": list(fields)})
                   for g in gids]  # fmt: skip
        return dict(zip(gids, self.batch(actions), strict=True))

    def ensure_tasks(self, project_gid: str, external_id_field: str, drafts: Mapping[str, Mapping[str, Any]],
                     *, known: Mapping[str, str] | None = None,
                     find: Callable[[Sequence[str]], Mapping[str, str]] | None = None) -> EnsureResult:
        """Make sure one task per external id exists in the project, creating the missing ones.

        ``drafts``: external id -> task fields (``projects`` should include ``project_gid`` and
        ``custom_fields`` the external id under ``external_id_field``). ``known``: external id ->
        gid of the tasks the caller already knows to exist (it looked a moment ago); without it the
        ids are looked up first. ``find`` looks ids up as the project is now (default: a listing of
        the project, :meth:`tasks_by_external_id`). Creates whose outcome is in doubt are looked up
        again before they are sent again; refusals (4xx) end up in ``failed``.
        """
        look = find or (lambda keys: {key: task.gid for key, task in
                                      self.tasks_by_external_id(project_gid, external_id_field).items()})
        outcome = EnsureResult()
        existing = dict(known) if known is not None else dict(look(list(drafts)))
        outcome.existing = {k: gid for k, gid in existing.items() if k in drafts}
        missing = [k for k in drafts if k not in existing]
        for round_ in range(_RESEND_ROUNDS + 1):
            if not missing:
                break
            doubtful: list[str] = []
            try:
                results = self.create_tasks([drafts[k] for k in missing])
            except BatchInterrupted as exc:
                results = exc.results
                doubtful = [missing[i] for i in exc.in_doubt + exc.not_sent]
            for result in results:
                key = missing[result.index]
                if result.ok and isinstance(result.data, dict):
                    outcome.created[key] = str(result.data["gid"])
                elif result.in_doubt:
                    doubtful.append(key)
                else:
                    outcome.failed[key] = result
            if not doubtful or round_ == _RESEND_ROUNDS:
                for key in doubtful:
                    outcome.failed.setdefault(key, BatchResult(index=-1, status_code=0, in_doubt=True))
                break
            logger.warning("asana: %d create(s) in doubt; looking them up before sending them again", len(doubtful))
            found = look(doubtful)
            for key in doubtful:
                if key in found:
                    outcome.created[key] = found[key]
            missing = [k for k in doubtful if k not in found]
        return outcome

    # -- project templates and jobs ------------------------------------------------------------

    def project_templates(self, workspace_gid: str) -> list[ProjectTemplate]:
        params = {"workspace": workspace_gid, "opt_fields": "name,description"}
        return [ProjectTemplate.model_validate(t) for t in self._pages("project_templates", params)]

    def job(self, job_gid: str) -> Job:
        return Job.model_validate(self._call("GET", f"jobs/{quote(job_gid)}",
                                             params={"opt_fields": "status,new_project,new_project.name"}))

    def instantiate_project(self, template_gid: str, name: str, *, start_on: date | None = None,
                            team_gid: str | None = None, wait: bool = True, poll_s: float = 1.0,
                            timeout_s: float = 120.0) -> Project:
        """Create a project from a template; with ``wait`` return once its job has succeeded.

        Not retried (a lost answer may have created the project: look it up by name first).
        """
        data: dict[str, Any] = {"name": name}
        if team_gid:
            data["team"] = team_gid
        if start_on is not None:
            data["requested_dates"] = [{"gid": "1", "value": start_on.isoformat()}]
        job = Job.model_validate(self._create(f"project_templates/{quote(template_gid)}/instantiateProject", data,
                                              {"opt_fields": "status,new_project,new_project.name"}))
        deadline = time.monotonic() + timeout_s
        while wait and job.status in ("not_started", "in_progress"):
            if time.monotonic() > deadline:
                raise ApiError(system=SYSTEM, method="GET", url=f"jobs/{job.gid}",
                               detail=f"project instantiation still {job.status} after {timeout_s:.0f}s")
            core_http.default_sleep(poll_s)
            job = self.job(job.gid)
        if job.status == "failed" or job.new_project is None:
            raise ApiError(system=SYSTEM, method="GET", url=f"jobs/{job.gid}", detail=f"project instantiation {job.status}")
        return Project(gid=job.new_project.gid, name=job.new_project.name, resource_type="project")

    # -- webhooks ------------------------------------------------------------------------------

    def webhooks(self, workspace_gid: str, resource_gid: str | None = None) -> list[Webhook]:
        params = {"workspace": workspace_gid, "opt_fields": "resource,resource.name,target,active,created_at,"
                  "last_success_at,last_failure_at,last_failure_content,delivery_retry_count,filters"}
        if resource_gid:
            params["resource"] = resource_gid
        return [Webhook.model_validate(w) for w in self._pages("webhooks", params)]

    def register_webhook(self, resource_gid: str, receiver_url: str, ledger: Ledger, *,
                         handshake_ttl: timedelta = DEFAULT_HANDSHAKE_TTL,
                         filters: Sequence[Mapping[str, Any]] | None = None) -> Webhook:
        """Create a webhook on a project or task, delivering to the receiver at ``receiver_url``.

        The handshake is armed in the ledger (a fresh hook id in the target URL) right before
        ``POST /webhooks`` and disarmed right after, whatever the answer; the receiver vaults the
        secret when Asana's handshake arrives. :class:`HandshakeFailed` when Asana could not
        complete it (nothing was created).
        """
        hook = expect_handshake(ledger, ttl=handshake_ttl)
        data: dict[str, Any] = {"resource": resource_gid, "target": target_url(receiver_url, hook)}
        if filters:
            data["filters"] = [dict(f) for f in filters]
        try:
            response = self._http.post("webhooks", json={"data": data},
                                       params={"opt_fields": "resource,resource.name,target,active,created_at"})
        finally:
            cancel_handshake(ledger, hook)
        if response.status_code == 400 and "handshake" in _error_detail(response).lower():
            raise HandshakeFailed(system=SYSTEM, status_code=400, method="POST", url=str(response.request.url),
                                  detail=_error_detail(response), secrets=self._secrets)
        _raise_for_asana_error(response, self._secrets)
        # The answer repeats the handshake secret beside ``data``; only ``data`` is kept.
        return Webhook.model_validate(response.json()["data"])

    def delete_webhook(self, webhook: Webhook, vault: Vault | None = None) -> None:
        """Delete a webhook (and, given the vault, the secret its receiver kept)."""
        self._call("DELETE", f"webhooks/{quote(webhook.gid)}")
        if vault is not None and webhook.hook:
            forget_webhook(vault, webhook.hook)

    def ensure_webhook(self, workspace_gid: str, resource_gid: str, receiver_url: str, ledger: Ledger, vault: Vault,
                       **register: Any) -> Webhook:
        """Exactly one working webhook from ``resource_gid`` to the receiver, registered only if needed.

        A registration to this receiver is kept when it is active, the vault holds its secret and it
        has the ``filters`` asked for (``register``'s); duplicates, ones whose secret is lost (their
        deliveries would be refused) and ones filtering otherwise (an older release's) are deleted.
        Restarting the connector therefore never piles up webhooks.
        """
        route = target_url(receiver_url, "x").split("?", 1)[0]
        ours = sorted((w for w in self.webhooks(workspace_gid, resource_gid) if w.target.split("?", 1)[0] == route),
                      key=lambda w: int(w.gid))
        wanted = _filter_set(register.get("filters"))
        keep = next((w for w in ours if w.active and w.hook and vault.get(secret_name(w.hook))
                     and _filter_set(w.filters) == wanted), None)
        for webhook in ours:
            if webhook is not keep:
                logger.warning("asana: deleting webhook %s (duplicate, inactive or its secret is lost)", webhook.gid)
                self.delete_webhook(webhook, vault)
        return keep or self.register_webhook(resource_gid, receiver_url, ledger, **register)


def _filter_set(filters: Sequence[Mapping[str, Any]] | None) -> frozenset[str]:
    """Webhook filters compared as Asana holds them: order and absent keys do not matter."""
    return frozenset(json.dumps({k: sorted(v) if isinstance(v, list) else v for k, v in f.items() if v is not None},
                                sort_keys=True) for f in filters or ())


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("Asana filters need a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
