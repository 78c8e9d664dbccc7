"""The Acumatica contract-based REST API, as the connector uses it: OAuth password grant with a
refresh token kept in the vault, paged reads of changed records, PUT upserts and actions.

The traps this client exists to avoid (see API_NOTES.md):

- **The endpoint version is pinned** in every URL (``/entity/Default/24.200.001/...``, from config);
  another version answers 404, raised as :class:`EndpointNotFound` naming the configured one.
- **API users are licensed** (a trial allows 2). Every password grant opens a session that holds a
  slot until it idles out, so a client that signs in per run locks everyone out. This one signs in
  once and keeps the refresh token (``offline_access``) in a :class:`~ml_connector_dagster.core.oauth.TokenStore`
  (the vault); later runs and processes refresh, which reuses the same session. Refresh tokens
  rotate: each new one is saved before it is used; a spent one found in the store means another
  process rotated first, so the store is read again before falling back to a fresh sign-in.
  A refused sign-in raises :class:`ApiUserLimitReached`.
- **Value objects**: records go through :func:`.models.to_wire`/:func:`.models.from_wire` only.
- **Filters**: ``LastModifiedDateTime ge datetimeoffset'<UTC, ms, explicit offset>'`` — never a
  ``datetime'...'`` literal, which the server reads in its own zone. The filter has a lower bound
  only and ``until`` is applied here: with an upper bound, a record modified while the pages are
  read would leave the result and shift every later record one place up, past ``$skip``.
- **Paging**: ``$top``/``$skip`` until a short page; there is no total count, lists are ordered by
  key, and a record seen twice in one pass (an insert shifted the pages) is yielded once.
- **Actions are not idempotent**: ``invoke_action`` is never retried once sent; a lost answer
  raises :class:`TransportFailure` with ``may_have_been_applied``, and the caller must read the
  document's status before invoking again. ``action_status`` polls the ``Location`` of a 202.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from secrets import token_hex
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import httpx

from ml_connector_dagster.core.http import (
    ApiError,
    AuthenticationFailed,
    ClientError,
    NotFound,
    RateLimiter,
    RetryPolicy,
    build_http_client,
    pipelined_pages,
    raise_for_api_error,
    rate_limiter_for,
)

# The shared bearer-token machinery (cached token, one refresh at a time, replay after a 401);
# only how a token is obtained is Acumatica's.
from ml_connector_dagster.core.oauth import SwappingTokenStore, TokenStore, _CachedBearerAuth

from .models import field_errors, parse_moment, to_wire

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_SCOPE",
    "DEFAULT_TIMEZONE",
    "DEFAULT_VERSION",
    "MODIFIED_FIELD",
    "REFRESH_TOKEN_KEY",
    "SYSTEM",
    "AcumaticaClient",
    "AcumaticaEntity",
    "AcumaticaPasswordAuth",
    "ActionFailed",
    "ActionStatus",
    "ApiUserLimitReached",
    "EndpointNotFound",
    "PutMode",
    "RecordRejected",
    "modified_at",
    "odata_and",
    "odata_datetimeoffset",
    "odata_string",
]

logger = logging.getLogger("ml_connector.acumatica")

SYSTEM = "acumatica"
DEFAULT_ENDPOINT = "Default"
DEFAULT_VERSION = "24.200.001"
DEFAULT_SCOPE = "api offline_access"
DEFAULT_TIMEZONE = "Europe/Oslo"
REFRESH_TOKEN_KEY = "acumatica.refresh_token"
MODIFIED_FIELD = "LastModifiedDateTime"
API_LOGIN_LIMIT = "API Login Limit"


class AcumaticaEntity(StrEnum):
    """The top-level entities the connector uses, named as in the endpoint."""

    BILL = "Bill"
    PURCHASE_ORDER = "PurchaseOrder"
    PAYMENT = "Payment"
    VENDOR = "Vendor"


class PutMode(StrEnum):
    """How a PUT may apply: ``upsert`` (no header), ``insert`` only, ``update`` only."""

    UPSERT = "upsert"
    INSERT = "insert"  # If-None-Match: * -> 412 when the record exists
    UPDATE = "update"  # If-Match: * -> 412 when it does not


_PUT_HEADERS = {PutMode.UPSERT: {}, PutMode.INSERT: {"If-None-Match": "*"}, PutMode.UPDATE: {"If-Match": "*"}}


class ActionStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"


class EndpointNotFound(NotFound):
    """The instance has no such endpoint/version (or no such entity in it): a configuration error."""


class ApiUserLimitReached(AuthenticationFailed):
    """The licence's API users are all signed in; wait for a session to end, or sign one out."""


