"""The Acumatica simulator: the contract-based REST endpoint Default/24.200.001 of one tenant.

See the package docstring for the behaviour; this module holds the HTTP surface, the document
rules (holds, balance, approval, release) and the Python helpers tests and the demo use.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector_dagster.sandbox.delivery import WebhookDispatcher
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.systems.acumatica.webhook import DEFAULT_HEADER_NAME

from .identity import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SCOPE,
    DEMO_USERNAME,
    TRIAL,
    ApiSession,
    IdentityServer,
    Licence,
)
from .index import MODIFIED_FIELD, CollectionIndex
from .odata import ODataError, lower_bound, parse_filter
from .records import (
    BILL,
    COMPANY_ID,
    ENTITIES,
    PAYMENT,
    PURCHASE_ORDER,
    VENDOR,
    ZONE,
    BodyError,
    Entity,
    bill_totals,
    generate_tenant,
    local_midnight,
    needs_approval,
    order_totals,
    push_row,
    read_record,
    render,
)

__all__ = ["DEMO_PUSH_TOKEN", "ENDPOINT", "VERSION", "AcumaticaSimulator", "Operation", "acumatica_error"]

ENDPOINT = "Default"
VERSION = "24.200.001"
DEMO_PUSH_TOKEN = "sandbox-acumatica-push-token-not-for-production"
PUSH_RETRY_DELAYS_S = (1, 2, 4, 8, 16)  # "resent up to 5 times"
PUSH_QUERIES = {BILL.name: "Bills", PURCHASE_ORDER.name: "PurchaseOrders", PAYMENT.name: "Payments"}
_RELEASED = frozenset({"Open", "Closed", "Voided", "Reserved"})
_EDITABLE_WHEN_RELEASED = frozenset({"Description", "ApprovedForPayment", "note"})
_ON_HOLD = "Document is On Hold and cannot be released."
_NOT_APPROVED = "The document has not been approved and cannot be released."
_INVALID_STATUS = "Document Status is invalid for processing."
_NO_ENTITY = "No entity satisfies the condition."
_INTERRUPTED = "The operation has been interrupted: the application was restarted while the process ran."
_OUT_OF_BALANCE = "Document is out of balance."
_TICKS_AT_EPOCH = 621_355_968_000_000_000  # .NET ticks (100 ns since 0001-01-01) at 1970-01-01


def acumatica_error(status: int, message: str, exception: str | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    """Acumatica's ``HttpError`` body; ``exception`` fills ``exceptionMessage`` as a PXException."""
    body: dict[str, Any] = {"message": message}
    if exception is not None:
        body.update(exceptionMessage=exception, exceptionType="PX.Data.PXException", stackTrace="")
    return JSONResponse(body, status_code=status, headers=headers)


class _Refused(Exception):
    """A request the API answers with an error response (raised deep, rendered at the edge)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class Operation:
    """A long-running action (``ReleaseBill`` ...): running until ``due_at`` on the simulator's clock."""

    id: str
    entity: str
    action: str
    record_id: str
    due_at: float
    state: str = "running"  # running | done | failed
    error: str | None = None


