"""The simulator: one JAGGAER One Platform (J1P) customer instance, its REST API and its cXML endpoint."""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import math
import re
from bisect import bisect_left, insort
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..demo_data import to_ms
from ..framework import RateWindow, Simulator, utc_iso
from .data import (
    COLLECTIONS,
    ID_FIELDS,
    INVOICES,
    MODIFIED_FIELD,
    PURCHASE_ORDERS,
    JaggaerDemoData,
    j1p_datetime,
)
from .inbound_cxml import CxmlInbound, MaskingRequestLog, cxml_reply

DEMO_CLIENT_ID = "ml-connector-integration"
DEMO_CLIENT_SECRET = "sandbox-jaggaer-client-secret-not-for-production"
DEMO_CXML_SHARED_SECRET = "sandbox-jaggaer-cxml-shared-secret-not-for-production"
DEMO_REALM = "J1p-integrations"
DEMO_SENDER = ("NetworkID", "ML-CONNECTOR")
DEMO_BUYER = ("NetworkID", "FJORDLYS-J1P")
API_PREFIX = "/j1p/api/public/ji/v1"
DEFAULT_PATHS: dict[str, str] = {
    PURCHASE_ORDERS: f"{API_PREFIX}/purchase-orders",
    INVOICES: f"{API_PREFIX}/invoices",
    "vendors": f"{API_PREFIX}/suppliers",
    "gl_accounts": f"{API_PREFIX}/gl-accounts",
}
DEFAULT_TOKEN_PATH = f"/auth/realms/{DEMO_REALM}/protocol/openid-connect/token"
DEFAULT_CXML_PATH = "/cxml"
TOKEN_TTL_S = 300  # Keycloak's default access token lifespan
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
_ENTITY_NAMES = {PURCHASE_ORDERS: "PurchaseOrder", INVOICES: "Invoice", "vendors": "Supplier",
                 "gl_accounts": "GlAccount"}
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