class RecordRejected(ClientError):
    """422: the record breaks a rule; ``field_errors`` maps API field names to Acumatica's message."""

    def __init__(self, message: str = "", *, field_errors: Mapping[str, str] | None = None, **fields: Any) -> None:
        self.field_errors = dict(field_errors or {})
        super().__init__(message, **fields)


class ActionFailed(ApiError):
    """A long-running action ended in an error; ``reason`` is Acumatica's exception message."""

    def __init__(self, message: str = "", *, reason: str = "", **fields: Any) -> None:
        self.reason = reason
        super().__init__(message, **fields)


# -- OData -----------------------------------------------------------------------------------------


def odata_datetimeoffset(moment: datetime) -> str:
    """``datetimeoffset'2026-11-20T10:31:28.402+00:00'``: UTC, milliseconds, explicit offset."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("OData filters need an aware datetime; a naive one would be read in the server's zone")
    return f"datetimeoffset'{moment.astimezone(UTC).isoformat(timespec='milliseconds')}'"


def odata_string(text: str) -> str:
    """A quoted OData string literal (a quote inside is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def odata_and(*clauses: str) -> str:
    """Clauses joined with ``and``, each parenthesised."""
    return " and ".join(f"({clause})" for clause in clauses if clause)


def _oauth_error(response: httpx.Response) -> tuple[str, str]:
    """``(error, error_description)`` of an RFC 6749 error body (empty strings when absent)."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, Mapping):
        return "", ""
    return str(body.get("error") or ""), str(body.get("error_description") or "")


def modified_at(raw: Mapping[str, Any]) -> datetime | None:
    """A wire record's ``LastModifiedDateTime`` in UTC, or None when missing or unreadable."""
    wrapped = raw.get(MODIFIED_FIELD)
    value = wrapped.get("value") if isinstance(wrapped, Mapping) else wrapped
    try:
        return parse_moment(value)
    except (TypeError, ValueError):
        return None


# -- authentication --------------------------------------------------------------------------------


class _Borrowed(httpx.BaseTransport):
    """A transport lent to the token endpoint's short-lived clients, which must not close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        return None


# A sign-in another client has claimed: it holds the store's entry until it saves the token it got.
_CLAIM = "signing-in until "
CLAIM_TTL_S = 30.0  # a claim older than this was left by a process that died while signing in
ROTATION_WAIT_S = 2.0  # how long a refused refresh token may still be being replaced by its rotator
_LOOK_EVERY_S = 0.05


def _claim_expiry(value: str | None) -> float | None:
    """When a claim stored as ``value`` lapses; None when ``value`` is no claim."""
    if not value or not value.startswith(_CLAIM):
        return None
    try:
        return float(value[len(_CLAIM):].split(" ", 1)[0])
    except ValueError:
        return 0.0  # unreadable: lapsed


class AcumaticaPasswordAuth(_CachedBearerAuth):
    """OAuth 2.0 resource-owner password grant, then rotating refresh tokens kept in ``store``.

    A new access token comes from the stored refresh token when there is one (same API session);
    only without one, or when it is dead and nobody saved a newer one, from the password grant.

    Every password grant takes one of the licence's API users, so only one client signs in at a time
    across every process sharing the store: it claims the store's entry first (compare-and-swap), and
    the others wait for the refresh token it saves, then refresh into its session. A refused refresh
    token waits ``ROTATION_WAIT_S`` for a newer one before anyone signs in: the process that rotated
    it may not have saved the new one yet.
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str, username: str, password: str, *,
                 store: TokenStore, store_key: str = REFRESH_TOKEN_KEY, scope: str = DEFAULT_SCOPE,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, refresh_margin_s: float = 60) -> None:
        super().__init__(token_url, system=SYSTEM, clock=clock, refresh_margin_s=refresh_margin_s,
                         transport=transport)
        self._client_id, self._client_secret = client_id, client_secret
        self._username, self._password = username, password
        self._store, self._store_key, self._scope = store, store_key, scope
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AcumaticaPasswordAuth(token_url={self._token_url!r}, client_id={self._client_id!r})"

    def _fetch_token(self) -> Any:
        refused: set[str] = set()
        newer_until = 0.0
        while True:
            stored = self._store.load(self._store_key)
            now = self._clock()
            lapses = _claim_expiry(stored)
            if stored and lapses is None and stored not in refused:
                refreshed = self._refresh(stored)
                if refreshed is not None:
                    return refreshed
                refused.add(stored)
                newer_until = self._clock() + ROTATION_WAIT_S
            elif (lapses is not None and now < lapses) or (stored in refused and now < newer_until):
                self._sleep(_LOOK_EVERY_S)  # another client is signing in, or saving the token it rotated
            elif (signed_in := self._sign_in_claimed(stored)) is not None:
                return signed_in

    def _sign_in_claimed(self, stored: str | None) -> Any:
        """Sign in if this client wins the claim on the store's entry (still ``stored``); None if another did."""
        if not isinstance(self._store, SwappingTokenStore):
            return self._sign_in()
        claim = f"{_CLAIM}{self._clock() + CLAIM_TTL_S:.3f} {token_hex(4)}"
        if not self._store.compare_and_swap(self._store_key, stored, claim):
            return None
        if stored and _claim_expiry(stored) is None:
            logger.info("acumatica: the stored refresh token is no longer valid; signing in again")
        try:
            return self._sign_in()
        finally:
            # Replaced by the saved refresh token; still there when none came (or the sign-in failed):
            # then the next client need not wait for the claim to lapse.
            self._store.compare_and_swap(self._store_key, claim, "")

    def _form(self, **fields: str) -> dict[str, str]:
        return {"client_id": self._client_id, "client_secret": self._client_secret, **fields}

    def _refresh(self, refresh_token: str) -> Any:
        """The new access token, or None when the refresh token is refused (``invalid_grant``)."""
        secrets = (self._client_secret, self._password, refresh_token)
        issued_at = self._clock()
        # Not retry-safe: a lost answer may already have rotated (and so killed) the refresh token.
        with self._token_client(secrets) as client:
            response = client.post(self._token_url, data=self._form(grant_type="refresh_token",
                                                                    refresh_token=refresh_token))
        if response.status_code != 200:
            error, description = _oauth_error(response)
            if error == "invalid_grant" and API_LOGIN_LIMIT not in description:
                return None
            self._refuse(response, secrets)
        parsed = self._parse(response, secrets)
        self._keep(parsed)
        return self._access_token(parsed, issued_at)

    def _sign_in(self) -> Any:
        secrets = (self._client_secret, self._password)
        issued_at = self._clock()
        # Not retry-safe either: each sign-in that reaches the server takes a licensed API-user slot.
        with self._token_client(secrets) as client:
            response = client.post(self._token_url, data=self._form(
                grant_type="password", username=self._username, password=self._password, scope=self._scope))
        if response.status_code != 200:
            self._refuse(response, secrets)
        parsed = self._parse(response, secrets)
        self._keep(parsed)
        return self._access_token(parsed, issued_at)

    def _refuse(self, response: httpx.Response, secrets: tuple[str, ...]) -> None:
        _, description = _oauth_error(response)
        if API_LOGIN_LIMIT in description:
            raise ApiUserLimitReached(
                system=SYSTEM, status_code=response.status_code, method="POST", url=self._token_url,
                detail="API Login Limit: every API user the licence allows is signed in; wait for an idle "
                       "session to end or sign one out (POST /entity/auth/logout)", secrets=secrets)
        self._raise_token_error(response, secrets)

    def _keep(self, parsed: Any) -> None:
        # Saved before the access token is used: a crash now leaves the live refresh token stored.
        # Only one refresh of a given token succeeds, so the token just issued is the live one.
        if parsed.refresh_token is not None:
            self._store.save(self._store_key, parsed.refresh_token.get_secret_value())

    def forget(self) -> None:
        """Drop the cached access token and the stored refresh token (after a sign-out)."""
        with self._lock:
            self._token = None
        self._store.save(self._store_key, "")


