"""A faithful Visma.net ERP simulator (the Visma Connect API, plus the legacy flavour's traps).

Contract: ``specs/visma-net-v1.swagger.json`` (OpenAPI 3.0.4); behaviour: ``API_NOTES.md``. Records
are the spec's DTOs (``SupplierInvoiceDto``, ``PurchaseOrderDto``, ``SupplierDto``, ``AccountDto``,
``CustomerInvoiceDto``, ``PaymentDto`` (customer payments, ``/v1/payment``), ``SupplierPaymentDto``
(``/v1/supplierPayment``), ``JournalTransactionDto``, ``DtoDimension``), rendered by
:mod:`.demo_data`; null members are left out, as Visma does.

Choices, and why:

- **Auth** ``POST /connect/token`` (form, or HTTP Basic client auth): ``client_credentials`` only,
  ``tenant_id`` required, no refresh token, ``expires_in`` 3600. API calls need
  ``Authorization: Bearer``; ``vismanet_erp_service_api:read|create|update|delete`` scopes gate
  GET/POST/PUT/DELETE (403 when missing).
- **Flavours** ``/v1/...`` and ``/v2/...`` (Visma Connect: the company is the token's tenant), and
  ``/API/controller/api/v1/...`` (legacy): there, without ``ipp-company-id`` every *list* answers
  200 with ``[]`` (the trap), other calls 400; an unknown company 403. The legacy flavour has its
  own, smaller budget (500 calls/h). Paths and query parameter names are case-insensitive, as in
  ASP.NET.
- **Lists** The spec answers bare arrays; paging metadata rides on *each record*
  (``metadata: {totalCount, maxPageSize}``, ``MetadataDto``), so an empty page carries none.
  ``pageNumber`` (1-based) and ``pageSize`` are mandatory where the spec lists them (400 naming the
  missing one); ``/v1/account`` and ``/v1/dimension`` have no paging in the spec and answer
  everything. A ``pageSize`` above ``maxPageSize`` (1000) is *clamped*, as the spec's summary says.
  Supplier payments are also read by type and number (``/v1/supplierPayment/{paymentType}/{paymentNumber}``;
  another type is a 404).
  ``/v2/journaltransaction`` counts *lines* in ``pageSize``/``totalCount`` (spec), so a batch can be
  split across two pages; it needs ``periodId`` or ``lastModifiedDateTime``, and there the latter
  alone means "since" (``>=``; the spec lists no condition for it).
- **lastModifiedDateTime** honoured only together with ``lastModifiedDateTimeCondition`` (``>``,
  ``>=``, ``<``, ``<=``); alone it is ignored and everything comes back. A value without an offset
  is read in the company's zone (Europe/Oslo): the trap for clients that send naive UTC. Records
  answer their timestamps in Oslo time *with* the offset. Order: ``lastModifiedDateTime``, then id.
  Other filters of the spec are accepted and ignored.
- **Versions** supplier invoices, purchase orders, suppliers and supplier payments carry ``timeStamp`` (base64 row
  version); single GET answers it as a quoted ``ETag``. ``PUT`` with a matching ``If-Match`` -> 204
  + new ETag, stale -> 412; without ``If-Match`` the PUT is applied (as the real API does) and
  listed in ``unconditional_puts``. ``POST`` -> 201, empty body, ``Location`` + ``ETag``. PUT/POST
  bodies are the spec's ``*UpdateDto`` (``{"field": {"value": x}}``; a bare value is a 400 naming
  the field; unknown fields are ignored; lines take ``operation`` Insert/Update/Delete and the
  header totals follow them). Unknown supplier, currency, account or VAT code -> 400. Suppliers
  take ``PUT`` only (``SupplierUpdateDto``, no POST, no webhook), and strictly: a member the DTO
  lacks is a 400 naming it, as are ``glAccounts``, ``supplierPaymentMethodDetails`` and
  ``attributeLines`` (not modelled); references (terms, payment method, class, VAT zone, currency,
  parent) must exist; addresses and contacts merge member by member; ``{"value": null}`` clears
  an optional field.
- **Background** any call with ``erp-api-background`` runs at once and answers 202
  ``{id, stateLocation}``; ``GET /v1/background/{id}`` (+ ``/content``) tells the outcome. No
  completion notification is sent.
- **Rate limits** every API answer carries ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (seconds)
  /``-Policy`` (``15000;w=3600``); over the budget -> 429 with ``Retry-After``. Unauthenticated
  calls are not counted.
- **Errors** application errors: ``{"message": "VismaId: <id>. <text>", "ExceptionType",
  "ExceptionMessage", "ExceptionFaultCode", "ExceptionMessageID", "ExceptionDetails"}`` (the spec
  has no error schema; both shapes are read by third-party clients [2nd]). Gateway errors (401,
  404 route, 429): ``{"statusCode", "message"}`` as Azure API Management answers.
- **Webhooks** (payload shape unconfirmed, API_NOTES "?"): on create/update of supplier invoices and
  purchase orders (API or the Python helpers) a JSON body ``{notificationId, tenantId, companyId,
  event: "SupplierInvoice.Updated", entity, action, entityId, resourceUri, lastModifiedDateTime,
  timestamp}`` is POSTed to ``webhook_url`` with ``x-vwd-signature-v1`` = base64(HMAC-SHA256(raw body,
  secret)), ``x-vwd-notification-id`` (unique, kept across retries), ``x-vwd-event-id`` (the event
  type, as third-party receivers read it), ``x-vwd-notification-timestamp``/``x-vwd-webhook-timestamp``
  (epoch ms), ``x-vwd-tenant-id``; retried with exponential backoff, faults per the plan. Visma
  documents no webhook for supplier payments: paying invoices (:meth:`VismaSimulator.pay_supplier_invoices`)
  notifies only the invoices it changes.
- **State** ``/_sandbox/state`` lists every collection in API order, records as a single GET answers
  them; above 5,000 records a collection is summarised as ``{"totalCount", "summarised": true,
  "latest": [last 100]}``.
- **Scale** records are rendered on read from ``(seed, kind, seq)``; only edits are stored. A
  simulator of 1,000,000 supplier invoices (3.1M records in all) builds in about 12 s and ~220 MB
  (a quarter of the time goes to the supplier payments, each placed at the invoice it pays);
  a filtered page of 1000 renders in well under a second.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .delivery import WebhookDispatcher
from .demo_data import (
    ACCOUNTS,
    COMPANY_TIMEZONE,
    COUNTRIES,
    CREDIT_TERMS,
    CURRENCY_RATES_NOK,
    CUSTOMER_INVOICES,
    GL_BY_NUMBER,
    JOURNAL_TRANSACTIONS,
    PAYMENT_METHODS,
    PAYMENTS,
    PURCHASE_ORDERS,
    SUPPLIER_CLASSES,
    SUPPLIER_INVOICES,
    SUPPLIER_PAYMENTS,
    SUPPLIERS,
    VAT_CODES,
    VISMA_KINDS,
    VismaDemoData,
    drop_none,
    payment_application,
    supplier_payment_document,
    to_ms,
    visma_date,
    visma_datetime,
)
from .framework import RateWindow, Simulator, utc_iso

DEMO_CLIENT_ID = "isv_mlconnector_sandbox"
DEMO_CLIENT_SECRET = "sandbox-visma-client-secret-not-for-production"
DEMO_TENANT_ID = "5c1d7a9e-3b2f-4e6a-9d41-7f0c2b8e6a13"
DEMO_COMPANY_ID = "4217350"
DEMO_WEBHOOK_SECRET = "sandbox-visma-webhook-secret-not-for-production"
SCOPE_PREFIX = "vismanet_erp_service_api:"
ALL_SCOPES = tuple(SCOPE_PREFIX + verb for verb in ("read", "create", "update", "delete"))
DEMO_SCOPE = " ".join(ALL_SCOPES[:3])
TOKEN_TTL_S = 3600
MAX_PAGE_SIZE = 1000
DEFAULT_RATE_LIMIT_PER_HOUR = 15_000
LEGACY_RATE_LIMIT_PER_HOUR = 500
WEBHOOK_RETRY_DELAYS_S = (1, 2, 4, 8, 16, 32, 64)
STATE_FULL_LIMIT = 5_000
LEGACY_PREFIX = "/API/controller/api"

_SEQ_BITS = 24  # up to 16.7M records per collection
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_EPOCH_MS = 1_577_836_800_000  # 2020-01-01: keeps a key (and the row version made of it) in 64 bits
_CONDITIONS = (">", ">=", "<", "<=")
_SCOPE_OF_METHOD = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
_MODIFIED_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})?$")
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _key(modified_ms: int, seq: int) -> int:
    return ((modified_ms - _EPOCH_MS) << _SEQ_BITS) | seq


def _row_version(key: int) -> str:
    return base64.b64encode((key & ((1 << 64) - 1)).to_bytes(8, "big")).decode()


@dataclass(frozen=True)
class _Resource:
    """One list/item endpoint pair of the API."""

    path: str  # as in the spec, e.g. "v1/supplierInvoice"
    kind: str
    entity: str  # webhook entity name
    paged: bool = True
    versioned: bool = False  # has timeStamp / ETag
    writable: bool = False  # POST and PUT simulated, both followed by a webhook
    updatable: bool = False  # PUT alone simulated; no webhook (none is documented for it)
    by_lines: bool = False  # pageSize/totalCount count journal lines
    # Document types of a GET by type and number (/v1/supplierPayment/{paymentType}/{paymentNumber}).
    document_types: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        typed = rf"(?:(?P<type>{'|'.join(self.document_types)})/)?" if self.document_types else ""
        return re.compile(rf"^(?P<legacy>{LEGACY_PREFIX})?/{self.path}(?:/{typed}(?P<id>[^/]+))?/?$", re.I)


RESOURCES = (
    _Resource("v1/supplierInvoice", SUPPLIER_INVOICES, "SupplierInvoice", versioned=True, writable=True),
    _Resource("v1/purchaseorder", PURCHASE_ORDERS, "PurchaseOrder", versioned=True, writable=True),
    _Resource("v1/supplier", SUPPLIERS, "Supplier", versioned=True, updatable=True),
    _Resource("v1/account", ACCOUNTS, "Account", paged=False),
    _Resource("v1/customerinvoice", CUSTOMER_INVOICES, "CustomerInvoice"),
    _Resource("v1/payment", PAYMENTS, "Payment"),
    _Resource("v2/journaltransaction", JOURNAL_TRANSACTIONS, "JournalTransaction", by_lines=True),
    _Resource("v1/supplierPayment", SUPPLIER_PAYMENTS, "SupplierPayment", versioned=True,
              document_types=("Payment", "DebitAdj", "Prepayment", "Refund", "VoidPayment", "VoidRefund")),
)
_BY_KIND = {resource.kind: resource for resource in RESOURCES}
_DIMENSION = re.compile(rf"^(?P<legacy>{LEGACY_PREFIX})?/v1/dimension(?:/(?P<id>[^/]+))?/?$", re.I)
_BACKGROUND = re.compile(rf"^(?P<legacy>{LEGACY_PREFIX})?/v1/background/(?P<id>[^/]+)(?P<content>/content)?/?$", re.I)


class VismaApiError(Exception):
    """An error the API answers in Visma's application error shape."""

    def __init__(self, status: int, message: str, fault_code: str = "12000") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fault_code = fault_code


