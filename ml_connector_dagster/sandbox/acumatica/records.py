"""Acumatica's records: the four entities of the Default/24.200.001 endpoint the sandbox serves, their
rendering as value objects, and the demo tenant (Nordvik Distribusjon AS, Oslo).

Records are kept plain (``{"Status": "Open", "Amount": 1250.0, ...}``) and rendered on the way
out as the API writes them: every field a value object ``{"value": x}``, a null field an empty
object ``{}``, ``id`` and ``rowNumber`` bare, date-times in the company's zone with their offset
(``2026-11-20T11:31:28.403+01:00``), dates as local midnight with offset, detail rows only when
``$expand`` names them, and ``custom``/``_links`` as the service adds them. Field names and kinds
are the spec's (``components/schemas/Bill`` ...), a subset of each entity.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ml_connector_dagster.sandbox.demo_data import COMPANY_TIMEZONE as ZONE
from ml_connector_dagster.sandbox.demo_data import (
    COST_CENTRES,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    CURRENCY_RATES_NOK,
    DEPARTMENTS,
    EXPENSE_LINE_TEXTS,
    Dice,
    ModificationSchedule,
    company_name,
    organisation_number,
    to_ms,
    vat_number,
)

from .odata import parse_moment

__all__ = [
    "APPROVAL_LIMIT_NOK",
    "BILL",
    "COMPANY_ID",
    "COMPANY_NAME",
    "ENTITIES",
    "PAYMENT",
    "PURCHASE_ORDER",
    "VENDOR",
    "ZONE",
    "BodyError",
    "Entity",
    "Tenant",
    "api_moment",
    "bill_totals",
    "generate_tenant",
    "local_midnight",
    "push_row",
    "read_record",
    "render",
]

COMPANY_NAME = "Nordvik Distribusjon AS"
COMPANY_ID = "Nordvik"  # the tenant (company) name: the "@Nordvik" of client ids, CompanyId of pushes
BRANCH = "NORDVIK"
APPROVAL_LIMIT_NOK = 100_000.0  # above it, taking a bill or PO off hold sends it for approval
TAX_RATE = {"MVA25": 25.0, "MVA0": 0.0}

S, DEC, INT, B, DT, D, G = "string", "decimal", "int", "bool", "datetime", "date", "guid"


@dataclass(frozen=True)
class Entity:
    """One top-level entity of the endpoint: its keys, its fields with kinds, its detail collections."""

    name: str
    collection: str
    screen: str
    keys: tuple[str, ...]
    fields: dict[str, str]
    details: dict[str, dict[str, str]] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset()

    def key_of(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(str(record.get(name) or "") for name in self.keys)


VENDOR = Entity("Vendor", "vendors", "AP303000", ("VendorID",), {
    "VendorID": S, "VendorName": S, "LegalName": S, "Status": S, "VendorClass": S, "CurrencyID": S,
    "Terms": S, "TaxRegistrationID": S, "PaymentMethod": S, "CashAccount": S, "APAccount": S,
    "CreatedDateTime": DT, "LastModifiedDateTime": DT,
}, read_only=frozenset({"CreatedDateTime", "LastModifiedDateTime"}))

_TAX_DETAIL = {"TaxID": S, "TaxRate": DEC, "TaxableAmount": DEC, "TaxAmount": DEC}

BILL = Entity("Bill", "bills", "AP301000", ("Type", "ReferenceNbr"), {
    "Type": S, "ReferenceNbr": S, "Status": S, "Hold": B, "Date": D, "DueDate": D, "PostPeriod": S,
    "Vendor": S, "VendorRef": S, "LocationID": S, "Description": S, "CurrencyID": S, "Amount": DEC,
    "Balance": DEC, "TaxTotal": DEC, "Terms": S, "BranchID": S, "CashAccount": S, "Project": S,
    "ApprovedForPayment": B, "IsTaxValid": B, "LastModifiedDateTime": DT,
}, details={
    "Details": {"Branch": S, "InventoryID": S, "TransactionDescription": S, "Qty": DEC, "UOM": S, "UnitCost": DEC,
                "ExtendedCost": DEC, "Amount": DEC, "Account": S, "Subaccount": S, "TaxCategory": S,
                "Project": S, "POOrderType": S, "POOrderNbr": S, "POLine": INT, "Description": S},
    "TaxDetails": _TAX_DETAIL,
    "Applications": {"DocType": S, "ReferenceNbr": S, "AmountPaid": DEC, "Balance": DEC, "Status": S},
}, read_only=frozenset({"Status", "Balance", "TaxTotal", "LastModifiedDateTime", "IsTaxValid"}))

PURCHASE_ORDER = Entity("PurchaseOrder", "purchase_orders", "PO301000", ("Type", "OrderNbr"), {
    "Type": S, "OrderNbr": S, "Status": S, "Hold": B, "Date": D, "PromisedOn": D, "VendorID": S, "Location": S,
    "VendorRef": S, "Description": S, "CurrencyID": S, "BaseCurrencyID": S, "ControlTotal": DEC, "LineTotal": DEC,
    "TaxTotal": DEC, "OrderTotal": DEC, "Terms": S, "Branch": S, "Owner": S, "Project": S, "VendorTaxZone": S,
    "IsTaxValid": B, "LastModifiedDateTime": DT,
}, details={
    "Details": {"LineNbr": INT, "LineType": S, "BranchID": S, "InventoryID": S, "LineDescription": S, "OrderQty": DEC,
                "UOM": S, "UnitCost": DEC, "ExtendedCost": DEC, "Account": S, "Subaccount": S, "WarehouseID": S,
                "Promised": D, "QtyOnReceipts": DEC, "ReceivedAmount": DEC, "Completed": B, "Cancelled": B},
    "TaxDetails": _TAX_DETAIL,
}, read_only=frozenset({"Status", "LineTotal", "TaxTotal", "OrderTotal", "LastModifiedDateTime", "IsTaxValid"}))

PAYMENT = Entity("Payment", "payments", "AR302000", ("Type", "ReferenceNbr"), {
    "Type": S, "ReferenceNbr": S, "Status": S, "Hold": B, "ApplicationDate": D, "CustomerID": S,
    "CustomerLocationID": S, "PaymentMethod": S, "CashAccount": S, "PaymentRef": S, "Description": S,
    "CurrencyID": S, "PaymentAmount": DEC, "AppliedToDocuments": DEC, "AvailableBalance": DEC, "BranchID": S,
    "NoteID": G, "LastModifiedDateTime": DT,
}, details={
    "DocumentsToApply": {"DocType": S, "ReferenceNbr": S, "AmountPaid": DEC, "Description": S},
    "ApplicationHistory": {"AdjustedDocType": S, "AdjustedRefNbr": S, "AmountPaid": DEC, "Date": D},
}, read_only=frozenset({"Status", "AppliedToDocuments", "AvailableBalance", "LastModifiedDateTime", "NoteID"}))

ENTITIES: dict[str, Entity] = {entity.name: entity for entity in (VENDOR, BILL, PURCHASE_ORDER, PAYMENT)}


class BodyError(ValueError):
    """A request body the API refuses (400), naming the field."""


# -- rendering -------------------------------------------------------------------------------------


def api_moment(moment: datetime) -> str:
    """A DateTimeValue as Acumatica writes it: company local time, milliseconds, explicit offset."""
    return moment.astimezone(ZONE).isoformat(timespec="milliseconds")


def local_midnight(day: date) -> datetime:
    """The company's midnight of ``day`` (how a date field compares with a moment)."""
    return datetime(day.year, day.month, day.day, tzinfo=ZONE)