class ApiError(Exception):
    """An error the API answers in Spring Boot's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reason(status: int) -> str:
    return {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")


def _sort_key(record_id: str) -> tuple[int, int | str]:
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def parse_filter_value(name: str, value: str) -> int:
    """A ``lastModifiedFrom``/``To`` value in µs since the epoch; it must be ISO 8601 *with* an offset."""
    text = value.strip()
    if not _OFFSET.search(text):
        raise ApiError(400, f"{name}: '{value}' must be an ISO 8601 date-time with an offset (e.g. 2026-11-21T10:00:00Z)")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name}: '{value}' is not an ISO 8601 date-time") from None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class JaggaerSimulator(CxmlInbound, Simulator):
    """J1P REST (Keycloak client credentials, Spring-style pages) and cXML for one customer instance."""

    name: ClassVar[str] = "jaggaer"
    default_port: ClassVar[int] = 8802
    state_attributes: ClassVar[tuple[str, ...]] = (
        *Simulator.state_attributes, "records", "modification_times", "invalid", "cxml_documents", "next_ids",
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        size: int = 200,
        days: float = 14,
        start: datetime | None = None,
        paths: Mapping[str, str] | None = None,
        token_path: str = DEFAULT_TOKEN_PATH,
        cxml_path: str = DEFAULT_CXML_PATH,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        cxml_shared_secret: str = DEMO_CXML_SHARED_SECRET,
        cxml_sender: tuple[str, str] = DEMO_SENDER,
        cxml_buyer: tuple[str, str] = DEMO_BUYER,
        token_ttl_s: float = TOKEN_TTL_S,
        rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE,
        max_page_size: int = MAX_PAGE_SIZE,
        webhook_url: str | None = None,
    ) -> None:
        """A fresh customer instance.

        ``paths`` overrides the REST route of any of ``purchase_orders``, ``invoices``, ``vendors``,
        ``gl_accounts`` (each customer's J1P exposes its own); ``token_path`` and ``cxml_path`` move
        the Keycloak token endpoint and the cXML endpoint. ``size`` is the number of invoices (the
        other collections scale from it); ``start`` pins the clock and so the generated data.
        """
        super().__init__(seed=seed, webhook_url=webhook_url)
        unknown = set(paths or {}) - set(DEFAULT_PATHS)
        if unknown:
            raise ValueError(f"unknown J1P collection(s) in paths: {sorted(unknown)}; expected {sorted(DEFAULT_PATHS)}")
        if start is not None:
            start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            self.clock.advance(start.timestamp() - self.clock.time())
        self.paths = {**DEFAULT_PATHS, **(paths or {})}
        self.token_path, self.cxml_path = token_path, cxml_path
        self.client_id, self.client_secret = client_id, client_secret
        self.cxml_shared_secret, self.cxml_sender, self.cxml_buyer = cxml_shared_secret, cxml_sender, cxml_buyer
        self.token_ttl_s, self.max_page_size = token_ttl_s, max_page_size
        self.size, self.days = size, days
        self.rate_window = RateWindow(rate_limit_per_minute, 60, self.clock)
        self.requests = MaskingRequestLog(self.secret_values)
        data = JaggaerDemoData(seed=seed, size=size, days=days, anchor=self.now())
        self.records: dict[str, dict[str, dict[str, Any]]] = data.records
        self.invalid: dict[str, dict[str, str]] = data.invalid
        self.modification_times = data.modified_ms
        self.cxml_documents: dict[str, dict[str, Any]] = {}
        self.next_ids = {collection: 1 + max((int(i) for i in self.records[collection] if i.isdigit()), default=0)
                         for collection in COLLECTIONS}
        self._cxml_failures: list[int] = []

    # -- persistence -------------------------------------------------------------------------------
    @property
    def modification_times(self) -> dict[str, dict[str, int]]:
        """When each record was last modified (ms); setting it rebuilds the indexes (modification order, id order)."""
        return self._modified

    @modification_times.setter
    def modification_times(self, times: dict[str, dict[str, int]]) -> None:
        self._modified = {collection: dict(times[collection]) for collection in COLLECTIONS}
        self._order = {collection: sorted((ms, _sort_key(record_id), record_id) for record_id, ms in by_id.items())
                       for collection, by_id in self._modified.items()}
        # Ids never change: a page in id order (a list without sort) is read off this, as a database reads its key.
        self._ids = {collection: sorted(by_id, key=_sort_key) for collection, by_id in self._modified.items()}

    def state_identity(self) -> dict[str, Any]:
        return {**super().state_identity(), "size": self.size, "days": self.days}

    # -- the Simulator contract --------------------------------------------------------------------
    def vendor_routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]

    def collections(self) -> dict[str, Any]:
        with self.lock:
            state: dict[str, Any] = {collection: [self.records[collection][record_id] for _, _, record_id in order]
                                     for collection, order in self._order.items()}
            state["cxml_documents"] = list(self.cxml_documents.values())
        return state

    def credentials(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "cxml_shared_secret": self.cxml_shared_secret, "cxml_sender_identity": self.cxml_sender[1],
                "cxml_buyer_identity": self.cxml_buyer[1]}

    def secret_values(self) -> list[str]:
        return [self.client_secret, self.cxml_shared_secret, *super().secret_values()]

    def rate_limited_response(self, retry_after_s: float) -> Response:
        seconds = max(1, math.ceil(retry_after_s))
        return self._error(429, "Rate limit exceeded; retry later.", "", {"Retry-After": str(seconds)})

    def server_error_response(self, status_code: int) -> Response:
        # Faults hit both surfaces: the cXML path answers a cXML Status, the REST paths Spring JSON.
        return _PathAwareError(self, status_code)  # type: ignore[return-value]

    # -- helpers for tests and the demo (a buyer working in JAGGAER) ---------------------------------
    def record(self, collection: str, record_id: str | int) -> dict[str, Any] | None:
        """One record as ``GET <path>/<id>`` answers it, or None."""
        with self.lock:
            found = self.records[collection].get(str(record_id))
            return copy.deepcopy(found) if found is not None else None

    def invalid_records(self) -> list[tuple[str, str, str]]:
        """``(collection, id, reason)`` of every record generated malformed on purpose."""
        return [(collection, record_id, reason) for collection in COLLECTIONS
                for record_id, reason in sorted(self.invalid[collection].items())]

    def update(self, collection: str, record_id: str | int, *, at: datetime | None = None, **changes: Any) -> dict[str, Any]:
        """Edit a record as a JAGGAER user would: new ``lastModifiedDate`` (``at``, or now)."""
        with self.lock:
            if str(record_id) not in self.records[collection]:
                raise KeyError(f"{collection}: no record {record_id!r}")
            return copy.deepcopy(self.touch(collection, str(record_id), changes, at=at))

    def touch(self, collection: str, record_id: str, changes: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
        """Apply ``changes`` and move the record to the end of the modification order (lock held)."""
        record = self.records[collection][record_id]
        record.update(changes)
        old = self._modified[collection][record_id]
        order = self._order[collection]
        index = bisect_left(order, (old, _sort_key(record_id), record_id))
        if index < len(order) and order[index][2] == record_id:
            del order[index]
        modified = to_ms(at) if at is not None else max(to_ms(self.now()), old + 1)
        self._modified[collection][record_id] = modified
        insort(order, (modified, _sort_key(record_id), record_id))
        record[MODIFIED_FIELD] = j1p_datetime(modified)
        return record

    def add_record(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        """Create a record with the next id, modified now (lock held)."""
        base = {PURCHASE_ORDERS: 520001, INVOICES: 710001}.get(collection, 1)
        record_id = str(max(self.next_ids[collection], base))
        self.next_ids[collection] = int(record_id) + 1
        now = to_ms(self.now())
        full = {ID_FIELDS[collection]: int(record_id), **record, "createdDate": j1p_datetime(now)}
        self.records[collection][record_id] = full
        self._modified[collection][record_id] = now - 1
        insort(self._order[collection], (now - 1, _sort_key(record_id), record_id))
        insort(self._ids[collection], record_id, key=_sort_key)
        return self.touch(collection, record_id, {})

    def find(self, collection: str, field: str, value: Any) -> list[dict[str, Any]]:
        """The records whose ``field`` equals ``value`` (lock held)."""
        return [record for record in self.records[collection].values() if record.get(field) == value]

    # -- HTTP ----------------------------------------------------------------------------------------
    def _error(self, status: int, message: str, path: str, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"timestamp": utc_iso(self.now()), "status": status, "error": _reason(status), "message": message,
                "path": path}
        return JSONResponse(body, status_code=status, headers=headers)

    async def _endpoint(self, request: Request) -> Response:
        path = request.url.path
        if path == self.token_path:
            if request.method != "POST":
                return JSONResponse({"error": "invalid_request", "error_description": "HTTP method not allowed"},
                                    status_code=405)
            return await self._token(request)
        if path == self.cxml_path:
            if request.method != "POST":
                return self._error(405, f"Request method '{request.method}' is not supported", path)
            return await self.cxml_endpoint(request)
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        allowed, _, reset = self.rate_window.hit()
        if not allowed:
            return self.rate_limited_response(reset)
        routed = self._route(path)
        if routed is None:
            return self._error(404, "No endpoint " + path, path)
        if request.method != "GET":
            return self._error(405, f"Request method '{request.method}' is not supported", path)
        collection, record_id = routed
        try:
            if record_id is None:
                return self._list(request, collection)
            return self._get(collection, record_id)
        except ApiError as error:
            return self._error(error.status, error.message, path)

    def _route(self, path: str) -> tuple[str, str | None] | None:
        """(collection, record id or None) of a REST path; paths are case-sensitive, as in Spring."""
        for collection, prefix in self.paths.items():
            if path.rstrip("/") == prefix.rstrip("/"):
                return collection, None
            if path.startswith(prefix.rstrip("/") + "/"):
                rest = path[len(prefix.rstrip("/")) + 1:].rstrip("/")
                if rest and "/" not in rest:
                    return collection, rest
        return None

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if self.valid_token(header[7:].strip()) is None:
            return Response(status_code=401, headers={
                "WWW-Authenticate": 'Bearer error="invalid_token", error_description="Jwt expired or invalid"'})
        return None

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if "grant_type" not in form:
            return JSONResponse({"error": "invalid_request", "error_description": "Missing form parameter: grant_type"},
                                status_code=400)
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id, client_secret = "", ""
        if client_id != self.client_id or not hmac.compare_digest(client_secret.encode(), self.client_secret.encode()):
            return JSONResponse({"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"},
                                status_code=401)
        if form["grant_type"] != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"},
                                status_code=400)
        token = self.issue_token("access", client_id, self.token_ttl_s)
        return JSONResponse(
            {"access_token": token.value, "expires_in": int(self.token_ttl_s), "refresh_expires_in": 0,
             "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email"},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _get(self, collection: str, record_id: str) -> Response:
        record = self.record(collection, record_id)
        if record is None:
            raise ApiError(404, f"{_ENTITY_NAMES[collection]} with id {record_id} not found")
        return JSONResponse(record)

    def _list(self, request: Request, collection: str) -> Response:
        query = request.query_params
        page = _integer(query.get("page", "0"), "page")
        size = _integer(query.get("size", str(DEFAULT_PAGE_SIZE)), "size")
        if page < 0:
            raise ApiError(400, "Page index must not be less than zero")
        if size < 1:
            raise ApiError(400, "Page size must not be less than one")
        size = min(size, self.max_page_size)  # clamped, as Spring's max-page-size does, silently
        low = parse_filter_value("lastModifiedFrom", query["lastModifiedFrom"]) if "lastModifiedFrom" in query else None
        high = parse_filter_value("lastModifiedTo", query["lastModifiedTo"]) if "lastModifiedTo" in query else None
        by_modified, descending = self._sort(collection, query.getlist("sort"))
        with self.lock:
            order = self._order[collection]
            # The window is a slice of the modification order (entries are (ms, ...); bounds are µs).
            first = 0 if low is None else bisect_left(order, (-(-low // 1000),))
            end = max(first, len(order) if high is None else bisect_left(order, (-(-high // 1000),)))
            total = end - first
            if by_modified:  # the keyset walk's query
                window = [record_id for _, _, record_id in _page(order, first, end, page, size, descending)]
            elif low is None and high is None:
                window = _page(self._ids[collection], 0, total, page, size, descending)
            else:
                by_id = sorted(order[first:end], key=lambda entry: entry[1])
                window = [record_id for _, _, record_id in _page(by_id, 0, total, page, size, descending)]
            pages = math.ceil(total / size)
            # Written under the lock, so no copy is needed; orjson, as a page of 100 invoices with lines is large.
            body = orjson.dumps({
                "content": [self.records[collection][record_id] for record_id in window], "totalElements": total,
                "totalPages": pages, "number": page, "size": size, "numberOfElements": len(window),
                "first": page == 0, "last": page >= pages - 1, "empty": not window,
            })
        return Response(body, media_type="application/json")

    @staticmethod
    def _sort(collection: str, values: list[str]) -> tuple[bool, bool]:
        """(by lastModifiedDate?, descending?) from ``sort`` values; without one, records come by id."""
        by_modified, descending = False, False
        for value in values:
            field, _, direction = value.partition(",")
            if field not in (MODIFIED_FIELD, ID_FIELDS[collection]):
                raise ApiError(400, f"No property '{field}' found for type '{_ENTITY_NAMES[collection]}'")
            if direction and direction.lower() not in ("asc", "desc"):
                raise ApiError(400, f"Invalid sort direction '{direction}'")
            if field == MODIFIED_FIELD:
                by_modified, descending = True, direction.lower() == "desc"
            elif not by_modified:
                descending = direction.lower() == "desc"
        return by_modified, descending


def _page(ordered: list[Any], first: int, end: int, page: int, size: int, descending: bool) -> list[Any]:
    """Page ``page`` of ``ordered[first:end]`` (read backwards when ``descending``), without copying the rest."""
    low, high = (end - (page + 1) * size, end - page * size) if descending else (first + page * size,
                                                                                  first + (page + 1) * size)
    part = ordered[max(first, low):max(first, min(end, high))]
    return part[::-1] if descending else part


def _integer(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Failed to convert value of type 'java.lang.String' to required type 'int' "
                            f"for parameter '{name}'; For input string: \"{raw}\"") from None


class _PathAwareError:
    """A 5xx fault answer: a cXML Status document on the cXML path, Spring JSON elsewhere."""

    def __init__(self, sim: JaggaerSimulator, status: int) -> None:
        self.sim, self.status = sim, status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == self.sim.cxml_path:
            response: Response = cxml_reply(500, "Internal error; please retry.", http_status=self.status)
        else:
            response = self.sim._error(self.status, _reason(self.status), scope["path"])
        await response(scope, receive, send)


def sandbox_credentials(seed: int = 0) -> dict[str, str]:
    """What :meth:`JaggaerSimulator.credentials` answers for a default simulator, without building one."""
    return {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
            "cxml_shared_secret": DEMO_CXML_SHARED_SECRET, "cxml_sender_identity": DEMO_SENDER[1],
            "cxml_buyer_identity": DEMO_BUYER[1]}
