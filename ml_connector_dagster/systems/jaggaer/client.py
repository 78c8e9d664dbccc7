"""JAGGAER as the connector talks to it: the J1P REST API (reads) and the cXML endpoint (confirmations).

J1P has no public contract, and each customer's instance exposes its own paths, so every path is
configuration (:func:`resolve_paths`: templates whose ``{placeholders}`` come from settings). What
this client relies on, and the traps it avoids:

- OAuth 2.0 client credentials at the instance's Keycloak realm; tokens live minutes, so they are
  renewed ahead of expiry and once on a 401. A 401 that survives that raises
  :class:`AuthenticationFailed`; it never ends a read as "success with 0 records".
- Spring Data pages are **0-based** and ``size`` is clamped by the server without notice, so the end
  is read from ``last``/``totalPages``, never from a short page.
- Offset paging over records that change meanwhile skips some (a record modified mid-read leaves
  its place and the next page starts one record late). Every read therefore sorts by
  ``lastModifiedDate`` and walks by *keyset*: the next request starts at the latest timestamp seen
  (``lastModifiedFrom``, inclusive) and drops the ids already seen at that instant; only a page
  made entirely of one instant moves on by page number.
- Filter values go out in UTC with an explicit offset (the server refuses naive ones).
- Pages are small (100 at most), so one walk mostly waits on round trips: the next page is asked
  for while the caller works on this one, and a long bounded window is cut into ``read_slices`` time
  slices walked at once (by time, not page number: a keyset's next query depends on the page read),
  all under the one rate budget.
"""

from __future__ import annotations

import dataclasses
import logging
import string
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

from ml_connector_dagster.core import http as core_http
from ml_connector_dagster.core.http import (
    ApiError,
    RateLimiter,
    RetryPolicy,
    TransportFailure,
    build_http_client,
    concurrent_pages,
    pipelined_pages,
    raise_for_api_error,
    rate_limiter_for,
    retry_after_seconds,
    retry_safe,
)
from ml_connector_dagster.core.oauth import ClientCredentialsAuth

from .cxml import (
    CxmlDocument,
    CxmlEnvelope,
    CxmlRejected,
    CxmlReplyUnreadable,
    CxmlStatus,
    CxmlTemporaryFailure,
    DocumentStatusUpdate,
    InvoiceStatusUpdate,
    build_status_update,
    outcome_of,
    parse_reply,
)
from .models import MODIFIED_FIELD, modified_at

__all__ = [
    "CxmlClient",
    "JaggaerClient",
    "JaggaerEntity",
    "format_filter_timestamp",
    "resolve_paths",
]

logger = logging.getLogger("ml_connector.jaggaer")

SYSTEM = "jaggaer"
CXML_SYSTEM = "jaggaer.cxml"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SORT = f"{MODIFIED_FIELD},asc"


class JaggaerEntity(StrEnum):
    """The record types the connector reads; the keys of the ``paths`` setting."""

    PURCHASE_ORDERS = "purchase_orders"
    INVOICES = "invoices"
    VENDORS = "vendors"
    GL_ACCOUNTS = "gl_accounts"


ID_FIELDS = {JaggaerEntity.PURCHASE_ORDERS: "purchaseOrderId", JaggaerEntity.INVOICES: "invoiceId",
             JaggaerEntity.VENDORS: "supplierId", JaggaerEntity.GL_ACCOUNTS: "code"}


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a path template needs."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def resolve_paths(templates: Mapping[str, str], parameters: Mapping[str, str] | None = None) -> dict[JaggaerEntity, str]:
    """Each entity's path, its template's ``{placeholders}`` filled (URL-quoted) from ``parameters``.

    Raises ``ValueError`` naming the entity for a missing entity, a template that is not an absolute
    path, or a placeholder without a value.
    """
    parameters = dict(parameters or {})
    resolved: dict[JaggaerEntity, str] = {}
    for entity in JaggaerEntity:
        template = templates.get(entity.value)
        if not template:
            raise ValueError(f"paths.{entity.value}: no path configured")
        if not template.startswith("/") or "?" in template or "#" in template:
            raise ValueError(f"paths.{entity.value}: {template!r} must be an absolute path without query")
        missing = placeholders(template) - parameters.keys()
        if missing:
            raise ValueError(f"paths.{entity.value}: no value for {', '.join(sorted(missing))} in path_parameters")
        values = {name: quote(str(value), safe="") for name, value in parameters.items()}
        resolved[entity] = template.format(**values).rstrip("/")
    return resolved