def _value_object(kind: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if kind == DT:
        return {"value": api_moment(value)}
    if kind == D:
        return {"value": local_midnight(value).isoformat()}
    if kind == DEC:
        return {"value": round(float(value), 6)}
    return {"value": value}


def _links(base_path: str, entity: Entity, record_id: str) -> dict[str, str]:
    self_path = f"{base_path}/{entity.name}/{record_id}"
    return {"self": self_path, "files:put": f"{self_path}/files/{{filename}}"}


def render(entity: Entity, record: Mapping[str, Any], *, base_path: str, row_number: int = 1,
           expand: Iterable[str] = (), select: Iterable[str] | None = None) -> dict[str, Any]:
    """The record as the API answers it (``expand``: detail names; ``select``: top-level fields)."""
    chosen = None if select is None else set(select)
    out: dict[str, Any] = {"id": record["id"], "rowNumber": row_number, "note": {"value": record.get("note") or ""}}
    for name, kind in entity.fields.items():
        if chosen is None or name in chosen:
            out[name] = _value_object(kind, record.get(name))
    for detail in expand:
        columns = entity.details[detail]
        out[detail] = [
            {"id": row["id"], "rowNumber": n, "note": {"value": ""},
             **{name: _value_object(kind, row.get(name)) for name, kind in columns.items()}, "custom": {}}
            for n, row in enumerate(record.get(detail) or [], start=1)
        ]
    out["custom"] = {}
    out["_links"] = _links(base_path, entity, record["id"])
    return out


def push_row(entity: Entity, record: Mapping[str, Any]) -> dict[str, Any]:
    """One row of a push notification: the generic inquiry's columns, plain values (not value objects)."""
    row: dict[str, Any] = {"NoteID": record["id"]}
    for name, kind in entity.fields.items():
        value = record.get(name)
        if kind == DT and value is not None:
            value = api_moment(value)
        elif kind == D and value is not None:
            value = local_midnight(value).isoformat()
        row[name] = value
    return row


# -- reading request bodies ------------------------------------------------------------------------


def _read_value(kind: str, wrapped: Any, where: str) -> Any:
    if not isinstance(wrapped, dict):
        raise BodyError(f"{where}: expected a value object {{\"value\": ...}}, got {type(wrapped).__name__}")
    if "value" not in wrapped:
        return None
    value = wrapped["value"]
    if value is None:
        return None
    try:
        if kind == S:
            return str(value)
        if kind in (DEC, INT):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            return int(value) if kind == INT else float(value)
        if kind == B:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind == G:
            return str(uuid.UUID(str(value)))
        text = str(value).strip()
        if kind == D and len(text) == 10:
            return date.fromisoformat(text)  # a bare date is the company's day, as the service reads it
        moment = parse_moment(text, ZONE)
        return moment.astimezone(ZONE).date() if kind == D else moment.astimezone(UTC)
    except ValueError:
        raise BodyError(f"{where}: '{value}' is not a valid {kind}") from None


def read_record(entity: Entity, body: Any) -> dict[str, Any]:
    """A PUT body (value objects) as a plain partial record: only the fields it names.

    Details become lists of row dicts (``id``, ``delete`` kept bare); unknown fields are ignored,
    as the service ignores them; a bare value where a value object belongs is a :class:`BodyError`.
    """
    if not isinstance(body, dict):
        raise BodyError("the request body must be a JSON object")
    plain: dict[str, Any] = {}
    if body.get("id") is not None:
        try:
            plain["id"] = str(uuid.UUID(str(body["id"])))
        except ValueError:
            raise BodyError(f"id: '{body['id']}' is not a GUID") from None
    for name, kind in entity.fields.items():
        if name in body:
            plain[name] = _read_value(kind, body[name], name)
    for detail, columns in entity.details.items():
        if detail not in body:
            continue
        rows = body[detail]
        if not isinstance(rows, list):
            raise BodyError(f"{detail}: expected an array of rows")
        parsed = []
        for n, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BodyError(f"{detail}[{n}]: expected an object")
            item: dict[str, Any] = {k: row[k] for k in ("id", "delete") if row.get(k) is not None}
            for name, kind in columns.items():
                if name in row:
                    item[name] = _read_value(kind, row[name], f"{detail}[{n}].{name}")
            parsed.append(item)
        plain[detail] = parsed
    return plain


# -- arithmetic ------------------------------------------------------------------------------------


def _money(value: float) -> float:
    return round(value + 0.0, 2)


def tax_details(lines: list[dict[str, Any]], category_of: str = "TaxCategory") -> list[dict[str, Any]]:
    """Tax rows (one per tax id) that follow from the lines' tax categories."""
    by_tax: dict[str, float] = {}
    for line in lines:
        tax_id = line.get(category_of) or "MVA25"
        by_tax[tax_id] = by_tax.get(tax_id, 0.0) + float(line.get("Amount") or line.get("ExtendedCost") or 0.0)
    return [{"id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"tax/{tax_id}/{taxable}")), "TaxID": tax_id,
             "TaxRate": TAX_RATE.get(tax_id, 0.0), "TaxableAmount": _money(taxable),
             "TaxAmount": _money(taxable * TAX_RATE.get(tax_id, 0.0) / 100)}
            for tax_id, taxable in sorted(by_tax.items())]


def bill_totals(record: dict[str, Any]) -> float:
    """Recompute a bill's tax rows and total from its lines; returns the document total."""
    lines = record.get("Details") or []
    for line in lines:
        qty, unit = float(line.get("Qty") or 0.0), float(line.get("UnitCost") or 0.0)
        if line.get("ExtendedCost") is None:
            line["ExtendedCost"] = _money(qty * unit)
        line["Amount"] = line.get("Amount") if line.get("Amount") is not None else line["ExtendedCost"]
    record["TaxDetails"] = tax_details(lines)
    record["TaxTotal"] = _money(sum(row["TaxAmount"] for row in record["TaxDetails"]))
    return _money(sum(float(line.get("Amount") or 0.0) for line in lines) + record["TaxTotal"])


def order_totals(record: dict[str, Any]) -> None:
    """Recompute a purchase order's line, tax and order totals from its lines."""
    lines = record.get("Details") or []
    for line in lines:
        qty, unit = float(line.get("OrderQty") or 0.0), float(line.get("UnitCost") or 0.0)
        line["ExtendedCost"] = _money(qty * unit)
    taxable = [{"Amount": line["ExtendedCost"], "TaxCategory": record.get("_tax", "MVA25")} for line in lines]
    record["TaxDetails"] = tax_details(taxable)
    record["LineTotal"] = _money(sum(line["ExtendedCost"] for line in lines))
    record["TaxTotal"] = _money(sum(row["TaxAmount"] for row in record["TaxDetails"]))
    record["OrderTotal"] = _money(record["LineTotal"] + record["TaxTotal"])


def in_nok(amount: float, currency: str | None) -> float:
    return amount * CURRENCY_RATES_NOK.get(currency or "NOK", 1.0)


# -- the demo tenant -------------------------------------------------------------------------------


@dataclass
class Tenant:
    """Every record of the company by collection and id, and the next number of each series."""

    records: dict[str, dict[str, dict[str, Any]]]
    sequences: dict[str, int]
    invalid: list[tuple[str, str, str]] = field(default_factory=list)  # (collection, id, reason)


_BILL_STATUS = (("Open", 28), ("Closed", 22), ("Balanced", 12), ("On Hold", 14), ("Pending Approval", 10),
                ("Rejected", 5), ("Voided", 3))
_PO_STATUS = (("Open", 30), ("Completed", 12), ("Closed", 18), ("On Hold", 12), ("Pending Approval", 12),
              ("Rejected", 6), ("Cancelled", 4), ("Pending Printing", 6))
_PAYMENT_STATUS = (("Closed", 35), ("Open", 25), ("Balanced", 15), ("On Hold", 15), ("Voided", 5), ("Reserved", 5))
_TERMS = (("10D", 10), ("14D", 14), ("30D", 30), ("45D", 45))
_UOMS = ("STK", "PAL", "TIME", "KG", "M")
_INVALID_EVERY = 40  # about one bill in _INVALID_EVERY carries no currency, as a legacy import left it
_UNBALANCED_SHARE = 0.4  # of the bills on hold, how many are out of balance


def _uuid(seed: int, label: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"acumatica/{seed}/{label}"))


