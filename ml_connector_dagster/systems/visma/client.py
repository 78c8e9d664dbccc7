"""The Visma.net ERP API, as the connector uses it: paged reads of changed records, single reads
with their ETag, conditional updates and creates.

The traps this client exists to avoid (see API_NOTES.md):

- ``pageNumber``/``pageSize`` are mandatory on every list; paging metadata is in the body (each
  record's ``metadata: {totalCount, maxPageSize}``), and the server silently caps ``pageSize`` at
  ``maxPageSize`` — so a page is "short" relative to the *effective* size, never to what was asked.
- ``lastModifiedDateTime`` is ignored without ``lastModifiedDateTimeCondition``; both are always
  sent together, the value in UTC with an explicit offset.
- The legacy API answers 200 with an empty list when ``ipp-company-id`` is missing; the legacy
  flavour always sends it.
- A 401 that survives a token refresh raises :class:`AuthenticationFailed`; it never ends a read as
  "success with 0 records".

The filter has a lower bound only (one condition per call), so ``until`` is applied here, after
reading: a read of an old window pages through everything changed since its start.

Paging overlaps the round trip with the caller's work: once a page shows another one must follow
(never speculatively, so no call is wasted), the next page is requested on a helper thread while
the caller validates and lands the current one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from ml_connector_dagster.core.canonical_json import loads
from ml_connector_dagster.core.http import (
    ApiError,
    RateLimiter,
    build_http_client,
    raise_for_api_error,
    rate_limiter_for,
)
from ml_connector_dagster.core.oauth import ClientCredentialsAuth

from .models import parse_utc

__all__ = [
    "ApiFlavour",
    "VismaClient",
    "VismaEntity",
    "format_visma_timestamp",
]

logger = logging.getLogger("ml_connector.visma")

SYSTEM = "visma"
ApiFlavour = Literal["connect", "legacy"]
LEGACY_APPLICATION_TYPE = "Visma.net Financials"
MODIFIED_FIELD = "lastModifiedDateTime"


class VismaEntity(StrEnum):
    """The record types the connector reads, named as in the API."""

    SUPPLIER_INVOICE = "supplierInvoice"
    PURCHASE_ORDER = "purchaseorder"
    SUPPLIER = "supplier"
    ACCOUNT = "account"
    CUSTOMER_INVOICE = "customerinvoice"
    PAYMENT = "payment"  # customer (AR) payments
    SUPPLIER_PAYMENT = "supplierPayment"  # supplier (AP) payments
    JOURNAL_TRANSACTION = "journaltransaction"
    DIMENSION = "dimension"


@dataclass(frozen=True)
class _Route:
    path: str
    key_fields: tuple[str, ...]
    # /v2/journaltransaction counts *lines* in pageSize/totalCount, so one batch can be split
    # across two pages: its line list is continued on the next page.
    lines_field: str | None = None


_ROUTES: dict[VismaEntity, _Route] = {
    VismaEntity.SUPPLIER_INVOICE: _Route("/v1/supplierInvoice", ("documentType", "referenceNumber")),
    VismaEntity.PURCHASE_ORDER: _Route("/v1/purchaseorder", ("orderNbr",)),
    VismaEntity.SUPPLIER: _Route("/v1/supplier", ("number",)),
    VismaEntity.ACCOUNT: _Route("/v1/account", ("accountCD",)),
    VismaEntity.CUSTOMER_INVOICE: _Route("/v1/customerinvoice", ("documentType", "referenceNumber")),
    VismaEntity.PAYMENT: _Route("/v1/payment", ("type", "refNbr")),
    VismaEntity.SUPPLIER_PAYMENT: _Route("/v1/supplierPayment", ("type", "refNbr")),
    VismaEntity.JOURNAL_TRANSACTION: _Route(
        "/v2/journaltransaction", ("module", "batchNumber"), lines_field="journalTransactionLines"
    ),
    VismaEntity.DIMENSION: _Route("/v1/dimension", ("id",)),
}


def format_visma_timestamp(moment: datetime) -> str:
    """``2026-01-05T10:31:28.402+00:00``: UTC, milliseconds, explicit offset (never a bare local time)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("Visma filters need an aware datetime; a naive one would be read in the server's zone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def modified_at(raw: Mapping[str, Any]) -> datetime | None:
    """A raw record's ``lastModifiedDateTime`` in UTC, or None when missing or unreadable."""
    try:
        return parse_utc(raw.get(MODIFIED_FIELD))
    except (TypeError, ValueError):
        return None


def _page_metadata(page: list[Any]) -> tuple[int | None, int | None]:
    """(totalCount, maxPageSize) from the first record's ``metadata``, when the server sent them."""
    first = page[0] if page and isinstance(page[0], Mapping) else {}
    metadata = first.get("metadata") if isinstance(first.get("metadata"), Mapping) else {}

    def number(name: str) -> int | None:
        value = metadata.get(name)
        return int(value) if isinstance(value, int | float) and value > 0 else None

    return number("totalCount"), number("maxPageSize")


def _is_last_page(page: list[Any], units: int, page_size: int, total_count: int | None, read: int) -> bool:
    """No more pages: an empty or short one, an endpoint that sent everything at once, or totalCount read."""
    return (
        not page
        or units < page_size
        or len(page) > page_size  # the endpoint does not page (/v1/account): it sent all
        or (total_count is not None and read >= total_count)
    )


def _line_count(record: Any, lines_field: str) -> int:
    lines = record.get(lines_field) if isinstance(record, Mapping) else None
    return len(lines) if isinstance(lines, list) and lines else 1


class VismaClient:
    """Typed access to one Visma.net company over an ``httpx.Client`` from the core factory."""

    def __init__(self, http: httpx.Client, *, page_size: int = 500, secrets: tuple[str, ...] = ()) -> None:
        """Wrap a ready client (base URL, auth and company headers set); most callers want :meth:`build`."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.http = http
        self.page_size = page_size
        self._secrets = secrets

    @classmethod
    def build(
        cls,
        *,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        tenant_id: str,
        company_id: str | None = None,
        api_flavour: ApiFlavour = "connect",
        scope: str | None = None,
        page_size: int = 500,
        timeout_s: float = 30.0,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> VismaClient:
        """A client authenticated with Visma Connect client credentials (``tenant_id`` in the token form).

        The legacy flavour also sends ``ipp-company-id`` and ``ipp-application-type`` on every call:
        without them the legacy API answers some lists with 200 and nothing in them.
        """
        missing = [name for name, value in (("client_id", client_id), ("client_secret", client_secret),
                                            ("tenant_id", tenant_id)) if not value]
        if api_flavour == "legacy" and not company_id:
            missing.append("company_id")
        if missing:
            raise ValueError(f"Visma {api_flavour} API needs {', '.join(missing)} (is the environment variable set?)")
        headers = {"Accept": "application/json"}
        if api_flavour == "legacy":
            headers |= {"ipp-company-id": str(company_id), "ipp-application-type": LEGACY_APPLICATION_TYPE}
        auth = ClientCredentialsAuth(
            token_url, client_id, client_secret, scope=scope, extra_params={"tenant_id": tenant_id},
            transport=transport, system=SYSTEM,
        )
        http = build_http_client(
            SYSTEM, base_url.rstrip("/"), auth=auth, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            rate_limiter=rate_limiter if rate_limiter is not None else rate_limiter_for(SYSTEM),
            secrets=(client_secret,),
        )
        return cls(http, page_size=page_size, secrets=(client_secret,))

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.http.close()

    def __enter__(self) -> VismaClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VismaClient(base_url={str(self.http.base_url)!r}, page_size={self.page_size})"

    # -- reads -------------------------------------------------------------------------------

    def iter_changed(
        self, entity: VismaEntity, since: datetime, until: datetime | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records modified at or after ``since`` and, when given, strictly before ``until``.

        Sends ``lastModifiedDateTime=<since in UTC>`` with ``lastModifiedDateTimeCondition=>=``.
        Records whose timestamp cannot be read are passed on (the caller quarantines them).
        """
        params = {MODIFIED_FIELD: format_visma_timestamp(since), f"{MODIFIED_FIELD}Condition": ">="}
        for page in self.iter_pages(entity, params):
            if until is not None:
                page = [r for r in page if (m := modified_at(r)) is None or m < until]
            if page:
                yield page

    def iter_pages(
        self, entity: VismaEntity, params: Mapping[str, Any] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list, until a short page, an empty one, or ``totalCount`` records.

        A record seen twice in one pass (pages shift when records are inserted meanwhile) is
        yielded once; a server that ignores paging and repeats a page ends the pass.
        """
        with ThreadPoolExecutor(1, thread_name_prefix="visma-page") as prefetch:
            yield from self._pages(entity, params, prefetch)

    def _pages(self, entity: VismaEntity, params: Mapping[str, Any] | None,
               prefetch: ThreadPoolExecutor) -> Iterator[list[dict[str, Any]]]:
        route = _ROUTES[entity]
        seen: set[tuple[str, ...]] = set()
        held: dict[str, Any] | None = None  # last batch of a full page: its lines may continue
        read = 0
        page_number = 1

        def request(number: int) -> Future[list[Any]]:
            query = {**(params or {}), "pageNumber": number, "pageSize": self.page_size}
            return prefetch.submit(self._get_list, route.path, query)

        coming = request(page_number)
        while True:
            page = coming.result()
            total_count, max_page_size = _page_metadata(page)
            effective_size = min(self.page_size, max_page_size or self.page_size)  # the server caps pageSize
            units = sum(_line_count(r, route.lines_field) for r in page) if route.lines_field else len(page)
            fresh: list[dict[str, Any]] = []
            continued = False
            for index, record in enumerate(page):
                key = self._key(route, record)
                if index == 0 and held is not None and route.lines_field and key == self._key(route, held):
                    held[route.lines_field] = [*(held.get(route.lines_field) or []),
                                               *(record.get(route.lines_field) or [])]
                    continued = True
                elif key not in seen:
                    seen.add(key)
                    fresh.append(record)
            read += len(page)
            if page and not fresh and not continued:
                logger.warning("visma %s: page %d repeats earlier records; the server ignores paging",
                               entity, page_number)
                if held is not None:
                    yield [held]
                return
            last_page = _is_last_page(page, units, effective_size, None if route.lines_field else total_count, read)
            if not last_page:
                coming = request(page_number + 1)  # fetched while the caller works on this page
            out = ([held] if held is not None else []) + fresh
            held = None
            if route.lines_field and not last_page and out:
                held = out.pop()
            if out:
                yield out
            if last_page:
                if held is not None:
                    yield [held]
                return
            page_number += 1

    def list_dimension_ids(self) -> list[str]:
        """The ids of every dimension (``GET /v1/dimension`` answers a plain list of strings)."""
        return [str(value) for value in self._get_list(_ROUTES[VismaEntity.DIMENSION].path, {})]

    def get_dimension(self, dimension_id: str) -> dict[str, Any]:
        """One dimension with its segments and their values."""
        record, _ = self.get(VismaEntity.DIMENSION, dimension_id, params={"expandSegmentsValues": "true"})
        return record

    def get(
        self, entity: VismaEntity, record_id: str, *, params: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """One record and its ``ETag`` (the version to send back in ``If-Match``)."""
        response = self.http.get(self._item_path(entity, record_id), params=params)
        self._raise(response)
        body = response.json()
        if not isinstance(body, dict):
            raise self._unexpected(response, "expected a JSON object")
        return body, response.headers.get("ETag")

    # -- writes ------------------------------------------------------------------------------

    def update(self, entity: VismaEntity, record_id: str, body: Mapping[str, Any], etag: str | None) -> str | None:
        """PUT ``body`` (an *UpdateDto, see ``models.as_update_dto``) if the record is still at ``etag``.

        Returns the new ETag. Raises :class:`PreconditionFailed` on 412: someone changed the record
        since it was read — read it again, re-apply the change, and retry.
        """
        headers = {"If-Match": etag} if etag else {}
        response = self.http.put(self._item_path(entity, record_id), json=dict(body), headers=headers)
        self._raise(response)
        return response.headers.get("ETag")

    def create(self, entity: VismaEntity, body: Mapping[str, Any]) -> str:
        """POST a new record; returns its id, taken from the ``Location`` of the 201 answer.

        Not retried once sent (there is no idempotency key): after a lost answer, look the record
        up by its natural key before creating it again.
        """
        response = self.http.post(_ROUTES[entity].path, json=dict(body))
        self._raise(response)
        location = response.headers.get("Location")
        if not location:
            raise self._unexpected(response, "created, but the answer has no Location header")
        return urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _key(route: _Route, record: Any) -> tuple[str, ...]:
        if not isinstance(record, Mapping) or record.get(route.key_fields[-1]) in (None, ""):
            # No id to dedupe on: keep the record as it is (validation will name what is missing).
            return ("", json.dumps(record, sort_keys=True, default=str))
        return tuple(str(record.get(name, "")) for name in route.key_fields)

    @staticmethod
    def _item_path(entity: VismaEntity, record_id: str) -> str:
        return f"{_ROUTES[entity].path}/{quote(str(record_id), safe='')}"

    def _get_list(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        response = self.http.get(path, params=params)
        self._raise(response)
        if response.status_code == 204:
            return []
        try:
            body = loads(response.content)  # a page holds up to 1,000 documents: orjson reads it
        except ValueError:
            raise self._unexpected(response, "the body is not JSON") from None
        if not isinstance(body, list):
            raise self._unexpected(response, "expected a JSON array")
        return body

    def _raise(self, response: httpx.Response) -> None:
        raise_for_api_error(response, SYSTEM, self._secrets)
        if response.status_code == 202:
            # A background job (erp-api-background) was never asked for: treat it as an error.
            raise self._unexpected(response, "202 Accepted: the request was queued as a background job")

    def _unexpected(self, response: httpx.Response, detail: str) -> ApiError:
        return ApiError(
            system=SYSTEM, status_code=response.status_code, method=response.request.method,
            url=str(response.request.url), detail=detail, secrets=self._secrets,
        )