# -- the client ------------------------------------------------------------------------------------


class AcumaticaClient:
    """One Acumatica tenant through one pinned endpoint version, over an ``httpx.Client`` (system ``acumatica``)."""

    def __init__(self, http: httpx.Client, *, endpoint: str = DEFAULT_ENDPOINT, version: str = DEFAULT_VERSION,
                 page_size: int = 100, timezone: str = DEFAULT_TIMEZONE, secrets: tuple[str, ...] = (),
                 auth: AcumaticaPasswordAuth | None = None) -> None:
        """Wrap a ready client whose base URL is the instance (site) URL; most callers want :meth:`build`.

        ``timezone`` is the Acumatica users' zone: dates are sent as its midnight.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.http = http
        self.zone = ZoneInfo(timezone)
        self.endpoint, self.version = endpoint, version
        self.endpoint_path = f"/entity/{quote(endpoint)}/{quote(version)}"
        self.page_size = page_size
        self._secrets = secrets
        self._auth = auth

    @classmethod
    def build(cls, *, base_url: str, client_id: str, client_secret: str, username: str, password: str,
              store: TokenStore, store_key: str = REFRESH_TOKEN_KEY, endpoint: str = DEFAULT_ENDPOINT,
              version: str = DEFAULT_VERSION, scope: str = DEFAULT_SCOPE, page_size: int = 100,
              timezone: str = DEFAULT_TIMEZONE, timeout_s: float = 30.0, rate_limiter: RateLimiter | None = None, retry: RetryPolicy | None = None,
              transport: httpx.BaseTransport | None = None) -> AcumaticaClient:
        """A client signed in with the password grant (once; then by the refresh token in ``store``).

        ``base_url`` is the instance URL (``https://nordvik.acumatica.com`` or ``http://host/AcumaticaDB``);
        the token endpoint is ``<base_url>/identity/connect/token``.
        """
        missing = [name for name, value in (("client_id", client_id), ("client_secret", client_secret),
                                            ("username", username), ("password", password)) if not value]
        if missing:
            raise ValueError(f"Acumatica needs {', '.join(missing)} (is the environment variable set?)")
        site = base_url.rstrip("/")
        auth = AcumaticaPasswordAuth(
            f"{site}/identity/connect/token", client_id, client_secret, username, password, store=store,
            store_key=store_key, scope=scope, transport=_Borrowed(transport) if transport is not None else None,
        )
        secrets = (client_secret, password)
        http = build_http_client(
            SYSTEM, site, auth=auth, headers={"Accept": "application/json"}, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)), retry=retry,
            rate_limiter=rate_limiter if rate_limiter is not None else rate_limiter_for(SYSTEM), secrets=secrets,
        )
        return cls(http, endpoint=endpoint, version=version, page_size=page_size, timezone=timezone, secrets=secrets,
                   auth=auth)

    def close(self) -> None:
        """Close the connection pool (the API session stays open for the next run to refresh into)."""
        self.http.close()

    def __enter__(self) -> AcumaticaClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AcumaticaClient(base_url={str(self.http.base_url)!r}, endpoint={self.endpoint}/{self.version})"

    # -- the instance ------------------------------------------------------------------------

    def endpoint_versions(self) -> list[tuple[str, str]]:
        """``(name, version)`` of every endpoint the instance offers (``GET /entity``)."""
        response = self.http.get("/entity")
        self._raise(response)
        return [(str(e.get("name")), str(e.get("version"))) for e in response.json().get("endpoints", [])]

    def check_endpoint(self) -> None:
        """Raise :class:`EndpointNotFound` unless the instance offers the pinned endpoint version."""
        offered = self.endpoint_versions()
        if (self.endpoint, self.version) not in offered:
            listed = ", ".join(f"{name}/{version}" for name, version in offered) or "none"
            raise EndpointNotFound(system=SYSTEM, method="GET", url=str(self.http.base_url) + "/entity",
                                   detail=f"{self.endpoint}/{self.version} is not offered (the instance has: {listed})")

    def sign_out(self) -> None:
        """End the API session (``POST /entity/auth/logout``) and forget its tokens: frees a licence slot."""
        response = self.http.post("/entity/auth/logout")
        self._raise(response)
        if self._auth is not None:
            self._auth.forget()

    # -- reads -------------------------------------------------------------------------------

    def iter_changed(self, entity: AcumaticaEntity, since: datetime, until: datetime | None = None, *,
                     expand: Sequence[str] = (), select: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of wire records modified at or after ``since`` and, when given, strictly before ``until``.

        Records whose timestamp cannot be read are passed on (the caller quarantines them).
        """
        odata = f"{MODIFIED_FIELD} ge {odata_datetimeoffset(since)}"
        for page in self.iter_pages(entity, filter=odata, expand=expand, select=select):
            if until is not None:
                page = [r for r in page if (m := modified_at(r)) is None or m < until]
            if page:
                yield page

    def iter_pages(self, entity: AcumaticaEntity, *, filter: str | None = None, expand: Sequence[str] = (),
                   select: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list (``$top``/``$skip``) until a short one; each record once per pass.

        The next page is asked for while the caller works on this one (one request in flight: the
        licence's concurrency limit is the tenant's, not this reader's).
        """
        params: dict[str, Any] = {}
        if filter:
            params["$filter"] = filter
        if expand:
            params["$expand"] = ",".join(expand)
        if select is not None:
            params["$select"] = ",".join(dict.fromkeys([*select, MODIFIED_FIELD]))
        seen: set[str] = set()

        def step(page: tuple[int, list[Any]]) -> tuple[list[Any], int | None]:
            skip, records = page
            fresh = [r for r in records if not isinstance(r, Mapping) or r.get("id") not in seen]
            seen.update(str(r["id"]) for r in records if isinstance(r, Mapping) and r.get("id"))
            if len(records) < self.page_size:
                return fresh, None
            if not fresh:
                logger.warning("acumatica %s: a full page repeats earlier records; the server ignores $skip", entity)
                return [], None
            return fresh, skip + len(records)

        def fetch(skip: int) -> tuple[int, list[Any]]:
            return skip, self._get_list(entity, {**params, "$top": self.page_size, "$skip": skip})

        yield from pipelined_pages(fetch, 0, step, name="acumatica-page")

    def get(self, entity: AcumaticaEntity, keys: Sequence[str], *, expand: Sequence[str] = ()) -> dict[str, Any]:
        """One record by its key values (``["Bill", "001042"]``) or by its id (``[<guid>]``)."""
        path = "/".join(quote(str(key), safe="") for key in keys)
        params = {"$expand": ",".join(expand)} if expand else None
        response = self.http.get(f"{self.endpoint_path}/{entity}/{path}", params=params)
        self._raise(response, entity_level=False)
        return response.json()

    # -- writes ------------------------------------------------------------------------------

    def put(self, entity: AcumaticaEntity, record: Mapping[str, Any], *, mode: PutMode = PutMode.UPSERT,
            expand: Sequence[str] = ()) -> dict[str, Any]:
        """PUT a plain record (wrapped by :func:`to_wire`); returns the saved record as the API answers it.

        ``mode``: ``insert`` sends ``If-None-Match: *`` and ``update`` sends ``If-Match: *``; the other
        case answers 412 (:class:`PreconditionFailed`). A PUT may be retried after a lost answer:
        an insert-only PUT then meets its own first attempt as a 412 — read the record to tell.
        A refused rule raises :class:`RecordRejected` with the fields' errors.
        """
        params = {"$expand": ",".join(expand)} if expand else None
        response = self.http.put(f"{self.endpoint_path}/{entity}", json=to_wire(record, self.zone), params=params,
                                 headers=_PUT_HEADERS[mode])
        self._raise(response)
        return response.json()

    def insert(self, entity: AcumaticaEntity, record: Mapping[str, Any]) -> dict[str, Any]:
        """PUT that only creates (412 when a record with these keys exists)."""
        return self.put(entity, record, mode=PutMode.INSERT)

    def update(self, entity: AcumaticaEntity, record: Mapping[str, Any]) -> dict[str, Any]:
        """PUT that only changes an existing record (412 when none has these keys)."""
        return self.put(entity, record, mode=PutMode.UPDATE)

    # -- actions -----------------------------------------------------------------------------

    def invoke_action(self, entity: AcumaticaEntity, action: str, entity_keys: Mapping[str, Any],
                      parameters: Mapping[str, Any] | None = None) -> str:
        """``POST .../<entity>/<action>`` on the record named by ``entity_keys`` (plain key fields, or
        ``{"id": ...}``); returns the absolute ``Location``: a status URL to poll after a 202, or the
        record's URL after a 204 (done at once).

        Sent once: a timeout raises :class:`TransportFailure` (``may_have_been_applied``) and the
        action may still run. Re-read the document's status before invoking it again.
        """
        body = {"entity": to_wire(entity_keys, self.zone), "parameters": dict(parameters or {})}
        response = self.http.post(f"{self.endpoint_path}/{entity}/{quote(action, safe='')}", json=body)
        self._raise(response)
        location = response.headers.get("Location")
        if response.status_code not in (202, 204) or not location:
            raise self._unexpected(response, "an action answers 202 or 204 with a Location")
        return str(self.http.base_url.join(location))

    def action_status(self, location: str) -> ActionStatus:
        """One poll: RUNNING (202) or DONE (204); a failed action raises :class:`ActionFailed`."""
        if "/status/" not in urlsplit(location).path:
            return ActionStatus.DONE  # a 204's Location names the processed record: nothing to poll
        response = self.http.get(location)
        if response.status_code == 202:
            return ActionStatus.RUNNING
        if response.status_code == 204:
            return ActionStatus.DONE
        if response.status_code >= 500 or response.status_code in (400, 422):
            reason = _exception_message(response)
            raise ActionFailed(system=SYSTEM, status_code=response.status_code, method="GET", url=location,
                               detail=reason, reason=reason, secrets=self._secrets)
        self._raise(response, entity_level=False)
        raise self._unexpected(response, "the status of an action answers 202, 204 or an error")

    def wait_for_action(self, location: str, *, timeout_s: float = 120.0, interval_s: float = 1.0,
                        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        """Poll until the action is done; :class:`ActionFailed` if it fails, ``TimeoutError`` if it outlasts us."""
        deadline = clock() + timeout_s
        while self.action_status(location) is ActionStatus.RUNNING:
            if clock() >= deadline:
                raise TimeoutError(f"acumatica: the action at {location} still runs after {timeout_s:.0f} s")
            sleep(interval_s)

    # -- plumbing ----------------------------------------------------------------------------

    def _get_list(self, entity: AcumaticaEntity, params: Mapping[str, Any]) -> list[Any]:
        response = self.http.get(f"{self.endpoint_path}/{entity}", params=params)
        self._raise(response)
        body = response.json()
        if not isinstance(body, list):
            raise self._unexpected(response, "expected a JSON array")
        return body

    def _raise(self, response: httpx.Response, *, entity_level: bool = True) -> None:
        """The matching error for a 4xx/5xx; a 404 on an entity-level path is a wrong endpoint version."""
        if response.status_code == 404 and entity_level:
            raise EndpointNotFound(
                system=SYSTEM, status_code=404, method=response.request.method, url=str(response.request.url),
                detail=f"the instance has no {self.endpoint}/{self.version} endpoint (or no such entity in it): "
                       "check endpoint_version in connector.yaml", secrets=self._secrets)
        if response.status_code == 422:
            try:
                errors = field_errors(response.json())
            except ValueError:
                errors = {}
            detail = "; ".join(f"{name or '(record)'}: {text}" for name, text in errors.items()) or "rejected"
            raise RecordRejected(system=SYSTEM, status_code=422, method=response.request.method,
                                 url=str(response.request.url), detail=detail, field_errors=errors,
                                 secrets=self._secrets)
        raise_for_api_error(response, SYSTEM, self._secrets)

    def _unexpected(self, response: httpx.Response, detail: str) -> ApiError:
        return ApiError(system=SYSTEM, status_code=response.status_code, method=response.request.method,
                        url=str(response.request.url), detail=detail, secrets=self._secrets)


def _exception_message(response: httpx.Response) -> str:
    """Acumatica's reason from an ``HttpError`` body: ``exceptionMessage``, else ``message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, Mapping):
        return str(body.get("exceptionMessage") or body.get("message") or "")
    return ""