def visma_error(status: int, message: str, fault_code: str = "12000") -> JSONResponse:
    """A Visma application error body (``VismaId`` message + ``Exception*`` fields)."""
    visma_id = str(uuid.uuid4())
    return JSONResponse(
        {
            "message": f"VismaId: {visma_id}. {message}",
            "ExceptionType": "IPPException",
            "ExceptionMessage": message,
            "ExceptionFaultCode": fault_code,
            "ExceptionMessageID": f"{fault_code}_{visma_id}",
            "ExceptionDetails": message,
        },
        status_code=status,
    )


def gateway_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An API-gateway error body (``{"statusCode", "message"}``)."""
    return JSONResponse({"statusCode": status, "message": message}, status_code=status, headers=headers)


def parse_modified_value(text: str) -> int:
    """A ``lastModifiedDateTime`` query value in microseconds since the epoch; naive = Oslo time."""
    if not _MODIFIED_VALUE.match(text):
        raise VismaApiError(400, f"lastModifiedDateTime '{text}' is not a valid date/time", "12020")
    head, dot, tail = text.replace(" ", "T", 1).partition(".")
    if dot:  # fromisoformat takes at most 6 fraction digits; .NET ticks have 7
        digits = re.match(r"\d+", tail).group()  # type: ignore[union-attr]
        head = f"{head}.{digits[:6]}{tail[len(digits):]}"
    moment = datetime.fromisoformat(head)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=COMPANY_TIMEZONE)
    return (moment - _EPOCH_UTC) // timedelta(microseconds=1)


class _Table:
    """One collection: record keys sorted by (lastModified, seq), plus the edits made since generation.

    A key packs ``(modified_ms - 2020) << 24 | seq`` into one int, so the ``lastModifiedDateTime``
    condition is two bisects and a page is a slice: O(log n + page), whatever the size.
    """

    def __init__(self, data: VismaDemoData, kind: str) -> None:
        self.data = data
        self.kind = kind
        self.base_count = self.count = data.counts[kind]
        self.keys = sorted(_key(data.modified_ms(kind, seq), seq) for seq in range(self.count))
        self.modified: dict[int, int] = {}  # seq -> modified ms, for records edited or created here
        self.changes: dict[int, dict[str, Any]] = {}  # seq -> top-level DTO fields replaced
        self.created_at: dict[int, int] = {}  # seq -> creation ms, for records created here
        self._line_starts: list[int] | None = None

    def modified_ms(self, seq: int) -> int:
        edited = self.modified.get(seq)
        return self.data.modified_ms(self.kind, seq) if edited is None else edited

    def seq_of(self, number: str) -> int | None:
        seq = self.data.seq_of(self.kind, number)
        return seq if seq is not None and seq < self.count else None

    def number(self, seq: int) -> str:
        return self.data.number(self.kind, seq)

    def row_version(self, seq: int) -> str:
        return _row_version(_key(self.modified_ms(seq), seq))

    def render(self, seq: int) -> dict[str, Any]:
        """The record as a single GET answers it."""
        record = self.data.render(self.kind, seq, self.created_at.get(seq))
        for name, value in self.changes.get(seq, {}).items():
            if value is None:  # cleared by an update: Visma leaves null members out
                record.pop(name, None)
            else:
                record[name] = copy.deepcopy(value)
        record["lastModifiedDateTime"] = visma_datetime(self.modified_ms(seq))
        if _BY_KIND[self.kind].versioned:
            record["timeStamp"] = self.row_version(seq)
        return record

    def touch(self, seq: int, now_ms: int) -> None:
        """Move a record to the end of the order: it was modified now (strictly after its last change)."""
        old = self.modified_ms(seq)
        old_key = _key(old, seq)
        index = bisect_left(self.keys, old_key)
        if index < len(self.keys) and self.keys[index] == old_key:
            del self.keys[index]
        modified = max(now_ms, old + 1)
        self.modified[seq] = modified
        insort(self.keys, _key(modified, seq))
        self._line_starts = None

    def add(self, now_ms: int) -> int:
        seq = self.count
        if seq > _SEQ_MASK:
            raise VismaApiError(400, f"{self.kind}: numbering series exhausted")
        self.count += 1
        self.created_at[seq] = now_ms
        self.modified[seq] = now_ms
        insort(self.keys, _key(now_ms, seq))
        self._line_starts = None
        return seq

    def window(self, condition: str | None, value_us: int | None) -> tuple[int, int]:
        """Index range of ``keys`` matching ``lastModifiedDateTime <condition> value``."""
        start, end = 0, len(self.keys)
        if condition is None or value_us is None:
            return start, end
        floor_ms = value_us // 1000
        ceil_ms = -(-value_us // 1000)
        if condition == ">":
            start = bisect_right(self.keys, _key(floor_ms, _SEQ_MASK))
        elif condition == ">=":
            start = bisect_left(self.keys, _key(ceil_ms, 0))
        elif condition == "<":
            end = bisect_left(self.keys, _key(ceil_ms, 0))
        else:
            end = bisect_right(self.keys, _key(floor_ms, _SEQ_MASK))
        return start, max(start, end)

    def line_starts(self) -> list[int]:
        """Journal lines before each key position (``pageSize`` counts lines there)."""
        if self._line_starts is None:
            counts = (self.data.journal_line_count(key & _SEQ_MASK) for key in self.keys)
            self._line_starts = [0, *accumulate(counts)]
        return self._line_starts

    def seqs(self) -> list[int]:
        return [key & _SEQ_MASK for key in self.keys]

    def edits(self) -> dict[str, Any]:
        """What this table holds beyond its generated records (what a saved tenant keeps)."""
        return {"count": self.count, "modified": self.modified, "changes": self.changes, "created_at": self.created_at}

    def restore_edits(self, edits: dict[str, Any]) -> None:
        """Put back what :meth:`edits` returned, onto a table freshly generated from the same data."""
        if edits["count"] < self.base_count or len(self.keys) != self.base_count:
            raise ValueError(f"{self.kind}: edits fit only a freshly generated table of the same size")
        modified = dict(edits["modified"])
        # Generated keys of untouched records stay; every edited or created record has a modified time.
        untouched = [key for key in self.keys if key & _SEQ_MASK not in modified]
        self.keys = sorted(untouched + [_key(ms, seq) for seq, ms in modified.items()])
        self.count = edits["count"]
        self.modified = modified
        self.changes = copy.deepcopy(edits["changes"])
        self.created_at = dict(edits["created_at"])
        self._line_starts = None


class VismaSimulator(Simulator):
    """Visma.net ERP: one demo company (Fjordlys Industri AS, Oslo), Visma Connect + legacy flavour."""

    name: ClassVar[str] = "visma"
    default_port: ClassVar[int] = 8801
    state_version: ClassVar[int] = 2  # 2: supplier payments
    # The generation anchor first: restoring it regenerates the tables the edits then go onto.
    state_attributes: ClassVar[tuple[str, ...]] = (
        *Simulator.state_attributes, "data_anchor", "table_edits", "background_jobs", "unconditional_puts",
        "_notifications",
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        size: int = 200,
        days: float = 14,
        webhook_url: str | None = None,
        webhook_secret: str = DEMO_WEBHOOK_SECRET,
        start: datetime | None = None,
        time_scale: float = 1.0,
        rate_limit_per_hour: int = DEFAULT_RATE_LIMIT_PER_HOUR,
        legacy_rate_limit_per_hour: int = LEGACY_RATE_LIMIT_PER_HOUR,
        rate_window_s: float = 3600.0,
        webhook_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``start`` pins the simulator's clock (and so the generated data) to a moment; ``size`` is
        the number of supplier invoices (the other collections scale from it). ``rate_window_s``
        shortens the budget's hour (the benchmarks shrink ``rate_limit_per_hour`` with it, so a
        backfill meets the window's refill in minutes, not hours)."""
        super().__init__(seed=seed, webhook_url=webhook_url)
        if start is not None:
            start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            self.clock.advance(start.timestamp() - self.clock.time())
        self.webhook_secret = webhook_secret
        self.size, self.days = size, days
        self._generate(self.now())
        self.tables = {kind: _Table(self.data, kind) for kind in VISMA_KINDS}
        self.rate_window = RateWindow(rate_limit_per_hour, rate_window_s, self.clock)
        self.legacy_rate_window = RateWindow(legacy_rate_limit_per_hour, 3600, self.clock)
        self._rate_seen: dict[int, tuple[int, float]] = {}  # id(window) -> (remaining, resets at)
        self.background_jobs: dict[str, dict[str, Any]] = {}
        self.unconditional_puts: list[str] = []
        self._notifications = 0
        self.webhooks = WebhookDispatcher(
            self, self._sign, retry_delays_s=WEBHOOK_RETRY_DELAYS_S, time_scale=time_scale,
            transport=webhook_transport,
        )

    def _generate(self, anchor: datetime) -> None:
        """The demo company's data as generated at ``anchor`` (the tables are built on it separately)."""
        self._anchor = anchor
        self.data = VismaDemoData(seed=self.seed, size=self.size, days=self.days, anchor=anchor)
        self.dimensions_modified_ms = self.data.schedule.cluster_ms("dimensions", 1)

    # -- persistence ---------------------------------------------------------------------------
    @property
    def data_anchor(self) -> datetime:
        """The moment the demo data was generated relative to; a restored tenant keeps its own."""
        return self._anchor

    @data_anchor.setter
    def data_anchor(self, anchor: datetime) -> None:
        # Always followed by ``table_edits`` (see state_attributes), which rebuilds the tables on it.
        self._generate(anchor)

    @property
    def table_edits(self) -> dict[str, dict[str, Any]]:
        """Per collection, the records created and edited since generation (setting it rebuilds the tables)."""
        return {kind: table.edits() for kind, table in self.tables.items()}

    @table_edits.setter
    def table_edits(self, edits: dict[str, dict[str, Any]]) -> None:
        tables = {kind: _Table(self.data, kind) for kind in VISMA_KINDS}
        for kind, table in tables.items():
            table.restore_edits(edits[kind])
        self.tables = tables

    def state_identity(self) -> dict[str, Any]:
        return {**super().state_identity(), "size": self.size, "days": self.days}

    # -- the Simulator contract ----------------------------------------------------------------
    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/connect/token", self._token_endpoint, methods=["POST"]),
            Route("/{path:path}", self._api_endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]

    def collections(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        with self.lock:
            for kind, table in self.tables.items():
                seqs = table.seqs()
                if len(seqs) <= STATE_FULL_LIMIT:
                    state[kind] = [table.render(seq) for seq in seqs]
                else:
                    state[kind] = {"totalCount": len(seqs), "summarised": True,
                                   "latest": [table.render(seq) for seq in seqs[-100:]]}
            state["dimensions"] = self.data.dimensions(self.dimensions_modified_ms)
        return state

    def credentials(self) -> dict[str, Any]:
        return {
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "tenant_id": DEMO_TENANT_ID,
            "company_id": DEMO_COMPANY_ID,
            "scope": DEMO_SCOPE,
            "webhook_secret": self.webhook_secret,
        }

    def secret_values(self) -> list[str]:
        return [DEMO_CLIENT_SECRET, self.webhook_secret, *super().secret_values()]

    def rate_limited_response(self, retry_after_s: float) -> Response:
        seconds = max(0, math.ceil(retry_after_s))
        headers = {**self._rate_headers(self.rate_window, 0, retry_after_s), "Retry-After": str(seconds)}
        return gateway_error(429, f"Rate limit is exceeded. Try again in {seconds} seconds.", headers)

    def server_error_response(self, status_code: int) -> Response:
        response = visma_error(status_code, "An error has occurred.", "50000")
        response.headers.update(self._peek_rate_headers(self.rate_window))
        return response

    # -- helpers for tests and the demo (a user editing in Visma) --------------------------------
    def record(self, collection: str, number: str) -> dict[str, Any] | None:
        """One record as ``GET /v1/<resource>/<number>`` answers it, or None."""
        with self.lock:
            table = self.tables[collection]
            seq = table.seq_of(number)
            return None if seq is None else table.render(seq)

    def supplier_invoice(self, number: str) -> dict[str, Any] | None:
        return self.record(SUPPLIER_INVOICES, number)

    def purchase_order(self, number: str) -> dict[str, Any] | None:
        return self.record(PURCHASE_ORDERS, number)

    def invalid_records(self) -> list[tuple[str, str, str]]:
        """``(collection, id, reason)`` of every record generated malformed on purpose."""
        table = self.tables[SUPPLIER_INVOICES]
        return [
            (SUPPLIER_INVOICES, table.number(seq), reason)
            for seq in range(table.base_count)
            if (reason := self.data.invalid_reason(SUPPLIER_INVOICES, seq)) is not None
        ]

    def create_supplier_invoice(self, *, supplier_number: str | None = None, **fields: Any) -> dict[str, Any]:
        """Create a supplier invoice as a Visma user would (fields: DTO names, plain values); emits a webhook."""
        return self._create(SUPPLIER_INVOICES, supplier_number, fields)

    def create_purchase_order(self, *, supplier_number: str | None = None, **fields: Any) -> dict[str, Any]:
        """Create a purchase order (fields: ``PurchaseOrderDto`` names, plain values); emits a webhook."""
        return self._create(PURCHASE_ORDERS, supplier_number, fields)

    def update_supplier_invoice(self, number: str, **changes: Any) -> dict[str, Any]:
        """Edit a supplier invoice (``status="Closed"``, ``description=...``): new lastModified, webhook."""
        return self._update(SUPPLIER_INVOICES, number, changes)

    touch_supplier_invoice = update_supplier_invoice

    def update_purchase_order(self, number: str, **changes: Any) -> dict[str, Any]:
        """Edit a purchase order (``status="Closed"``, ``description=...``): new lastModified, webhook."""
        return self._update(PURCHASE_ORDERS, number, changes)

    def pay_supplier_invoices(self, amounts: dict[str, float | None], *, payment_ref: str | None = None) -> dict[str, Any]:
        """Pay Open supplier invoices of one supplier as a Visma user would: invoice number -> amount
        (None: the whole balance). Creates a released supplier payment and lowers each invoice's balance
        (Closed once nothing is owed), which updates the invoices (their webhooks go out). Visma
        documents no webhook for supplier payments, so none is sent for the payment itself."""
        now_ms = to_ms(self.now())
        with self.lock:
            applied: list[tuple[dict[str, Any], float]] = []
            for number, amount in amounts.items():
                invoice = self.supplier_invoice(number)
                if invoice is None or invoice.get("status") != "Open":
                    raise ValueError(f"supplier invoice {number!r} is not an Open invoice: only those take payments")
                balance = float(invoice.get("balance", invoice["amount"]))
                paid = round(balance if amount is None else amount, 2)
                if not 0 < paid <= balance:
                    raise ValueError(f"supplier invoice {number}: {paid} is not within its balance {balance}")
                applied.append((invoice, paid))
            suppliers = {invoice["supplier"]["number"] for invoice, _ in applied}
            if len(suppliers) != 1:
                raise ValueError(f"a supplier payment pays invoices of one supplier, not {sorted(suppliers)}")
            supplier_seq = self.tables[SUPPLIERS].seq_of(suppliers.pop())
            assert supplier_seq is not None, "a supplier invoice names a known supplier"
            day = datetime.fromtimestamp(now_ms / 1000, tz=COMPANY_TIMEZONE).date()
            lines = [payment_application({**invoice, "balance": round(float(invoice.get("balance", invoice["amount"]))
                                                                      - paid, 2)}, paid, day)
                     for invoice, paid in applied]  # fmt: skip
            payments = self.tables[SUPPLIER_PAYMENTS]
            seq = payments.add(now_ms)
            template = self.data.render(SUPPLIER_PAYMENTS, seq, now_ms)
            document = drop_none(supplier_payment_document(
                number=payments.number(seq), supplier=self.data.party(SUPPLIERS, supplier_seq), payment_type="Payment",
                day=day, currency=applied[0][0]["currencyId"], amount=sum(paid for _, paid in applied),
                applications=lines, payment_ref=payment_ref,
            ))  # fmt: skip
            payments.changes[seq] = {**dict.fromkeys(template), **document}  # nothing of the template survives
            payment = payments.render(seq)
        for (invoice, _), line in zip(applied, lines, strict=True):
            rate = CURRENCY_RATES_NOK.get(invoice["currencyId"], 1.0)
            self._update(SUPPLIER_INVOICES, invoice["referenceNumber"], {
                "balance": line["balance"], "balanceInCurrency": round(line["balance"] * rate, 2),
                **({"status": "Closed", "paySelected": False} if line["balance"] == 0 else {}),
            })  # fmt: skip
        return payment

    def flush_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued webhook delivery succeeded or gave up."""
        return self.webhooks.flush(timeout_s)

    def close(self) -> None:
        """Stop the webhook delivery thread."""
        self.webhooks.close()

    # -- record changes ------------------------------------------------------------------------
    def _create(self, kind: str, supplier_number: str | None, fields: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if supplier_number is not None:
            changes["supplier"], currency = self._supplier_ref(supplier_number)
            changes[_CURRENCY_FIELD[kind]] = currency
        changes.update(fields)
        with self.lock:
            table = self.tables[kind]
            seq = table.add(to_ms(self.now()))
            table.changes[seq] = changes
            record = table.render(seq)
        self._notify(kind, table.number(seq), "Created", record)
        return record

    def _update(self, kind: str, number: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self.tables[kind]
            seq = table.seq_of(number)
            if seq is None:
                raise KeyError(f"{kind}: no record {number!r}")
            before = table.render(seq).get("status")
            table.changes.setdefault(seq, {}).update(changes)
            table.touch(seq, to_ms(self.now()))
            record = table.render(seq)
        action = "StatusChanged" if record.get("status") != before else "Updated"
        self._notify(kind, number, action, record)
        return record

    def _supplier_ref(self, number: str) -> tuple[dict[str, Any], str]:
        """The ``supplier`` member of a document for supplier ``number``, and its currency."""
        table = self.tables[SUPPLIERS]
        seq = table.seq_of(number)
        if seq is None:
            raise VismaApiError(400, f"Supplier '{number}' not found.", "12010")
        party = self.data.party(SUPPLIERS, seq)
        return {"internalId": party.internal_id, "number": party.number, "name": party.name}, party.currency

    # -- webhooks ------------------------------------------------------------------------------
    def _notify(self, kind: str, number: str, action: str, record: dict[str, Any]) -> None:
        resource = _BY_KIND[kind]
        with self.lock:
            self._notifications += 1
            notification_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"visma/{self.seed}/{self._notifications}"))
        event = f"{resource.entity}.{action}"
        payload = {
            "notificationId": notification_id,
            "tenantId": DEMO_TENANT_ID,
            "companyId": DEMO_COMPANY_ID,
            "event": event,
            "entity": resource.entity,
            "action": action,
            "entityId": number,
            "resourceUri": f"/{resource.path}/{number}",
            "lastModifiedDateTime": record.get("lastModifiedDateTime"),
            "timestamp": utc_iso(self.now()),
        }
        headers = {
            "x-vwd-notification-id": notification_id,
            "x-vwd-event-id": event,
            "x-vwd-tenant-id": DEMO_TENANT_ID,
            "x-vwd-notification-timestamp": str(to_ms(self.now())),
        }
        self.webhooks.emit(payload, notification_id, headers)

    def _sign(self, body: bytes) -> dict[str, str]:
        digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).digest()
        return {
            "x-vwd-signature-v1": base64.b64encode(digest).decode(),
            "x-vwd-webhook-timestamp": str(to_ms(self.now())),
        }

    # -- rate limits ---------------------------------------------------------------------------
    def _rate_headers(self, window: RateWindow, remaining: int, reset_s: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(max(0, math.ceil(reset_s))),
            "X-RateLimit-Policy": f"{window.limit};w={int(window.window_s)}",
        }

    def _peek_rate_headers(self, window: RateWindow) -> dict[str, str]:
        remaining, resets_at = self._rate_seen.get(id(window), (window.limit, self.clock.time() + window.window_s))
        now = self.clock.time()
        if now >= resets_at:
            remaining, resets_at = window.limit, now + window.window_s
        return self._rate_headers(window, remaining, resets_at - now)

    # -- HTTP: token ---------------------------------------------------------------------------
    async def _token_endpoint(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return JSONResponse({"error": "invalid_client"}, status_code=400)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if client_id != DEMO_CLIENT_ID or not hmac.compare_digest(client_secret or "", DEMO_CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        tenant = form.get("tenant_id")
        if not tenant:
            return JSONResponse({"error": "invalid_request", "error_description": "tenant_id is missing"},
                                status_code=400)
        if tenant != DEMO_TENANT_ID:
            return JSONResponse({"error": "invalid_request", "error_description": "unknown tenant_id"},
                                status_code=400)
        requested = form.get("scope", "").split() or list(ALL_SCOPES)
        if any(scope not in ALL_SCOPES for scope in requested):
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = self.issue_token("access", DEMO_CLIENT_ID, TOKEN_TTL_S, scopes=requested, tenant_id=tenant)
        return JSONResponse(
            {"access_token": token.value, "expires_in": TOKEN_TTL_S, "token_type": "Bearer",
             "scope": " ".join(requested)},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    # -- HTTP: the API -------------------------------------------------------------------------
    async def _api_endpoint(self, request: Request) -> Response:
        path = request.url.path
        window = self.legacy_rate_window if path.lower().startswith(LEGACY_PREFIX.lower()) else self.rate_window
        handler = self._route(request.method, path)
        if handler is None:
            response: Response = gateway_error(404, "Resource not found")
        elif isinstance(handler, Response):
            response = handler
        else:
            response = await self._guarded(request, window, handler)
        for name, value in self._peek_rate_headers(window).items():
            response.headers.setdefault(name, value)
        return response

    def _route(self, method: str, path: str) -> Callable[..., Awaitable[Response]] | Response | None:
        """The handler for a request (bound to its path parameters), a 405, or None for an unknown path."""
        for resource in RESOURCES:
            match = resource.pattern.match(path)
            if match is None:
                continue
            record_id, legacy = match.group("id"), bool(match.group("legacy"))
            document_type = match.groupdict().get("type")
            if method == "GET":
                return partial(self._list, resource=resource) if record_id is None else partial(
                    self._get, resource=resource, number=record_id, document_type=document_type)
            if document_type is not None:  # the spec has GET only by type and number
                return _method_not_allowed(method)
            if method == "POST" and record_id is None and resource.writable:
                return partial(self._post, resource=resource, legacy=legacy)
            if method == "PUT" and record_id is not None and (resource.writable or resource.updatable):
                return partial(self._put, resource=resource, number=record_id)
            return _method_not_allowed(method)
        if match := _DIMENSION.match(path):
            if method != "GET":
                return _method_not_allowed(method)
            dimension_id = match.group("id")
            return self._dimension_ids if dimension_id is None else partial(self._dimension, dimension_id=dimension_id)
        if match := _BACKGROUND.match(path):
            if method != "GET":
                return _method_not_allowed(method)
            return partial(self._background, job_id=match.group("id"), content=bool(match.group("content")))
        return None

    async def _guarded(
        self, request: Request, window: RateWindow, handler: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Auth, scope, rate budget and company checks around one handler; Visma errors rendered."""
        header = request.headers.get("authorization", "")
        token = self.valid_token(header[7:].strip() if header.lower().startswith("bearer ") else None)
        if token is None:
            return gateway_error(401, "Unauthorized. Access token is missing or invalid.",
                                 {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        needed = SCOPE_PREFIX + _SCOPE_OF_METHOD.get(request.method, "update")
        if needed not in token.scopes:
            return gateway_error(403, f"Insufficient scope: {needed} is required.")
        allowed, remaining, reset = window.hit()
        self._rate_seen[id(window)] = (remaining, self.clock.time() + reset)
        if not allowed:
            seconds = max(1, math.ceil(reset))
            return gateway_error(429, f"Rate limit is exceeded. Try again in {seconds} seconds.",
                                 {**self._rate_headers(window, 0, reset), "Retry-After": str(seconds)})
        legacy = request.url.path.lower().startswith(LEGACY_PREFIX.lower())
        if legacy:
            company = request.headers.get("ipp-company-id")
            if not company:
                if request.method == "GET" and self._is_list(request.url.path):
                    return JSONResponse([])  # the legacy trap: no company, no records, no error
                return visma_error(400, "ipp-company-id header is missing.", "12001")
            if company != DEMO_COMPANY_ID:
                return visma_error(403, f"No access to company in context '{company}'.", "12002")
        background = request.headers.get("erp-api-background")
        try:
            if background and not _BACKGROUND.match(request.url.path):
                return await self._in_background(request, handler, background)
            return await handler(request)
        except VismaApiError as error:
            return visma_error(error.status, error.message, error.fault_code)

    @staticmethod
    def _is_list(path: str) -> bool:
        return any((m := r.pattern.match(path)) and m.group("id") is None for r in RESOURCES) or bool(
            (m := _DIMENSION.match(path)) and m.group("id") is None
        )

    # -- lists ---------------------------------------------------------------------------------
    async def _list(self, request: Request, resource: _Resource) -> Response:
        query = {key.lower(): value for key, value in request.query_params.multi_items()}
        page_number, page_size = _paging(query) if resource.paged else (1, MAX_PAGE_SIZE)
        condition, value_us = _modified_filter(query, resource)
        with self.lock:
            table = self.tables[resource.kind]
            start, end = table.window(condition, value_us)
            if resource.by_lines:
                records, total = self._journal_page(table, start, end, query, page_number, page_size)
            elif resource.paged:
                first = start + (page_number - 1) * page_size
                seqs = [key & _SEQ_MASK for key in table.keys[first:min(end, first + page_size)]]
                records, total = [table.render(seq) for seq in seqs], end - start
            else:
                records = [table.render(key & _SEQ_MASK) for key in table.keys[start:end]]
                total = end - start
        metadata = {"totalCount": total, "maxPageSize": MAX_PAGE_SIZE}
        for record in records:
            record["metadata"] = dict(metadata)
        return Response(orjson.dumps(records), media_type="application/json")  # up to 1,000 documents

    def _journal_page(
        self, table: _Table, start: int, end: int, query: dict[str, str], page_number: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of journal *lines*: batches cut where the page ends continue on the next page."""
        period = query.get("periodid")
        if period is not None and "lastmodifieddatetime" not in query:
            seqs = [s for s in table.seqs()[start:end] if _period(table, s) == period]
            positions = [(s, self.data.journal_line_count(s)) for s in seqs]
            starts = [0, *accumulate(count for _, count in positions)]
        else:
            line_starts = table.line_starts()
            base = line_starts[start]
            positions = [(key & _SEQ_MASK, 0) for key in table.keys[start:end]]
            starts = [line - base for line in line_starts[start:end + 1]]
        total = starts[-1]
        low = (page_number - 1) * page_size
        high = min(total, low + page_size)
        records = []
        index = bisect_right(starts, low) - 1
        while low < high and index < len(positions):
            seq = positions[index][0]
            record = table.render(seq)
            lines = record["journalTransactionLines"]
            record["journalTransactionLines"] = lines[max(0, low - starts[index]):high - starts[index]]
            records.append(record)
            index += 1
            if starts[index] >= high:
                break
        return records, total

    async def _get(self, request: Request, resource: _Resource, number: str, document_type: str | None = None) -> Response:
        with self.lock:
            table = self.tables[resource.kind]
            seq = table.seq_of(number)
            record = None if seq is None else table.render(seq)
        if record is None or (document_type is not None and record.get("type", "").lower() != document_type.lower()):
            shown = number if document_type is None else f"{document_type} {number}"
            raise VismaApiError(404, f"{resource.entity} '{shown}' not found.", "12004")
        headers = {"ETag": f'"{record["timeStamp"]}"'} if resource.versioned else None
        return JSONResponse(record, headers=headers)

    # -- writes --------------------------------------------------------------------------------
    async def _post(self, request: Request, resource: _Resource, legacy: bool) -> Response:
        body = await _json_body(request)
        with self.lock:
            table = self.tables[resource.kind]
            template = table.data.render(resource.kind, table.count, to_ms(self.now()))
            changes = self._changes_from_update_dto(resource.kind, body, template, creating=True)
            seq = table.add(to_ms(self.now()))
            number = table.number(seq)
            table.changes[seq] = changes
            record = table.render(seq)
        self._notify(resource.kind, number, "Created", record)
        prefix = LEGACY_PREFIX if legacy else ""
        location = f"{request.url.scheme}://{request.url.netloc}{prefix}/{resource.path}/{number}"
        return Response(status_code=201, headers={"Location": location, "ETag": f'"{record["timeStamp"]}"'})

    async def _put(self, request: Request, resource: _Resource, number: str) -> Response:
        body = await _json_body(request)
        if_match = request.headers.get("if-match")
        if if_match is not None and self._faults_apply_to("PUT", request.url.path) and self.fault_roll(
            self.fault_plan.etag_race_rate, "etag_412_race"
        ):
            self._concurrent_save(resource, number)
        with self.lock:
            table = self.tables[resource.kind]
            seq = table.seq_of(number)
            if seq is None:
                raise VismaApiError(404, f"{resource.entity} '{number}' not found.", "12004")
            current = table.render(seq)
            if if_match is not None and not _etag_matches(if_match, current["timeStamp"]):
                raise VismaApiError(412, f"{resource.entity} version does not match with If-Match header.", "12412")
            if if_match is None:
                self.unconditional_puts.append(f"/{resource.path}/{number}")
            if resource.kind == SUPPLIERS:
                changes = self._changes_from_supplier_update_dto(body, current)
            else:
                changes = self._changes_from_update_dto(resource.kind, body, current, creating=False)
            before = current.get("status")
            table.changes.setdefault(seq, {}).update(changes)
            table.touch(seq, to_ms(self.now()))
            record = table.render(seq)
        if resource.writable:
            action = "StatusChanged" if record.get("status") != before else "Updated"
            self._notify(resource.kind, number, action, record)
        return Response(status_code=204, headers={"ETag": f'"{record["timeStamp"]}"'})

    def _concurrent_save(self, resource: _Resource, number: str) -> None:
        """Another user saves the record first (nothing changed but its version): the fault behind a 412 race."""
        with self.lock:
            table = self.tables[resource.kind]
            seq = table.seq_of(number)
            if seq is None:
                return
            table.touch(seq, to_ms(self.now()))
            record = table.render(seq)
        if resource.writable:
            self._notify(resource.kind, number, "Updated", record)

    def _changes_from_update_dto(
        self, kind: str, body: Any, current: dict[str, Any], *, creating: bool
    ) -> dict[str, Any]:
        """Top-level DTO changes from a ``SupplierInvoiceUpdateDto`` / ``PurchaseOrderUpdateDto``."""
        if not isinstance(body, dict):
            raise VismaApiError(400, "The request body must be a JSON object.", "12030")
        values: dict[str, Any] = {}
        for name, wrapped in body.items():
            if name in ("invoiceLines", "lines", "timeStamp", "changeDatesOnLines") or wrapped is None:
                continue
            if not isinstance(wrapped, dict) or "value" not in wrapped:
                raise VismaApiError(400, f"Field '{name}' must be an object like {{\"value\": ...}}.", "12031")
            values[name] = wrapped["value"]
        invoice = kind == SUPPLIER_INVOICES
        supplier_field = "supplierNumber" if invoice else "supplier"
        if creating and not values.get(supplier_field):
            raise VismaApiError(400, f"{supplier_field} is required.", "12032")
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name == supplier_field:
                changes["supplier"], currency = self._supplier_ref(str(value))
                changes.setdefault(_CURRENCY_FIELD[kind], currency)
            elif name == _CURRENCY_FIELD[kind]:
                if value not in CURRENCY_RATES_NOK:
                    raise VismaApiError(400, f"Currency '{value}' not found.", "12033")
                changes[name] = value
            elif name in ("creditTermsId", "terms"):
                changes["creditTerms" if invoice else "terms"] = {"id": str(value), "description": str(value)}
            elif name in ("branchNumber", "branch"):
                changes[name] = {"number": str(value), "name": str(value)}
            elif name == "paymentMethod":
                changes[name] = {"id": str(value), "description": str(value)}
            elif name in _DATE_FIELDS:
                changes[name] = visma_date(_parse_date(name, value))
            elif name in (_INVOICE_FIELDS if invoice else _ORDER_FIELDS):
                changes[name] = value
        if "hold" in changes:
            status = current.get("status")
            if changes["hold"]:
                changes["status"] = "Hold"
            elif status == "Hold":
                changes["status"] = "Balanced"
        lines_field = "invoiceLines" if invoice else "lines"
        operations = body.get(lines_field)
        if operations is not None or creating:
            # A new document gets the lines it was sent, or keeps its template's when sent none.
            existing = [] if creating and operations is not None else current.get(lines_field, [])
            lines = _apply_line_operations(kind, existing, operations or [])
            changes[lines_field] = lines
            changes.update(_totals(kind, lines, {**current, **changes}, explicit_amount="amount" in changes))
        return changes

    def _changes_from_supplier_update_dto(self, body: Any, current: dict[str, Any]) -> dict[str, Any]:
        """Top-level ``SupplierDto`` changes from a ``SupplierUpdateDto``; a member it does not have is a 400."""
        if not isinstance(body, dict):
            raise VismaApiError(400, "The request body must be a JSON object.", "12030")
        changes: dict[str, Any] = {}
        for name, wrapped in body.items():
            if name not in SUPPLIER_UPDATE_MEMBERS:
                raise VismaApiError(400, f"Field '{name}' is not a member of SupplierUpdateDto.", "12040")
            if wrapped is None:
                continue
            if name in _SUPPLIER_NOT_SIMULATED:
                raise VismaApiError(400, f"Field '{name}' is not simulated by the sandbox.", "12042")
            if name == "overrideWithClassValues":  # a plain boolean steering class defaults, not simulated
                _checked(name, wrapped, bool, "true or false")
                continue
            changes.update(self._supplier_member(name, _wrapped_value(name, wrapped), current))
        return changes

    def _supplier_member(self, name: str, value: Any, current: dict[str, Any]) -> dict[str, Any]:
        """What one ``SupplierUpdateDto`` member (its unwrapped value) changes; null clears an optional field."""
        if name in _SUPPLIER_REQUIRED and value in (None, ""):
            raise VismaApiError(400, f"{name} is required.", "12032")
        if name == "number":
            if value != current["number"]:
                raise VismaApiError(400, "The supplier number cannot be changed.", "12041")
            return {}
        if name == "overrideNumberSeries":  # numbers a new supplier: nothing to do on an update
            _checked(name, value, bool, "true or false")
            return {}
        if name in _SUPPLIER_TEXT:
            return {name: _checked(name, value, str, "a string")}
        if name in _SUPPLIER_FLAGS:
            return {name: _checked(name, value, bool, "true or false")}
        if name in _SUPPLIER_INTEGERS:
            return {name: _checked(name, value, int, "an integer")}
        if name == "retainagePct":
            percent = _checked(name, value, int | float, "a number")
            return {name: None if percent is None else float(percent)}
        if name in _SUPPLIER_REFERENCES:  # ids and enum names: strings, before they are looked up
            value = _checked(name, value, str, "a string")
        if name in _SUPPLIER_ENUMS:
            if value is not None and value not in _SUPPLIER_ENUMS[name]:
                raise VismaApiError(400, f"Field '{name}' must be one of {', '.join(_SUPPLIER_ENUMS[name])}.", "12041")
            return {name: value}
        if name == "currencyId":
            if value is not None and value not in CURRENCY_RATES_NOK:
                raise VismaApiError(400, f"Currency '{value}' not found.", "12033")
            return {name: value}
        if name in _SUPPLIER_LOOKUPS:
            field, what, known = _SUPPLIER_LOOKUPS[name]
            if value is not None and value not in known:
                raise VismaApiError(400, f"{what} '{value}' not found.", "12041")
            return {field: None if value is None else dict(known[value])}
        if name == "parentRecordNumber":
            return {"parentRecord": self._parent_record(value, current["number"])}
        dto, members = _SUPPLIER_PARTS[name]
        return {name: _supplier_part(name, value, current.get(name), dto, members)}

    def _parent_record(self, number: str | None, own_number: str) -> dict[str, Any] | None:
        """The ``parentRecord`` of a supplier whose parent becomes ``number`` (empty: no parent)."""
        if number in (None, ""):
            return None
        table = self.tables[SUPPLIERS]
        seq = table.seq_of(number)
        if seq is None:
            raise VismaApiError(400, f"Supplier '{number}' not found.", "12010")
        if number == own_number:
            raise VismaApiError(400, "A supplier cannot be its own parent.", "12041")
        return {"number": number, "name": table.render(seq)["name"]}

    # -- dimensions and background jobs --------------------------------------------------------
    async def _dimension_ids(self, request: Request) -> Response:
        return JSONResponse([d["id"] for d in self.data.dimensions(self.dimensions_modified_ms)])

    async def _dimension(self, request: Request, dimension_id: str) -> Response:
        query = {key.lower(): value for key, value in request.query_params.multi_items()}
        condition, value_us = _modified_filter(query, None)
        for dimension in self.data.dimensions(self.dimensions_modified_ms):
            if dimension["id"].lower() != dimension_id.lower():
                continue
            if condition is not None and value_us is not None:
                for segment in dimension["segments"]:
                    segment["segmentValues"] = [
                        v for v in segment["segmentValues"]
                        if _compare(parse_modified_value(v["lastModified"]), condition, value_us)
                    ]
            return JSONResponse(dimension)
        raise VismaApiError(404, f"Dimension '{dimension_id}' not found.", "12004")

    async def _in_background(
        self, request: Request, handler: Callable[[Request], Awaitable[Response]], notify: str
    ) -> Response:
        received = utc_iso(self.now())
        job_id = str(uuid.uuid4())
        try:
            outcome = await handler(request)
        except VismaApiError as error:
            outcome = visma_error(error.status, error.message, error.fault_code)
        base = f"{request.url.scheme}://{request.url.netloc}/v1/background/{job_id}"
        body = bytes(outcome.body) if outcome.body else b""
        had_request_content = bool(await request.body())
        with self.lock:
            self.background_jobs[job_id] = {
                "state": drop_none({
                    "id": job_id,
                    "status": "Finished",
                    "statusCode": outcome.status_code,
                    "receivedUtc": received,
                    "startedUtc": received,
                    "finishedUtc": utc_iso(self.now()),
                    "webhookAddress": notify,
                    "originalUri": str(request.url),
                    "hasResponseContent": bool(body),
                    "hasRequestContent": had_request_content,
                    "contentLocation": f"{base}/content" if body else None,
                    "responseHeaders": {k: v for k, v in outcome.headers.items() if k.lower() in ("location", "etag")},
                }),
                "body": body,
                "media_type": outcome.headers.get("content-type", "application/json"),
            }
        return JSONResponse({"id": job_id, "stateLocation": base}, status_code=202)

    async def _background(self, request: Request, job_id: str, content: bool) -> Response:
        job = self.background_jobs.get(job_id)
        if job is None:
            return gateway_error(404, "Background request not found")
        if content:
            return Response(job["body"], status_code=200 if job["body"] else 204, media_type=job["media_type"])
        return JSONResponse(job["state"])


# -- request parsing and record arithmetic ---------------------------------------------------------

_CURRENCY_FIELD = {SUPPLIER_INVOICES: "currencyId", PURCHASE_ORDERS: "currency"}
_DATE_FIELDS = frozenset({"date", "origInvoiceDate", "dueDate", "cashDiscountDate", "payDate", "promisedOn"})
_INVOICE_FIELDS = frozenset({
    "documentType", "hold", "postPeriod", "financialPeriod", "supplierReference", "description", "paymentRefNo",
    "note", "exchangeRate", "roundingDiffInCurrency", "taxCalculationMode", "cashAccount", "amount", "vatAmount",
    "paymentMessage", "paySelected",
})
_ORDER_FIELDS = frozenset({
    "shippingDestinationType", "fobPoint", "shipVia", "shipTerms", "dontPrint", "dontEmail", "orderType", "hold",
    "description", "exchangeRate", "supplierRef", "controlTotal", "note", "customStr1", "customStr2", "customStr3",
    "customStr4", "customStr5", "customDec1", "customDec2", "customInt1", "customInt2", "customDateTimeUTC1",
})
_VAT_BY_ID = {code.id: code for code in VAT_CODES}

# SupplierUpdateDto (spec), member by member, as it lands on the SupplierDto. Their union,
# SUPPLIER_UPDATE_MEMBERS, is exactly the spec's member list (a test holds it to the spec).
_SUPPLIER_REQUIRED = frozenset({"number", "name", "status", "supplierClassId"})  # "Mandatory field" in SupplierDto
_SUPPLIER_TEXT = frozenset({
    "name", "accountReference", "documentLanguage", "cashAccount", "paymentRefDisplayMask", "vatRegistrationId",
    "corporateId", "note", "naceCode", "retainageCashAccountID",
})
_SUPPLIER_FLAGS = frozenset({"currencyOverride", "currencyRateOverride", "paySeparately", "retainageApply",
                             "landedCostSupplier"})
_SUPPLIER_INTEGERS = frozenset({"numberOfEmployees", "paymentLeadTime"})
_SUPPLIER_ENUMS: dict[str, tuple[str, ...]] = {
    "status": ("Active", "OnHold", "HoldPayments", "Inactive", "OneTime"),
    "chargeBearer": ("Payer", "Beneficiary", "Shared", "ServiceLevel"),
    "accountUsedForPayment": ("IBAN", "BBAN", "BANKGIRO", "PLUSGIRO"),
    "paymentBy": ("DueDate", "DiscountDate"),
}
# member -> (SupplierDto field, what it is, the demo company's records by id)
_SUPPLIER_LOOKUPS: dict[str, tuple[str, str, dict[str, dict[str, str]]]] = {
    "creditTermsId": ("creditTerms", "Credit terms", {i: {"id": i, "description": d} for i, d, _ in CREDIT_TERMS}),
    "paymentMethodId": ("paymentMethod", "Payment method", {i: {"id": i, "description": d} for i, d in PAYMENT_METHODS}),
    "supplierClassId": ("supplierClass", "Supplier class",
                        {i: {"id": i, "description": d} for i, d in SUPPLIER_CLASSES.values()}),
    "vatZoneId": ("vatZone", "VAT zone", {  # the two zones demo_data gives suppliers
        "01": {"id": "01", "description": "Innenlands", "defaultVatCategory": "1"},
        "03": {"id": "03", "description": "Utland", "defaultVatCategory": "1"},
    }),
}
_ADDRESS_MEMBERS = frozenset({"addressLine1", "addressLine2", "addressLine3", "postalCode", "city", "countryId", "county"})
_CONTACT_MEMBERS = frozenset({"name", "attention", "email", "web", "phone1", "phone2", "fax"})
# AddressUpdateDto / ContactInfoUpdateDto members, merged into what the supplier has.
_SUPPLIER_PARTS = {
    **dict.fromkeys(("mainAddress", "remitAddress", "supplierAddress"), ("AddressUpdateDto", _ADDRESS_MEMBERS)),
    **dict.fromkeys(("mainContact", "remitContact", "supplierContact"), ("ContactInfoUpdateDto", _CONTACT_MEMBERS)),
}
# Their Visma-side rules (GL account kinds, payment-method details, company attributes) are not modelled:
# refused loudly rather than dropped silently.
_SUPPLIER_NOT_SIMULATED = frozenset({"glAccounts", "supplierPaymentMethodDetails", "attributeLines"})
SUPPLIER_UPDATE_MEMBERS = frozenset({
    *_SUPPLIER_REQUIRED, *_SUPPLIER_TEXT, *_SUPPLIER_FLAGS, *_SUPPLIER_INTEGERS, *_SUPPLIER_ENUMS,
    *_SUPPLIER_LOOKUPS, *_SUPPLIER_PARTS, *_SUPPLIER_NOT_SIMULATED,
    "currencyId", "parentRecordNumber", "retainagePct", "overrideWithClassValues", "overrideNumberSeries",
})
_SUPPLIER_REFERENCES = frozenset({*_SUPPLIER_ENUMS, *_SUPPLIER_LOOKUPS, "currencyId", "parentRecordNumber"})
_COUNTRY_ID = re.compile(r"^[A-Z]{2}$")


def _method_not_allowed(method: str) -> Response:
    return JSONResponse({"Message": f"The requested resource does not support http method '{method}'."},
                        status_code=405)


def _paging(query: dict[str, str]) -> tuple[int, int]:
    """(pageNumber, pageSize) from the query; both mandatory, pageSize clamped to MAX_PAGE_SIZE."""
    missing = [name for name in ("pageNumber", "pageSize") if name.lower() not in query]
    if missing:
        raise VismaApiError(
            400, f"Pagination parameters are mandatory: {' and '.join(missing)} missing. "
                 f"Use pageNumber (from 1) and pageSize (at most {MAX_PAGE_SIZE}).", "12022")
    numbers = []
    for name in ("pageNumber", "pageSize"):
        raw = query[name.lower()]
        if not raw.isdigit() or int(raw) < 1:
            raise VismaApiError(400, f"{name} must be a positive integer, not '{raw}'.", "12022")
        numbers.append(int(raw))
    return numbers[0], min(numbers[1], MAX_PAGE_SIZE)


def _modified_filter(query: dict[str, str], resource: _Resource | None) -> tuple[str | None, int | None]:
    """(condition, value in µs) of the lastModifiedDateTime filter, or (None, None) when it is ignored."""
    value = query.get("lastmodifieddatetime")
    condition = query.get("lastmodifieddatetimecondition")
    if resource is not None and resource.by_lines:
        if value is None and query.get("periodid") is None:
            raise VismaApiError(400, "PeriodId or LastModifiedDateTime must be provided.", "12023")
        condition = condition or (">=" if value is not None else None)
    if value is None or condition is None:
        return None, None
    if condition not in _CONDITIONS:
        raise VismaApiError(400, f"lastModifiedDateTimeCondition '{condition}' is not one of >, >=, <, <=.", "12021")
    return condition, parse_modified_value(value)


def _compare(left: int, condition: str, right: int) -> bool:
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[condition]


def _period(table: _Table, seq: int) -> str:
    created = table.created_at.get(seq, table.data.created_ms(table.kind, seq))
    return datetime.fromtimestamp(created // 1000, tz=COMPANY_TIMEZONE).strftime("%Y%m")


def _etag_matches(if_match: str, row_version: str) -> bool:
    candidates = [part.strip().removeprefix("W/").strip('"') for part in if_match.split(",")]
    return "*" in candidates or row_version in candidates


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise VismaApiError(400, f"The request body is not valid JSON: {exc.msg}.", "12030") from exc


def _wrapped_value(name: str, wrapped: Any) -> Any:
    """The ``value`` of a ``{"value": x}`` member; a bare value is a 400 naming the field."""
    if not isinstance(wrapped, dict) or "value" not in wrapped:
        raise VismaApiError(400, f"Field '{name}' must be an object like {{\"value\": ...}}.", "12031")
    return wrapped["value"]


def _checked(name: str, value: Any, kind: Any, what: str) -> Any:
    """``value`` when it is null or of ``kind`` (a boolean is no number), else a 400 naming the field."""
    if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        return value
    raise VismaApiError(400, f"Field '{name}' must be {what}, not {json.dumps(value)}.", "12041")


def _supplier_part(name: str, value: Any, current: Any, dto: str, members: frozenset[str]) -> dict[str, Any] | None:
    """An address or contact of the supplier with the sent members (``{"value": x}`` each) merged in."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise VismaApiError(400, f"Field '{name}' must be an object of {{\"value\": ...}} members.", "12031")
    part = dict(current) if isinstance(current, dict) else {}
    for member, wrapped in value.items():
        path = f"{name}.{member}"
        if member not in members:
            raise VismaApiError(400, f"Field '{path}' is not a member of {dto}.", "12040")
        if wrapped is None:
            continue
        text = _checked(path, _wrapped_value(path, wrapped), str, "a string")
        field = "country" if member == "countryId" else member
        if text is None:
            part.pop(field, None)
        elif member == "countryId":
            if not _COUNTRY_ID.match(text):
                raise VismaApiError(400, f"Country '{text}' not found.", "12041")
            known = COUNTRIES.get(text)
            part[field] = {"id": text, "name": known.name if known else text}
        else:
            part[field] = text
    return part


def _parse_date(name: str, value: Any) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise VismaApiError(400, f"{name} '{value}' is not a valid date.", "12034") from exc


def _unwrap(line: dict[str, Any], name: str) -> Any:
    wrapped = line.get(name)
    return wrapped.get("value") if isinstance(wrapped, dict) else None


def _apply_line_operations(kind: str, lines: list[dict[str, Any]], operations: list[Any]) -> list[dict[str, Any]]:
    """Insert / Update / Delete lines as the *LineUpdateDto ``operation`` says (Insert when absent)."""
    number_field = "lineNumber" if kind == SUPPLIER_INVOICES else "lineNbr"
    result = [dict(line) for line in lines]
    for operation in operations:
        if not isinstance(operation, dict):
            raise VismaApiError(400, "Each line must be a JSON object.", "12035")
        number = _unwrap(operation, "lineNumber")
        existing = next((line for line in result if line.get(number_field) == number), None)
        verb = operation.get("operation") or ("Update" if existing else "Insert")
        if verb == "Delete":
            result = [line for line in result if line is not existing]
            continue
        if verb == "Update" and existing is None:
            raise VismaApiError(400, f"Line {number} not found.", "12036")
        line = existing if verb == "Update" and existing is not None else {
            number_field: number or max((line.get(number_field, 0) for line in result), default=0) + 1}
        if line is not existing:
            result.append(line)
        _fill_line(kind, line, operation)
    return result


def _fill_line(kind: str, line: dict[str, Any], operation: dict[str, Any]) -> None:
    def number(name: str, default: float) -> float:
        value = _unwrap(operation, name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise VismaApiError(400, f"Line field '{name}' must be a number.", "12037")
        return float(value)

    account_number = _unwrap(operation, "accountNumber" if kind == SUPPLIER_INVOICES else "account")
    if account_number is not None:
        account = GL_BY_NUMBER.get(str(account_number))
        if account is None:
            raise VismaApiError(400, f"Account '{account_number}' not found.", "12038")
        line["account"] = {"type": account.type, "number": account.number, "description": account.description}
    if kind == SUPPLIER_INVOICES:
        for field in ("transactionDescription", "inventoryNumber", "uom", "note"):
            if (value := _unwrap(operation, field)) is not None:
                line[field] = value
        vat_id = _unwrap(operation, "vatCodeId")
        if vat_id is not None:
            if str(vat_id) not in _VAT_BY_ID:
                raise VismaApiError(400, f"VAT code '{vat_id}' not found.", "12039")
            line["vatCode"] = {"id": str(vat_id), "description": _VAT_BY_ID[str(vat_id)].description}
        quantity = number("quantity", line.get("quantity", 1.0))
        unit = number("unitCostInCurrency", line.get("unitCostInCurrency", 0.0))
        line.update(quantity=quantity, unitCostInCurrency=unit,
                    costInCurrency=number("costInCurrency", round(quantity * unit, 2)))
        line.setdefault("vatCode", {"id": VAT_CODES[0].id, "description": VAT_CODES[0].description})
    else:
        for field in ("lineDescription", "uom", "note"):
            if (value := _unwrap(operation, field)) is not None:
                line[field] = value
        if (inventory := _unwrap(operation, "inventory")) is not None:
            line["inventory"] = {"number": str(inventory)}
        quantity = number("orderQty", line.get("orderQty", 1.0))
        unit = number("unitCost", line.get("unitCost", 0.0))
        amount = number("amount", number("extCost", round(quantity * unit, 2)))
        line.update(orderQty=quantity, unitCost=unit, extCost=amount, amount=amount)
        line.setdefault("qtyOnReceipts", 0.0)
        line.setdefault("receivedAmt", 0.0)


def _totals(kind: str, lines: list[dict[str, Any]], record: dict[str, Any], *, explicit_amount: bool) -> dict[str, Any]:
    """The header totals that follow from the lines (an explicit ``amount`` is kept)."""
    rate = CURRENCY_RATES_NOK.get(record.get("currencyId") or record.get("currency") or "NOK", 1.0)
    if kind == SUPPLIER_INVOICES:
        detail = round(sum(line.get("costInCurrency", 0.0) for line in lines), 2)
        vat = round(sum(line.get("costInCurrency", 0.0) * _VAT_BY_ID.get(
            line.get("vatCode", {}).get("id", "1"), VAT_CODES[0]).rate / 100 for line in lines), 2)
        amount = record["amount"] if explicit_amount else round(detail + vat, 2)
        open_balance = record.get("status") not in ("Closed", "Voided")
        return {"detailTotal": detail, "detailTotalInCurrency": round(detail * rate, 2), "vatTotal": vat,
                "vatTotalInCurrency": round(vat * rate, 2), "vatAmount": vat, "amount": amount,
                "vatTaxableTotal": detail, "balance": amount if open_balance else 0.0}
    line_total = round(sum(line.get("amount", 0.0) for line in lines), 2)
    tax = round(line_total * 0.25, 2)
    return {"lineTotal": line_total, "lineTotalInBaseCurrency": round(line_total * rate, 2), "taxTotal": tax,
            "orderTotal": round(line_total + tax, 2), "orderTotalInBaseCurrency": round((line_total + tax) * rate, 2)}


__all__ = [
    "ALL_SCOPES",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_COMPANY_ID",
    "DEMO_SCOPE",
    "DEMO_TENANT_ID",
    "DEMO_WEBHOOK_SECRET",
    "LEGACY_PREFIX",
    "MAX_PAGE_SIZE",
    "RESOURCES",
    "SUPPLIER_UPDATE_MEMBERS",
    "VismaApiError",
    "VismaSimulator",
    "gateway_error",
    "parse_modified_value",
    "visma_error",
]


def sandbox_credentials(seed: int = 0) -> dict[str, str]:
    """What :meth:`VismaSimulator.credentials` answers for a default simulator, without building one."""
    return {
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "tenant_id": DEMO_TENANT_ID,
        "company_id": DEMO_COMPANY_ID,
        "webhook_secret": DEMO_WEBHOOK_SECRET,
    }