def format_filter_timestamp(moment: datetime) -> str:
    """``2026-01-05T10:31:28.402000+00:00``: UTC with an explicit offset (a naive value is refused)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("J1P filters need an aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclasses.dataclass
class _KeysetWalk:
    """Where a keyset walk over ``lastModifiedDate`` stands: the next request, and what a page moves on."""

    id_field: str
    start: datetime
    until: datetime | None
    page_size: int
    page_number: int = 0
    seen_at_start: set[str] = dataclasses.field(default_factory=set)  # ids already yielded at exactly ``start``

    def params(self) -> dict[str, Any]:
        """The query of the next page."""
        params: dict[str, Any] = {"lastModifiedFrom": format_filter_timestamp(self.start), "sort": SORT,
                                  "page": self.page_number, "size": self.page_size}
        if self.until is not None:
            params["lastModifiedTo"] = format_filter_timestamp(self.until)
        return params

    def step(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The page's records not yielded before, and the next page's query (None: this was the last)."""
        content: list[Any] = body["content"]
        fresh = [record for record in content if not self._seen(record)]
        if _is_last(body, content):
            return fresh, None
        stamps = [(moment, str(record.get(self.id_field))) for record in content
                  if isinstance(record, Mapping) and (moment := modified_at(record)) is not None]
        latest = max((moment for moment, _ in stamps), default=None)
        if latest is not None and latest > self.start:
            self.start, self.page_number = latest, 0
            self.seen_at_start = {record_id for moment, record_id in stamps if moment == latest}
        else:
            # A whole page of one instant (or of unreadable stamps): the next page of the same query.
            self.page_number += 1
            self.seen_at_start |= {record_id for _, record_id in stamps}
        return fresh, self.params()

    def _seen(self, record: Any) -> bool:
        return (isinstance(record, Mapping) and str(record.get(self.id_field)) in self.seen_at_start
                and modified_at(record) == self.start)


def _is_last(body: Mapping[str, Any], content: list[Any]) -> bool:
    if not content or body.get("last") is True:
        return True
    number, pages = body.get("number"), body.get("totalPages")
    return isinstance(number, int) and isinstance(pages, int) and number + 1 >= pages