def _code(name: str, taken: set[str]) -> str:
    letters = "".join(ch for ch in name.upper() if ch.isalpha() and ch.isascii())[:10] or "VENDOR"
    code, n = letters, 1
    while code in taken:
        n += 1
        code = f"{letters[:8]}{n:02d}"
    taken.add(code)
    return code


def _subaccount(dice: Dice) -> str:
    return f"{dice.choice(DEPARTMENTS)[0]}-{dice.choice(COST_CENTRES)[0]}"


def _vendors(seed: int, count: int, schedule: ModificationSchedule) -> dict[str, dict[str, Any]]:
    vendors: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for seq in range(count):
        dice = Dice(seed, "acumatica/vendor", seq)
        country = COUNTRIES[dice.weighted(COUNTRY_WEIGHTS)]
        name = company_name(dice, country)
        organisation = organisation_number(dice, country)
        modified = datetime.fromtimestamp(schedule.modified_ms("acumatica/vendors", seq, count) / 1000, tz=UTC)
        record_id = _uuid(seed, f"vendor/{seq}")
        vendors[record_id] = {
            "id": record_id, "VendorID": _code(name, taken), "VendorName": name, "LegalName": name,
            "Status": dice.weighted((("Active", 90), ("On Hold", 5), ("Hold Payments", 5))),
            "VendorClass": "DOMESTIC" if country.code == "NO" else "NORDIC", "CurrencyID": country.currency,
            "Terms": dice.choice(_TERMS)[0], "TaxRegistrationID": vat_number(country, organisation),
            "PaymentMethod": "BANKTRANS", "CashAccount": "1920", "APAccount": "2400",
            "CreatedDateTime": modified - timedelta(days=200 + dice.below(900)), "LastModifiedDateTime": modified,
        }
    return vendors