class AcumaticaSimulator(Simulator):
    """Acumatica ERP, tenant Nordvik (Nordvik Distribusjon AS), endpoint Default/24.200.001."""

    name: ClassVar[str] = "acumatica"
    default_port: ClassVar[int] = 8803
    state_attributes: ClassVar[tuple[str, ...]] = (
        *Simulator.state_attributes, "records", "sequences", "invalid", "sessions", "operations",
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        size: int = 60,
        days: float = 14,
        webhook_url: str | None = None,
        push_header_name: str = DEFAULT_HEADER_NAME,
        push_header_value: str = DEMO_PUSH_TOKEN,
        start: datetime | None = None,
        licence: Licence = TRIAL,
        session_timeout_s: float = 600,
        action_duration_s: float = 1.0,
        processing_delay_s: float = 0.0,
        site_path: str = "",
        time_scale: float = 1.0,
        webhook_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``size`` bills (half as many POs, a third as many payments) modified over ``days``;
        ``start`` pins the clock; ``action_duration_s`` (simulator clock) is how long a release
        runs; ``processing_delay_s`` holds every API request (to exercise the concurrency limit);
        ``site_path`` serves the instance under a virtual directory (``/AcumaticaDB``)."""
        super().__init__(seed=seed, webhook_url=webhook_url)
        if start is not None:
            start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            self.clock.advance(start.timestamp() - self.clock.time())
        self.size, self.days = size, days
        self.site_path = site_path.rstrip("/")
        self.base_path = f"{self.site_path}/entity/{ENDPOINT}/{VERSION}"
        tenant = generate_tenant(seed, size, days, self.now())
        self.records = tenant.records
        self.sequences = {**tenant.sequences, "ids": 0, "pushes": 0}
        self.invalid = tenant.invalid
        self.operations: dict[str, Operation] = {}
        self.identity = IdentityServer(self, licence, session_timeout_s)
        self.action_duration_s = action_duration_s
        self.processing_delay_s = processing_delay_s
        self.push_header_name, self.push_header_value = push_header_name, push_header_value
        self._in_flight = 0
        self.webhooks = WebhookDispatcher(self, self._sign, retry_delays_s=PUSH_RETRY_DELAYS_S,
                                          time_scale=time_scale, transport=webhook_transport)

    # -- persistence -------------------------------------------------------------------------
    @property
    def sessions(self) -> dict[str, ApiSession]:
        """The API sessions (signed-in API users) of the tenant."""
        return self.identity.sessions

    @sessions.setter
    def sessions(self, sessions: dict[str, ApiSession]) -> None:
        self.identity.sessions = sessions

    def state_identity(self) -> dict[str, Any]:
        return {**super().state_identity(), "size": self.size, "days": self.days}

    # -- the Simulator contract ----------------------------------------------------------------
    def vendor_routes(self) -> list[BaseRoute]:
        site = self.site_path
        return [
            Route(f"{site}/identity/connect/token", self.identity.token, methods=["POST"]),
            Route(f"{site}/identity/.well-known/openid-configuration", self.identity.discovery, methods=["GET"]),
            Route(f"{site}/entity", self._endpoints, methods=["GET"]),
            Route(f"{site}/entity/auth/logout", self._logout, methods=["POST"]),
            Route(f"{site}/entity/{{rest:path}}", self._entity_api, methods=["GET", "PUT", "POST", "DELETE", "PATCH"]),
        ]

    def collections(self) -> dict[str, Any]:
        with self.lock:
            self._settle()
            return {
                entity.collection: [
                    render(entity, record, base_path=self.base_path, row_number=n, expand=entity.details)
                    for n, record in enumerate(self._ordered(entity), start=1)
                ]
                for entity in ENTITIES.values()
            }

    def credentials(self) -> dict[str, Any]:
        return {**sandbox_credentials(self.seed), "push_header_name": self.push_header_name,
                "push_header_value": self.push_header_value}

    def secret_values(self) -> list[str]:
        return [DEMO_CLIENT_SECRET, DEMO_PASSWORD, self.push_header_value, *super().secret_values()]

    def rate_limited_response(self, retry_after_s: float) -> Response:
        return acumatica_error(429, "Too many requests.",
                               headers={"Retry-After": str(max(0, int(retry_after_s + 0.999)))})

    def server_error_response(self, status_code: int) -> Response:
        return acumatica_error(status_code, "An error has occurred.")

    def close(self) -> None:
        """Stop the push-notification delivery thread."""
        self.webhooks.close()

    # -- helpers for tests and the demo (a user working in Acumatica) --------------------------
    def bill(self, reference: str, doc_type: str = "Bill") -> dict[str, Any]:
        """A bill as ``GET .../Bill/<type>/<nbr>?$expand=Details,TaxDetails,Applications`` answers it."""
        return self._show(BILL, (doc_type, reference))

    def purchase_order(self, order_nbr: str, order_type: str = "Normal") -> dict[str, Any]:
        return self._show(PURCHASE_ORDER, (order_type, order_nbr))

    def payment(self, reference: str, doc_type: str = "Payment") -> dict[str, Any]:
        return self._show(PAYMENT, (doc_type, reference))

    def vendor(self, vendor_id: str) -> dict[str, Any]:
        return self._show(VENDOR, (vendor_id,))

    def references(self, entity: str, status: str | None = None) -> list[str]:
        """Reference numbers (order numbers, vendor ids) of ``entity``, optionally in one status."""
        schema = ENTITIES[entity]
        with self.lock:
            self._settle()
            return [schema.key_of(r)[-1] for r in self._ordered(schema) if status is None or r.get("Status") == status]

    def invalid_records(self) -> list[tuple[str, str, str]]:
        """``(collection, id, reason)`` of the records generated malformed on purpose."""
        return list(self.invalid)

    def create_bill(self, vendor_id: str, lines: Iterable[dict[str, Any]], *, amount: float | None = None,
                    hold: bool = True, **fields: Any) -> dict[str, Any]:
        """A bill entered by a user: ``lines`` of ``{"TransactionDescription", "Qty", "UnitCost", "Account"}``;
        ``amount`` is the control total (default: the document total, so it is balanced)."""
        with self.lock:
            record = {"Type": "Bill", "Vendor": vendor_id, "Hold": hold, **fields,
                      "Details": [{"Qty": 1.0, "UOM": "STK", "TaxCategory": "MVA25", **line} for line in lines]}
            if amount is None:
                amount = bill_totals(copy.deepcopy(record))
            saved = self._save(BILL, None, record, control_total=amount)
            return self._render_full(BILL, saved)

    def update_bill(self, reference: str, **changes: Any) -> dict[str, Any]:
        """Edit a bill as a user would (plain values: ``Description="..."``, ``Hold=True``)."""
        return self._edit(BILL, ("Bill", reference), changes)

    def put_bill_on_hold(self, reference: str, reason: str | None = None) -> dict[str, Any]:
        """A user puts the bill on hold (an exception: it needs attention)."""
        changes: dict[str, Any] = {"Hold": True}
        if reason:
            changes["Description"] = reason
        return self._edit(BILL, ("Bill", reference), changes)

    def mark_unbalanced(self, reference: str, difference: float = 125.0) -> dict[str, Any]:
        """The bill's control total stops matching its lines: it goes (and stays) on hold, out of balance."""
        with self.lock:
            record = self._find(BILL, ("Bill", reference))
            control = round(bill_totals(copy.deepcopy(record)) + difference, 2)
            return self._render_full(BILL, self._save(BILL, record, {"Hold": True}, control_total=control))

    def approve_bill(self, reference: str) -> dict[str, Any]:
        """The approver approves a bill pending approval: it becomes Balanced."""
        return self._decide(BILL, ("Bill", reference), "Balanced")

    def reject_bill(self, reference: str) -> dict[str, Any]:
        """The approver rejects a bill pending approval."""
        return self._decide(BILL, ("Bill", reference), "Rejected")

    def approve_po(self, order_nbr: str) -> dict[str, Any]:
        return self._decide(PURCHASE_ORDER, ("Normal", order_nbr), "Open")

    def reject_po(self, order_nbr: str) -> dict[str, Any]:
        """The approver rejects a purchase order pending approval (an exception)."""
        return self._decide(PURCHASE_ORDER, ("Normal", order_nbr), "Rejected")

    def put_po_on_hold(self, order_nbr: str) -> dict[str, Any]:
        return self._edit(PURCHASE_ORDER, ("Normal", order_nbr), {"Hold": True})

    def payment_exception(self, reference: str, reason: str = "Avvist av banken: konto stengt") -> dict[str, Any]:
        """A payment bounces: it is put on hold with the bank's reason in its description."""
        return self._edit(PAYMENT, ("Payment", reference), {"Hold": True, "Description": reason})

    def exception_documents(self) -> list[tuple[str, str, str]]:
        """``(entity, reference, status)`` of every document that needs attention."""
        exceptional = {"On Hold", "Pending Approval", "Rejected"}
        with self.lock:
            self._settle()
            return [(entity.name, entity.key_of(record)[-1], record["Status"])
                    for entity in (BILL, PURCHASE_ORDER, PAYMENT) for record in self._ordered(entity)
                    if record.get("Status") in exceptional]

    def active_sessions(self) -> list[ApiSession]:
        """The API sessions holding a licence slot now."""
        with self.lock:
            return self.identity.active_sessions()

    def flush_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued push notification was delivered or given up."""
        return self.webhooks.flush(timeout_s)

    # -- storage -----------------------------------------------------------------------------
    def new_id(self, label: str) -> str:
        with self.lock:
            self.sequences["ids"] += 1
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"acumatica/{self.seed}/{label}/{self.sequences['ids']}"))

    @property
    def records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every stored record by collection and id; setting it (generation, a restored state) re-indexes."""
        return self._records

    @records.setter
    def records(self, records: dict[str, dict[str, dict[str, Any]]]) -> None:
        self._records = records
        self._indexes = {entity.collection: CollectionIndex(entity, records.setdefault(entity.collection, {}))
                         for entity in ENTITIES.values()}

    def _ordered(self, entity: Entity, filter_text: str | None = None) -> list[dict[str, Any]]:
        """The records a list reads, in key order: those the filter's lower bound on the modification
        time leaves (the index), or all of them."""
        table = self.records[entity.collection]
        since = lower_bound(filter_text, MODIFIED_FIELD, entity.fields, ZONE) if filter_text else None
        if since is None:
            return sorted(table.values(), key=entity.key_of)
        return sorted((table[i] for i in self._indexes[entity.collection].modified_since(since)), key=entity.key_of)

    def _by_keys(self, entity: Entity, keys: tuple[str, ...]) -> dict[str, Any] | None:
        record_id = self._indexes[entity.collection].find(keys)
        return None if record_id is None else self.records[entity.collection].get(record_id)

    def _find(self, entity: Entity, keys: tuple[str, ...]) -> dict[str, Any]:
        record = self._by_keys(entity, keys)
        if record is None:
            raise KeyError(f"{entity.name}: no record {'/'.join(keys)}")
        return record

    def _match(self, entity: Entity, plain: dict[str, Any]) -> dict[str, Any] | None:
        """The stored record a body refers to: by ``id``, else by its key fields (all of them given)."""
        table = self.records[entity.collection]
        if plain.get("id"):
            return table.get(plain["id"])
        keys = tuple(str(plain.get(name) or "") for name in entity.keys)
        if entity is not VENDOR and not keys[-1]:
            return None
        if entity is not VENDOR and not keys[0]:
            keys = (self._default_type(entity), *keys[1:])
        return self._by_keys(entity, keys)

    @staticmethod
    def _default_type(entity: Entity) -> str:
        return {BILL.name: "Bill", PURCHASE_ORDER.name: "Normal", PAYMENT.name: "Payment"}[entity.name]

    def _show(self, entity: Entity, keys: tuple[str, ...]) -> dict[str, Any]:
        with self.lock:
            self._settle()
            return self._render_full(entity, self._find(entity, keys))

    def _render_full(self, entity: Entity, record: dict[str, Any]) -> dict[str, Any]:
        return render(entity, record, base_path=self.base_path, expand=entity.details)

    def _edit(self, entity: Entity, keys: tuple[str, ...], changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._settle()
            record = self._find(entity, keys)
            return self._render_full(entity, self._save(entity, record, changes))

    def _decide(self, entity: Entity, keys: tuple[str, ...], outcome: str) -> dict[str, Any]:
        with self.lock:
            self._settle()
            record = self._find(entity, keys)
            if record.get("Status") != "Pending Approval":
                raise ValueError(f"{entity.name} {keys[-1]} is {record.get('Status')}, not Pending Approval")
            before = copy.deepcopy(record)
            record["Status"] = outcome
            self._touched(entity, before, record)
            return self._render_full(entity, record)

    def _touched(self, entity: Entity, before: dict[str, Any] | None, record: dict[str, Any]) -> None:
        """Stamp a change (strictly after the last one) and push it."""
        now = self.now()
        previous = before.get("LastModifiedDateTime") if before else None
        if previous is not None and now <= previous:
            now = previous + timedelta(milliseconds=1)
        record["LastModifiedDateTime"] = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self._indexes[entity.collection].stored(before, record)
        self._push(entity, before, record)

    # -- document rules ------------------------------------------------------------------------
    def _save(self, entity: Entity, current: dict[str, Any] | None, changes: dict[str, Any], *,
              control_total: float | None = None) -> dict[str, Any]:
        """Apply ``changes`` (plain values) to ``current`` (None: insert), enforce the rules, store.

        Raises :class:`_Refused` with Acumatica's 422 (the record with its field error) when a rule
        refuses the change; nothing is stored then.
        """
        before = copy.deepcopy(current) if current is not None else None
        record = copy.deepcopy(current) if current is not None else self._new(entity, changes)
        if before is not None and entity in (BILL, PAYMENT) and before.get("Status") in _RELEASED:
            edited = {name for name in changes if name in entity.fields and changes[name] != before.get(name)}
            if edited - _EDITABLE_WHEN_RELEASED:
                raise self._invalid(entity, record, next(iter(sorted(edited - _EDITABLE_WHEN_RELEASED))),
                                    f"The document is {before['Status']} and cannot be edited.")
        for name, value in changes.items():
            if name in entity.details:
                record[name] = self._merge_rows(record.get(name) or [], value, name)
            elif name in entity.fields and name not in entity.read_only:
                record[name] = value
        if control_total is not None:
            record["Amount"] = control_total
        self._check_references(entity, record)
        if entity is BILL:
            self._bill_rules(record, before)
        elif entity is PURCHASE_ORDER:
            self._order_rules(record, before)
        elif entity is PAYMENT:
            self._payment_rules(record, before)
        if before is not None and {k: v for k, v in record.items() if k != "LastModifiedDateTime"} == {
                k: v for k, v in before.items() if k != "LastModifiedDateTime"}:
            return current  # type: ignore[return-value]  # nothing changed: no new timestamp, no push
        self.records[entity.collection][record["id"]] = record
        self._touched(entity, before, record)
        return record

    def _new(self, entity: Entity, changes: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"id": changes.get("id") or self.new_id(entity.collection)}
        if entity is VENDOR:
            if not changes.get("VendorID"):
                raise _Refused(acumatica_error(422, "VendorID: 'Vendor ID' cannot be empty."))
            return {**record, "Status": "Active", "CreatedDateTime": self.now()}
        doc_type = changes.get("Type") or self._default_type(entity)
        number_field = entity.keys[-1]
        number = changes.get(number_field)
        if not number or number == "<NEW>":
            sequence = self.sequences[entity.collection]
            self.sequences[entity.collection] = sequence + 1
            number = f"PO{sequence:06d}" if entity is PURCHASE_ORDER else f"{sequence:06d}"
        today = self.now().astimezone(ZONE).date()
        record.update({"Type": doc_type, number_field: number, "Hold": entity is not PAYMENT, "Status": None,
                       "BranchID" if entity is not PURCHASE_ORDER else "Branch": "NORDVIK"})
        if entity is BILL:
            record.update(Date=today, PostPeriod=f"{today.month:02d}{today.year}", LocationID="MAIN", Amount=0.0,
                          Balance=0.0, ApprovedForPayment=False, IsTaxValid=True, Details=[], Applications=[])
        elif entity is PURCHASE_ORDER:
            record.update(Date=today, Location="MAIN", BaseCurrencyID="NOK", IsTaxValid=True, Details=[])
        else:
            record.update(ApplicationDate=today, NoteID=record["id"], PaymentAmount=0.0, DocumentsToApply=[],
                          ApplicationHistory=[])
        return record

    def _merge_rows(self, rows: list[dict[str, Any]], changes: Any, detail: str) -> list[dict[str, Any]]:
        merged = [dict(row) for row in rows]
        for change in changes:
            existing = next((row for row in merged if change.get("id") and row["id"] == change["id"]), None)
            if change.get("delete"):
                merged = [row for row in merged if row is not existing]
                continue
            if existing is None:
                if change.get("id"):
                    raise _Refused(acumatica_error(400, f"{detail}: no row with id {change['id']}."))
                existing = {"id": self.new_id(detail)}
                merged.append(existing)
            existing.update({k: v for k, v in change.items() if k not in ("id", "delete")})
        return merged

    def _check_references(self, entity: Entity, record: dict[str, Any]) -> None:
        field_name = {BILL.name: "Vendor", PURCHASE_ORDER.name: "VendorID"}.get(entity.name)
        if field_name is None:
            return
        vendor_id = record.get(field_name)
        vendor = next((v for v in self.records["vendors"].values() if v["VendorID"] == vendor_id), None)
        if vendor is None:
            raise self._invalid(entity, record, field_name, f"'{vendor_id}' cannot be found in the system.")
        # A new document takes the vendor's currency and terms unless the body names them.
        record.setdefault("CurrencyID", vendor["CurrencyID"])
        record.setdefault("Terms", vendor["Terms"])

    def _bill_rules(self, record: dict[str, Any], before: dict[str, Any] | None) -> None:
        total = bill_totals(record)
        status = record.get("Status")
        if status in _RELEASED:
            return
        if record.get("Hold"):
            record["Status"] = "On Hold"
            record["Balance"] = record.get("Amount") or 0.0
            return
        if round(float(record.get("Amount") or 0.0), 2) != total:
            raise self._invalid(BILL, record, "Amount", _OUT_OF_BALANCE)
        record["Balance"] = total
        was_held = before is None or before.get("Hold") or status is None
        if was_held:
            record["Status"] = "Pending Approval" if needs_approval(total, record.get("CurrencyID")) else "Balanced"

    def _order_rules(self, record: dict[str, Any], before: dict[str, Any] | None) -> None:
        record.setdefault("_tax", "MVA25")  # the vendor tax zone's tax (internal, never rendered)
        order_totals(record)
        status = record.get("Status")
        if status in ("Completed", "Closed", "Cancelled"):
            return
        if record.get("Hold"):
            record["Status"] = "On Hold"
            return
        if status not in (None, "On Hold"):
            return  # Open, Pending Approval, Rejected ...: taking no hold off changes nothing
        control = record.get("ControlTotal")
        if control is not None and round(float(control), 2) != record["OrderTotal"]:
            raise self._invalid(PURCHASE_ORDER, record, "ControlTotal", _OUT_OF_BALANCE)
        approval = needs_approval(record["OrderTotal"], record.get("CurrencyID"))
        record["Status"] = "Pending Approval" if approval else "Open"

    @staticmethod
    def _payment_rules(record: dict[str, Any], before: dict[str, Any] | None) -> None:
        if not record.get("CustomerID"):
            raise _Refused(acumatica_error(422, "CustomerID: 'Customer' cannot be empty."))
        amount = float(record.get("PaymentAmount") or 0.0)
        applied = float(record.get("AppliedToDocuments") or 0.0)
        record["AvailableBalance"] = round(amount - applied, 2)
        if record.get("Status") in _RELEASED:
            return
        record["Status"] = "On Hold" if record.get("Hold") else "Balanced"

    def _invalid(self, entity: Entity, record: dict[str, Any], field_name: str, message: str) -> _Refused:
        """422 with the record as it would have been, the offending field carrying ``error``."""
        shown = render(entity, {**record, "id": record.get("id") or str(uuid.uuid4())}, base_path=self.base_path)
        shown[field_name] = {**shown.get(field_name, {}), "error": message}
        shown["error"] = f"{field_name}: {message}"
        shown.pop("_links", None)
        return _Refused(JSONResponse(shown, status_code=422))

    # -- actions -----------------------------------------------------------------------------
    def _settle(self) -> None:
        """Finish every long operation whose time has come (the simulator's work goes on unpolled)."""
        now = self.clock.time()
        for operation in self.operations.values():
            if operation.state == "running" and operation.due_at <= now:
                self._finish(operation)

    def _finish(self, operation: Operation) -> None:
        entity = ENTITIES[operation.entity]
        record = self.records[entity.collection].get(operation.record_id)
        if record is not None and self.fault_roll(self.fault_plan.action_interrupt_rate, "action_interrupted"):
            # The application pool recycled under the running process: it fails, the document stays as it was.
            operation.state, operation.error = "failed", _INTERRUPTED
            return
        status = None if record is None else record.get("Status")
        error = (_NO_ENTITY if record is None else _ON_HOLD if status == "On Hold"
                 else _NOT_APPROVED if status in ("Pending Approval", "Rejected")
                 else _INVALID_STATUS if status != "Balanced" else None)
        if error is not None or record is None:
            operation.state, operation.error = "failed", error
            return
        before = copy.deepcopy(record)
        if entity is BILL:
            record.update(Status="Open", Balance=record["Amount"], ApprovedForPayment=True)
        else:
            record["Status"] = "Open" if float(record.get("AvailableBalance") or 0.0) > 0 else "Closed"
        operation.state = "done"
        self._touched(entity, before, record)

    def _start(self, entity: Entity, action: str, record: dict[str, Any]) -> Operation:
        operation = Operation(id=self.new_id("operation"), entity=entity.name, action=action,
                              record_id=record["id"], due_at=self.clock.time() + self.action_duration_s)
        self.operations[operation.id] = operation
        if self.action_duration_s <= 0:
            self._finish(operation)
        return operation

    def _order_action(self, record: dict[str, Any], action: str) -> None:
        """The purchase order's workflow actions, run at once (the generic custom-action route)."""
        status = record.get("Status")
        name = action.lower()
        if name in ("approve", "reject"):
            if status != "Pending Approval":
                raise _Refused(acumatica_error(400, "An error has occurred.",
                                               f"The {action} action is not available in the {status} status."))
            before = copy.deepcopy(record)
            record["Status"] = "Open" if name == "approve" else "Rejected"
            self._touched(PURCHASE_ORDER, before, record)
        elif name in ("releasefromhold", "removehold"):
            if status != "On Hold":
                raise _Refused(acumatica_error(400, "An error has occurred.",
                                               f"The {action} action is not available in the {status} status."))
            self._save(PURCHASE_ORDER, record, {"Hold": False})
        else:
            self._save(PURCHASE_ORDER, record, {"Hold": True})

    # -- push notifications --------------------------------------------------------------------
    def _push(self, entity: Entity, before: dict[str, Any] | None, record: dict[str, Any]) -> None:
        query = PUSH_QUERIES.get(entity.name)
        if query is None or not self.webhook_url:
            return
        self.sequences["pushes"] += 1
        ticks = _TICKS_AT_EPOCH + int(self.clock.time() * 10_000_000) + self.sequences["pushes"]
        notification_id = self.new_id("push")
        body = {
            "Inserted": [push_row(entity, record)],
            "Deleted": [] if before is None else [push_row(entity, before)],
            "Query": query,
            "CompanyId": COMPANY_ID,
            "Id": notification_id,
            "TimeStamp": ticks,
            "AdditionalInfo": {},
        }
        self.webhooks.emit(body, notification_id)

    def _sign(self, body: bytes) -> dict[str, str]:
        return {self.push_header_name: self.push_header_value}

    # -- HTTP --------------------------------------------------------------------------------
    async def _endpoints(self, request: Request) -> Response:
        return JSONResponse({
            "version": {"acumaticaBuildVersion": "24.200.0180", "databaseVersion": "24.200.0180"},
            "endpoints": [{"name": ENDPOINT, "version": VERSION, "href": self.base_path}],
        })

    async def _logout(self, request: Request) -> Response:
        with self.lock:
            session = self.identity.authenticate(request.headers.get("authorization"))
            if session is not None:
                self.identity.sign_out(session)
        return Response(status_code=204)

    async def _entity_api(self, request: Request) -> Response:
        parts = [part for part in request.path_params["rest"].split("/") if part != ""]
        if len(parts) < 3 or parts[0] != ENDPOINT or parts[1] != VERSION:
            return acumatica_error(404, f"No HTTP resource was found that matches the request URI '{request.url}'.")
        entity = ENTITIES.get(parts[2])
        if entity is None:
            return acumatica_error(404, f"The entity {parts[2]} is not found in the {ENDPOINT}/{VERSION} endpoint.")
        handler = self._route(request.method, entity, parts[3:])
        if handler is None:
            return acumatica_error(405, f"The requested resource does not support http method '{request.method}'.")
        return await self._guarded(request, handler)

    def _route(self, method: str, entity: Entity, rest: list[str]) -> Callable[[Request], Awaitable[Response]] | None:
        if not rest:
            return (lambda r: self._list(r, entity)) if method == "GET" else (
                (lambda r: self._put(r, entity)) if method == "PUT" else None)
        if method == "POST" and len(rest) == 1:
            return lambda r: self._invoke(r, entity, rest[0])
        if method == "GET" and len(rest) == 3 and rest[1] == "status":
            return lambda r: self._status(r, entity, rest[0], rest[2])
        if method == "GET":
            return lambda r: self._get(r, entity, tuple(rest))
        return None

    async def _guarded(self, request: Request, handler: Callable[[Request], Awaitable[Response]]) -> Response:
        """Authentication, the licence's concurrent-request limit, and Acumatica's error rendering."""
        limit = self.identity.licence.concurrent_requests
        with self.lock:
            if self.identity.authenticate(request.headers.get("authorization")) is None:
                return acumatica_error(401, "You are not logged in.")
            if limit is not None and self._in_flight >= limit:
                return acumatica_error(429, "The number of concurrent API requests exceeds the limit of the "
                                            f"license ({limit}).")
            self._in_flight += 1
        try:
            if self.processing_delay_s:
                await asyncio.sleep(self.processing_delay_s)
            with self.lock:
                self._settle()
            return await handler(request)
        except _Refused as refused:
            return refused.response
        except (BodyError, ODataError) as error:
            return acumatica_error(400, str(error))
        finally:
            with self.lock:
                self._in_flight -= 1

    def _query(self, request: Request, entity: Entity) -> tuple[list[str], list[str] | None]:
        """``$expand`` detail names and ``$select`` field names of a request."""
        params = request.query_params
        expand = [name.strip() for name in params.get("$expand", "").split(",") if name.strip()]
        unknown = [name for name in expand if name not in entity.details]
        if unknown:
            raise BodyError(f"$expand: {unknown[0]} is not a detail or linked entity of {entity.name}")
        select = None
        if "$select" in params:
            select = [name.strip() for name in params["$select"].split(",") if name.strip()]
            missing = [name for name in select if name.split("/")[0] not in entity.fields and
                       name.split("/")[0] not in entity.details]
            if missing:
                raise BodyError(f"$select: {missing[0]} is not a field of {entity.name}")
            expand = [name for name in expand if name in select or any(s.startswith(name + "/") for s in select)]
            select = [name for name in select if name in entity.fields]
        return expand, select

    async def _list(self, request: Request, entity: Entity) -> Response:
        params = request.query_params
        expand, select = self._query(request, entity)
        skip, top = _count(params, "$skip"), _count(params, "$top")
        filter_text = params.get("$filter")
        predicate = None if filter_text is None else parse_filter(filter_text, entity.fields, ZONE,
                                                                  date_as_moment=local_midnight)
        with self.lock:
            records = self._ordered(entity, filter_text)
            if predicate is not None:
                records = [record for record in records if predicate(record)]
            records = records[skip or 0:]
            if top is not None:
                records = records[:top]
            body = [render(entity, record, base_path=self.base_path, row_number=n, expand=expand, select=select)
                    for n, record in enumerate(records, start=1)]
        # A page of 1,000 bills with their lines is megabytes: orjson writes it several times faster.
        return Response(orjson.dumps(body), media_type="application/json")

    async def _get(self, request: Request, entity: Entity, keys: tuple[str, ...]) -> Response:
        expand, select = self._query(request, entity)
        with self.lock:
            record = self._by_path(entity, keys)
            if record is None:
                return acumatica_error(404, _NO_ENTITY)
            return JSONResponse(render(entity, record, base_path=self.base_path, expand=expand, select=select))

    def _by_path(self, entity: Entity, keys: tuple[str, ...]) -> dict[str, Any] | None:
        if len(keys) == 1 and _is_guid(keys[0]):
            return self.records[entity.collection].get(str(uuid.UUID(keys[0])))
        if len(keys) != len(entity.keys):
            return None
        return self._by_keys(entity, keys)

    async def _put(self, request: Request, entity: Entity) -> Response:
        expand, select = self._query(request, entity)
        plain = read_record(entity, await _json(request))
        insert_only = request.headers.get("if-none-match", "").strip() == "*"
        update_only = request.headers.get("if-match", "").strip() == "*"
        with self.lock:
            current = self._match(entity, plain)
            if insert_only and current is not None:
                return acumatica_error(412, "The entity cannot be inserted because an entity with the same keys "
                                            "already exists.")
            if update_only and current is None:
                return acumatica_error(412, "The entity cannot be updated because no entity with the specified "
                                            "keys exists.")
            saved = self._save(entity, current, plain)
            return JSONResponse(render(entity, saved, base_path=self.base_path, expand=expand, select=select))

    async def _invoke(self, request: Request, entity: Entity, action: str) -> Response:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("entity"), dict):
            raise BodyError("the body must be {\"entity\": {...}, \"parameters\": {...}}")
        if body.get("parameters") is not None and not isinstance(body["parameters"], dict):
            raise BodyError("parameters: expected an object")
        long_running = {BILL.name: "ReleaseBill", PAYMENT.name: "ReleasePayment"}.get(entity.name)
        order_actions = ("approve", "reject", "releasefromhold", "removehold", "putonhold", "hold")
        if action != long_running and not (entity is PURCHASE_ORDER and action.lower() in order_actions):
            return acumatica_error(400, "An error has occurred.",
                                   f"The action {action} is not found on the {entity.screen} screen.")
        plain = read_record(entity, body["entity"])
        with self.lock:
            record = self._match(entity, plain)
            if record is None:
                return acumatica_error(400, "An error has occurred.", _NO_ENTITY)
            if entity is PURCHASE_ORDER:
                self._order_action(record, action)
                return Response(status_code=204, headers={"Location": f"{self.base_path}/{entity.name}/{record['id']}"})
            operation = self._start(entity, action, record)
        return Response(status_code=202, headers={"Location": self._status_path(entity, operation)})

    def _status_path(self, entity: Entity, operation: Operation) -> str:
        return f"{self.base_path}/{entity.name}/{operation.action}/status/{operation.id}"

    async def _status(self, request: Request, entity: Entity, action: str, operation_id: str) -> Response:
        with self.lock:
            operation = self.operations.get(operation_id)
            if operation is None or operation.entity != entity.name or operation.action != action:
                return acumatica_error(404, "The operation is not found.")
            if operation.state == "running":
                return Response(status_code=202, headers={"Location": self._status_path(entity, operation)})
            if operation.state == "done":
                return Response(status_code=204)
            return acumatica_error(500, "An error has occurred.", operation.error)


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def _count(params: Any, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise BodyError(f"{name}: '{raw}' is not a non-negative integer")
    return int(raw)


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise BodyError(f"the request body is not valid JSON: {exc}") from None


def sandbox_credentials(seed: int = 0) -> dict[str, str]:
    """What :meth:`AcumaticaSimulator.credentials` answers for a default simulator, without building one."""
    return {
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "username": DEMO_USERNAME,
        "password": DEMO_PASSWORD,
        "scope": DEMO_SCOPE,
        "push_header_value": DEMO_PUSH_TOKEN,
    }