class JaggaerClient:
    """Typed reads of one J1P instance over an ``httpx.Client`` from the core factory."""

    def __init__(self, http: httpx.Client, paths: Mapping[JaggaerEntity, str], *, page_size: int = 100,
                 read_slices: int = 1, secrets: tuple[str, ...] = ()) -> None:
        """Wrap a ready client (base URL and auth set); most callers want :meth:`build`."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if read_slices < 1:
            raise ValueError("read_slices must be at least 1")
        self.http = http
        self.paths = dict(paths)
        self.page_size = page_size
        self.read_slices = read_slices
        self._secrets = secrets

    @classmethod
    def build(
        cls,
        *,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        paths: Mapping[str, str],
        path_parameters: Mapping[str, str] | None = None,
        page_size: int = 100,
        read_slices: int = 1,
        timeout_s: float = 30.0,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> JaggaerClient:
        """A client authenticated with client credentials at the instance's Keycloak token endpoint;
        ``read_slices``: how many time slices of a long bounded read go at once (1: one walk)."""
        missing = [name for name, value in (("client_id", client_id), ("client_secret", client_secret)) if not value]
        if missing:
            raise ValueError(f"JAGGAER J1P needs {', '.join(missing)} (is the environment variable set?)")
        auth = ClientCredentialsAuth(token_url, client_id, client_secret, transport=transport, system=SYSTEM,
                                     refresh_margin_s=30)
        http = build_http_client(
            SYSTEM, base_url.rstrip("/"), auth=auth, headers={"Accept": "application/json"}, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            rate_limiter=rate_limiter if rate_limiter is not None else rate_limiter_for(SYSTEM),
            secrets=(client_secret,),
        )
        return cls(http, resolve_paths(paths, path_parameters), page_size=page_size, read_slices=read_slices,
                   secrets=(client_secret,))

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.http.close()

    def __enter__(self) -> JaggaerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"JaggaerClient(base_url={str(self.http.base_url)!r}, page_size={self.page_size}, "
                f"read_slices={self.read_slices})")

    # -- reads -------------------------------------------------------------------------------------
    def iter_changed(
        self, entity: JaggaerEntity, since: datetime, until: datetime | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records modified at or after ``since`` and, when given, strictly before ``until``.

        Walks by keyset over ``lastModifiedDate`` (see the module doc), so a record changed during
        the read is never skipped; it may come twice (again with its new timestamp). Records
        without a readable timestamp are passed on (the caller quarantines them). The next page is
        asked for while the caller works on this one. A bounded window too long for one walk to
        read quickly is cut in time slices walked at once (:meth:`_slices`), under the same budget.
        """
        path = self.paths[entity]

        def fetch(params: dict[str, Any]) -> dict[str, Any]:
            return self._get_page(path, params)

        walk = _KeysetWalk(ID_FIELDS[entity], since, until, self.page_size)
        first = fetch(walk.params())
        fresh, following = walk.step(first)
        if fresh:
            yield fresh
        if following is None:
            return
        slices = self._slices(walk, first)
        if len(slices) < 2:
            yield from pipelined_pages(fetch, following, walk.step, name="jaggaer-page")
            return
        yield from concurrent_pages(fetch, [(part.params(), part.step) for part in slices], name="jaggaer-slice")

    def _slices(self, walk: _KeysetWalk, first: Mapping[str, Any]) -> list[_KeysetWalk]:
        """The rest of a bounded walk as up to ``read_slices`` walks of equal time spans.

        Only where it pays: each slice costs a request more than one walk would (its last, short
        page), so a window is cut only when at least ten pages per slice remain (under 10% more
        requests). A slice's records are those stamped in it, so every record comes from exactly one.
        """
        total, seen = first.get("totalElements"), len(first.get("content") or ())
        if walk.until is None or self.read_slices < 2 or not isinstance(total, int):
            return [walk]
        count = min(self.read_slices, (total - seen) // (10 * self.page_size))
        span = walk.until - walk.start
        if count < 2 or span <= timedelta(milliseconds=count):
            return [walk]
        bounds = [walk.start + span * n / count for n in range(count)] + [walk.until]
        head = dataclasses.replace(walk, until=bounds[1])  # where the first page left off (its keyset)
        return [head] + [_KeysetWalk(walk.id_field, low, high, self.page_size)
                         for low, high in zip(bounds[1:-1], bounds[2:], strict=True)]

    def iter_all(self, entity: JaggaerEntity) -> Iterator[list[dict[str, Any]]]:
        """Every record of ``entity`` (reference data), walked like :meth:`iter_changed` from the epoch."""
        yield from self.iter_changed(entity, EPOCH)

    def get(self, entity: JaggaerEntity, record_id: str | int) -> dict[str, Any]:
        """One record by its id."""
        response = self.http.get(f"{self.paths[entity]}/{quote(str(record_id), safe='')}")
        raise_for_api_error(response, SYSTEM, self._secrets)
        body = response.json()
        if not isinstance(body, dict):
            raise self._unexpected(response, "expected a JSON object")
        return body

    # -- plumbing ----------------------------------------------------------------------------------
    def _get_page(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        response = self.http.get(path, params=params)
        raise_for_api_error(response, SYSTEM, self._secrets)
        try:
            body = response.json()
        except ValueError:
            raise self._unexpected(response, "the answer is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise self._unexpected(response, "expected a page object with a 'content' list")
        return body

    def _unexpected(self, response: httpx.Response, detail: str) -> ApiError:
        return ApiError(system=SYSTEM, status_code=response.status_code, method=response.request.method,
                        url=str(response.request.url), detail=detail, secrets=self._secrets)


class CxmlClient:
    """Sends cXML documents to the JAGGAER cXML endpoint and maps the answer's Status.

    2xx returns the :class:`CxmlStatus`; 4xx raises :class:`CxmlRejected` (dead-letter it); a 5xx
    Status, an HTTP 5xx/429 or no answer is retried with the very same bytes (the payloadID makes a
    resend safe), then raises :class:`CxmlTemporaryFailure`; an unreadable answer raises
    :class:`CxmlReplyUnreadable`. The shared secret never reaches a log line or an error.
    """

    def __init__(self, http: httpx.Client, url: str, envelope: CxmlEnvelope, shared_secret: str, *,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] | None = None) -> None:
        if not shared_secret:
            raise ValueError("the cXML shared secret is empty (is JAGGAER_CXML_SHARED_SECRET set?)")
        self.http = http
        self.url = url
        self.envelope = envelope
        self._shared_secret = shared_secret
        self._retry = retry or RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=30.0)
        self._sleep = sleep

    @classmethod
    def build(cls, *, url: str, envelope: CxmlEnvelope, shared_secret: str, timeout_s: float = 30.0,
              retry: RetryPolicy | None = None, rate_limiter: RateLimiter | None = None,
              transport: httpx.BaseTransport | None = None) -> CxmlClient:
        """A client for the cXML endpoint at ``url``; retries are this class's, not the transport's."""
        http = build_http_client(
            CXML_SYSTEM, "", transport=transport, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            retry=RetryPolicy(max_attempts=1),
            rate_limiter=rate_limiter if rate_limiter is not None else rate_limiter_for(CXML_SYSTEM),
            secrets=(shared_secret,),
        )
        return cls(http, url, envelope, shared_secret, retry=retry)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CxmlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CxmlClient(url={self.url!r}, sender={self.envelope.sender.identity!r})"

    # -- what the connector confirms -----------------------------------------------------------------
    def confirm_invoice_status(self, update: InvoiceStatusUpdate) -> CxmlStatus:
        """Tell JAGGAER an invoice was received (processing), reconciled, is being paid or was paid."""
        return self.send(build_status_update(self.envelope, self._shared_secret, update))

    def confirm_document_status(self, update: DocumentStatusUpdate) -> CxmlStatus:
        """Tell JAGGAER the status of a document, e.g. goods received against a purchase order."""
        return self.send(build_status_update(self.envelope, self._shared_secret, update))

    def build_status_update(self, update: InvoiceStatusUpdate | DocumentStatusUpdate) -> CxmlDocument:
        """The document :meth:`send` would send for ``update`` (kept by callers that resend later)."""
        return build_status_update(self.envelope, self._shared_secret, update)

    # -- sending -------------------------------------------------------------------------------------
    def send(self, document: CxmlDocument) -> CxmlStatus:
        """POST ``document`` and return its 2xx Status; see the class doc for the other outcomes."""
        attempts = self._retry.max_attempts
        for attempt in range(1, attempts + 1):
            status, detail, wait = self._attempt(document)
            if status is not None:
                outcome = outcome_of(status)
                if outcome == "ok":
                    logger.info("cXML %s %s -> %s", document.request, document.payload_id, status.code)
                    return status
                if outcome == "rejected":
                    logger.warning("cXML %s %s rejected: %s %s", document.request, document.payload_id,
                                   status.code, status.text)
                    raise CxmlRejected(status, document.payload_id)
                detail = str(status)
            if attempt == attempts:
                raise CxmlTemporaryFailure(f"{detail} after {attempts} attempt(s)", document.payload_id, status)
            delay = max(self._retry.backoff_s(attempt), wait or 0.0)
            logger.warning("cXML %s %s: %s; retrying in %.1fs (attempt %d of %d)", document.request,
                           document.payload_id, detail, delay, attempt, attempts)
            (self._sleep or core_http.default_sleep)(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(self, document: CxmlDocument) -> tuple[CxmlStatus | None, str, float | None]:
        """(the reply's Status, or None when there is none worth reading; what happened; Retry-After)."""
        try:
            response = self.http.post(self.url, content=document.xml, extensions=retry_safe(),
                                      headers={"Content-Type": "text/xml; charset=UTF-8"})
        except TransportFailure as exc:
            return None, exc.detail or "no answer", None
        http_status = response.status_code
        if http_status == 429 or http_status >= 500:
            try:
                status: CxmlStatus | None = parse_reply(response.content)
            except CxmlReplyUnreadable:
                status = None
            if status is not None and outcome_of(status) != "retry":
                status = None  # an HTTP 5xx is transient whatever its body says
            return status, f"HTTP {http_status}", retry_after_seconds(response)
        try:
            return parse_reply(response.content), "", None
        except CxmlReplyUnreadable as exc:
            if http_status >= 400:
                # A gateway refusing at the HTTP level (401, 404 ...): as final as a cXML 4xx.
                raise CxmlRejected(CxmlStatus(http_status, response.reason_phrase or "HTTP error", str(exc)),
                                   document.payload_id) from None
            raise