def _bill_lines(seed: int, seq: int, vendor: Mapping[str, Any], day: date) -> list[dict[str, Any]]:
    dice = Dice(seed, "acumatica/bill-lines", seq)
    tax = "MVA25" if vendor["VendorClass"] == "DOMESTIC" else "MVA0"
    lines = []
    for n in range(dice.between(1, 4)):
        account = dice.choice(tuple(EXPENSE_LINE_TEXTS))
        qty = float(dice.between(1, 40))
        unit = dice.money(40, 6000)
        lines.append({
            "id": _uuid(seed, f"bill/{seq}/line/{n}"), "Branch": BRANCH, "InventoryID": None,
            "TransactionDescription": dice.choice(EXPENSE_LINE_TEXTS[account]), "Qty": qty,
            "UOM": dice.choice(_UOMS), "UnitCost": unit, "ExtendedCost": _money(qty * unit),
            "Amount": _money(qty * unit), "Account": account, "Subaccount": _subaccount(dice), "TaxCategory": tax,
            "Project": "X", "POOrderType": None, "POOrderNbr": None, "POLine": None,
            "Description": None,
        })
    return lines


def _bills(seed: int, count: int, vendors: list[dict[str, Any]], schedule: ModificationSchedule,
           invalid: list[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    bills: dict[str, dict[str, Any]] = {}
    for seq in range(count):
        dice = Dice(seed, "acumatica/bill", seq)
        vendor = vendors[dice.below(len(vendors))]
        modified = datetime.fromtimestamp(schedule.modified_ms("acumatica/bills", seq, count) / 1000, tz=UTC)
        day = (modified - timedelta(days=dice.below(20))).astimezone(ZONE).date()
        terms = dict(_TERMS).get(vendor["Terms"], 30)
        record_id = _uuid(seed, f"bill/{seq}")
        bill: dict[str, Any] = {
            "id": record_id, "Type": "Bill", "ReferenceNbr": f"{1001 + seq:06d}", "Date": day,
            "DueDate": day + timedelta(days=terms), "PostPeriod": f"{day.month:02d}{day.year}",
            "Vendor": vendor["VendorID"], "VendorRef": f"F-{dice.between(10000, 99999)}", "LocationID": "MAIN",
            "Description": f"Faktura {vendor['VendorName']}", "CurrencyID": vendor["CurrencyID"],
            "Terms": vendor["Terms"], "BranchID": BRANCH, "CashAccount": "1920", "Project": "X",
            "ApprovedForPayment": False, "IsTaxValid": True, "LastModifiedDateTime": modified,
            "Details": _bill_lines(seed, seq, vendor, day), "Applications": [],
        }
        total = bill_totals(bill)
        status = dice.weighted(_BILL_STATUS)
        bill.update(Status=status, Hold=status == "On Hold", Amount=total, Balance=total)
        if status == "On Hold" and dice.chance(_UNBALANCED_SHARE):
            bill["Amount"] = _money(total + dice.choice((-1, 1)) * dice.money(10, 900))
            bill["Balance"] = bill["Amount"]
            bill["Description"] = f"Faktura {vendor['VendorName']} (kontrollsum avviker)"
        elif status == "Closed" or status == "Voided":
            bill["Balance"] = 0.0
        elif status == "Open" and dice.chance(0.3):
            bill["Balance"] = _money(total * dice.between(20, 80) / 100)
        if status in ("Open", "Closed"):
            bill["ApprovedForPayment"] = True
        if seq % _INVALID_EVERY == _INVALID_EVERY - 1:
            bill["CurrencyID"] = None
            invalid.append(("bills", record_id, "missing_currency"))
        bills[record_id] = bill
    return bills


def _purchase_orders(seed: int, count: int, vendors: list[dict[str, Any]],
                     schedule: ModificationSchedule) -> dict[str, dict[str, Any]]:
    orders: dict[str, dict[str, Any]] = {}
    for seq in range(count):
        dice = Dice(seed, "acumatica/po", seq)
        vendor = vendors[dice.below(len(vendors))]
        modified = datetime.fromtimestamp(schedule.modified_ms("acumatica/pos", seq, count) / 1000, tz=UTC)
        day = (modified - timedelta(days=dice.below(10))).astimezone(ZONE).date()
        status = dice.weighted(_PO_STATUS)
        lines = []
        for n in range(dice.between(1, 5)):
            account = dice.choice(("4000", "4300", "6540", "6550"))
            ordered = float(dice.between(1, 120))
            received = ordered if status in ("Completed", "Closed") else 0.0
            lines.append({
                "id": _uuid(seed, f"po/{seq}/line/{n}"), "LineNbr": n + 1, "LineType": "Goods for IN",
                "BranchID": BRANCH, "InventoryID": f"VARE{dice.between(100, 999)}",
                "LineDescription": dice.choice(EXPENSE_LINE_TEXTS[account]), "OrderQty": ordered,
                "UOM": dice.choice(_UOMS), "UnitCost": dice.money(20, 4000), "Account": account,
                "Subaccount": _subaccount(dice), "WarehouseID": "OSLO", "Promised": day + timedelta(days=14),
                "QtyOnReceipts": received, "ReceivedAmount": 0.0, "Completed": received == ordered,
                "Cancelled": status == "Cancelled",
            })
        record_id = _uuid(seed, f"po/{seq}")
        order: dict[str, Any] = {
            "id": record_id, "Type": "Normal", "OrderNbr": f"PO{1001 + seq:06d}", "Status": status,
            "Hold": status == "On Hold", "Date": day, "PromisedOn": day + timedelta(days=14),
            "VendorID": vendor["VendorID"], "Location": "MAIN", "VendorRef": None,
            "Description": f"Innkjøp {vendor['VendorName']}", "CurrencyID": vendor["CurrencyID"],
            "BaseCurrencyID": "NOK", "Terms": vendor["Terms"], "Branch": BRANCH, "Owner": "Ingrid Berg",
            "Project": "X", "VendorTaxZone": "NO" if vendor["VendorClass"] == "DOMESTIC" else "EXPORT",
            "IsTaxValid": True, "LastModifiedDateTime": modified, "Details": lines,
            "_tax": "MVA25" if vendor["VendorClass"] == "DOMESTIC" else "MVA0",
        }
        order_totals(order)
        order["ControlTotal"] = order["OrderTotal"]
        orders[record_id] = order
    return orders


def _payments(seed: int, count: int, schedule: ModificationSchedule) -> dict[str, dict[str, Any]]:
    payments: dict[str, dict[str, Any]] = {}
    customers = []
    taken: set[str] = set()
    for n in range(max(4, count // 3)):
        dice = Dice(seed, "acumatica/customer", n)
        country = COUNTRIES[dice.weighted(COUNTRY_WEIGHTS)]
        customers.append((_code(company_name(dice, country), taken), country.currency))
    for seq in range(count):
        dice = Dice(seed, "acumatica/payment", seq)
        customer, currency = dice.choice(customers)
        modified = datetime.fromtimestamp(schedule.modified_ms("acumatica/payments", seq, count) / 1000, tz=UTC)
        amount = dice.money(500, 250_000)
        status = dice.weighted(_PAYMENT_STATUS)
        applied = amount if status == "Closed" else (_money(amount * dice.between(0, 90) / 100)
                                                     if status == "Open" else 0.0)
        record_id = _uuid(seed, f"payment/{seq}")
        invoice = f"INV{dice.between(10000, 99999)}"
        payments[record_id] = {
            "id": record_id, "NoteID": record_id, "Type": "Payment", "ReferenceNbr": f"{5001 + seq:06d}",
            "Status": status, "Hold": status == "On Hold",
            "ApplicationDate": (modified - timedelta(days=dice.below(5))).astimezone(ZONE).date(),
            "CustomerID": customer, "CustomerLocationID": "MAIN", "PaymentMethod": "BANKTRANS",
            "CashAccount": "1920", "PaymentRef": f"KID{dice.between(10**8, 10**9 - 1)}",
            "Description": f"Innbetaling {invoice}", "CurrencyID": currency, "PaymentAmount": amount,
            "AppliedToDocuments": applied, "AvailableBalance": _money(amount - applied), "BranchID": BRANCH,
            "LastModifiedDateTime": modified,
            "DocumentsToApply": [{"id": _uuid(seed, f"payment/{seq}/apply"), "DocType": "Invoice",
                                  "ReferenceNbr": invoice, "AmountPaid": applied or amount,
                                  "Description": None}],
            "ApplicationHistory": [],
        }
    return payments


def generate_tenant(seed: int, size: int, days: float, anchor: datetime) -> Tenant:
    """The demo company at ``anchor``: ``size`` bills, half as many POs, a third as many payments."""
    schedule = ModificationSchedule(seed, to_ms(anchor), days)
    invalid: list[tuple[str, str, str]] = []
    vendors = _vendors(seed, max(8, min(60, size // 4)), schedule)
    active = [v for v in vendors.values() if v["Status"] == "Active"] or list(vendors.values())
    bills = _bills(seed, size, active, schedule, invalid)
    orders = _purchase_orders(seed, max(4, size // 2), active, schedule)
    payments = _payments(seed, max(4, size // 3), schedule)
    return Tenant(
        records={"vendors": vendors, "bills": bills, "purchase_orders": orders, "payments": payments},
        sequences={"bills": 1001 + len(bills), "purchase_orders": 1001 + len(orders),
                   "payments": 5001 + len(payments)},
        invalid=invalid,
    )


def needs_approval(amount: float, currency: str | None) -> bool:
    return in_nok(amount, currency) > APPROVAL_LIMIT_NOK
