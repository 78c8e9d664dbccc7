"""The JAGGAER demo tenant: vendors, GL accounts, purchase orders and invoices of Fjordlys Industri AS.

Built from the generic Nordic demo data (:mod:`..demo_data`) with the *same parties* as the Visma
simulator of the same seed, so a sandbox flow has real counterparts to match, and real edge cases:

- Vendor names spelled as a procurement clerk typed them: ``A/S`` for ``AS``, ``Aktiebolag`` for
  ``AB``, ``Oy X`` and ``X Oy Ab`` for ``X Oy``, upper case, the legal suffix dropped.
- Tax ids in every format seen on Nordic invoices: ``NO 923 456 789 MVA``, ``923456789``,
  ``NO923456789MVA``, ``SE556677889901``, ``556677-8899``, ``DK 12 34 56 78``, ``FI12345678``, none.
- A share of Visma's suppliers is missing from JAGGAER, some JAGGAER vendors exist only there, one
  shares a Visma supplier's name but not its organisation number, a few already carry their Visma
  supplier number in ``erpNumber`` (one of them a stale number Visma does not know).
- GL accounts under JAGGAER's own codes; :data:`GL_ACCOUNT_MAP` says which Visma account each maps
  to (two codes map to nothing).
- Invoices mostly reference a PO of the same vendor and copy its lines; a few records are malformed
  on purpose (quarantine fodder), listed by :meth:`JaggaerDemoData.invalid_records`.

Everything is generated eagerly from ``(seed, size, days, anchor)``; a record's modification time
comes from :class:`~..demo_data.ModificationSchedule` (clusters sharing one millisecond included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from ..demo_data import (
    COMPANY_TIMEZONE,
    COST_CENTRES,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DAY_MS,
    DEPARTMENTS,
    EXPENSE_LINE_TEXTS,
    SUPPLIERS,
    Country,
    Dice,
    ModificationSchedule,
    Party,
    VismaDemoData,
    company_name,
    organisation_number,
    person_name,
    street_address,
    to_ms,
)

PURCHASE_ORDERS = "purchase_orders"
INVOICES = "invoices"
VENDORS = "vendors"
GL_ACCOUNTS = "gl_accounts"
COLLECTIONS = (PURCHASE_ORDERS, INVOICES, VENDORS, GL_ACCOUNTS)
# The field each collection's records are identified by.
ID_FIELDS = {PURCHASE_ORDERS: "purchaseOrderId", INVOICES: "invoiceId", VENDORS: "supplierId", GL_ACCOUNTS: "code"}
MODIFIED_FIELD = "lastModifiedDate"

INVALID_INVOICE_EVERY = 30
INVALID_ORDER_EVERY = 40
INVOICE_INVALID_REASONS = ("missing_total", "garbled_amount", "unknown_currency")
ORDER_INVALID_REASONS = ("missing_supplier",)


class JaggaerAccount(NamedTuple):
    code: str
    name: str
    visma_account: str | None  # the Visma account it maps to; None: unmapped on purpose
    active: bool = True


GL_ACCOUNT_TABLE: tuple[JaggaerAccount, ...] = (
    JaggaerAccount("410100", "Raw materials and semi-finished goods", "4000"),
    JaggaerAccount("410300", "Goods for resale", "4300"),
    JaggaerAccount("420100", "Subcontracting", "4500"),
    JaggaerAccount("530100", "Freight and transport", "6100"),
    JaggaerAccount("540100", "Rent of premises", "6300"),
    JaggaerAccount("540200", "Electricity and heating", "6340"),
    JaggaerAccount("540300", "Equipment rental", "6400"),
    JaggaerAccount("550100", "Furniture and fixtures", "6540"),
    JaggaerAccount("550200", "Operating supplies", "6550"),
    JaggaerAccount("560100", "Building maintenance", "6600"),
    JaggaerAccount("570100", "Accounting services", "6705"),
    JaggaerAccount("570900", "Other external services", "6790"),
    JaggaerAccount("580100", "Office supplies", "6800"),
    JaggaerAccount("580600", "Training and conferences", "6860"),
    JaggaerAccount("580900", "Telephone and internet", "6900"),
    JaggaerAccount("590400", "Travel", "7140"),
    JaggaerAccount("591200", "Advertising", "7320"),
    JaggaerAccount("592000", "Insurance", "7500"),
    JaggaerAccount("599000", "Miscellaneous purchases", None),
    JaggaerAccount("410900", "Samples (discontinued)", None, active=False),
)
# JAGGAER account code -> Visma account number: the mapping table a sandbox flow starts from.
GL_ACCOUNT_MAP: dict[str, str] = {a.code: a.visma_account for a in GL_ACCOUNT_TABLE if a.visma_account}
_CODE_OF_VISMA = {a.visma_account: a.code for a in GL_ACCOUNT_TABLE if a.visma_account}
_LINE_ACCOUNTS = tuple(EXPENSE_LINE_TEXTS)

_PO_STATUS = (("DISTRIBUTED", 40), ("PARTIALLY_RECEIVED", 15), ("RECEIVED", 15), ("CLOSED", 15), ("APPROVED", 8),
              ("CANCELLED", 7))
_INVOICE_STATUS = (("APPROVED", 30), ("IN_WORKFLOW", 25), ("PAYABLE", 20), ("PAID", 15), ("REJECTED", 5),
                   ("CANCELED", 5))
_UNITS = ("EA", "EA", "EA", "BX", "KG", "HUR", "M")
_TAX_RATES = ((25.0, 80), (15.0, 8), (12.0, 4), (0.0, 8))
_PHONE_PREFIX = {"NO": 47, "SE": 46, "DK": 45, "FI": 358}
_PAYMENT_TERMS = (("NET10", 10), ("NET14", 14), ("NET30", 30), ("NET45", 45), ("NET60", 60))


def j1p_datetime(ms: int) -> str:
    """A J1P timestamp: the customer instance's local time (Europe/Oslo), milliseconds, with offset."""
    local = datetime.fromtimestamp(ms / 1000, tz=COMPANY_TIMEZONE)
    return local.isoformat(timespec="milliseconds")


def _local_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=COMPANY_TIMEZONE).date()


def _money(value: float) -> float:
    return round(value + 0.0, 2)


# -- the edge cases of vendor matching ---------------------------------------------------------


def _split_legal_form(name: str, country: Country) -> tuple[str, str]:
    for legal in sorted(set(country.legal_forms), key=len, reverse=True):
        if name.endswith(" " + legal):
            return name[: -len(legal) - 1], legal
    return name, ""


def name_variant(name: str, country: Country, dice: Dice) -> str:
    """``name`` as a clerk may have typed it into JAGGAER (legal form moved, respelled or dropped)."""
    base, legal = _split_legal_form(name, country)
    variants: list[tuple[str, float]] = [(name, 5.0), (name.upper(), 1.0), (base, 1.0)]
    if country.code == "NO":
        variants += [(f"{base} A/S", 2.0), (f"{base} as", 0.5), (f"{base} {legal}.", 0.5)]
    elif country.code == "SE":
        variants += [(f"{base} Aktiebolag", 1.5), (f"AB {base}", 1.5), (f"{base} (publ)", 0.3)]
    elif country.code == "DK":
        variants += [(f"{base} AS", 1.5), (f"{base} A.S.", 0.8), (f"{base} a/s", 0.5)]
    else:
        variants += [(f"Oy {base}", 1.5), (f"{base} Oy Ab", 1.5), (f"{base} OY", 1.0)]
    return dice.weighted(variants)


def tax_id_variant(organisation: str, country: Country, dice: Dice) -> str | None:
    """The organisation's VAT/registry id in one of the formats seen on Nordic documents (or none)."""
    digits = organisation.replace("-", "")
    if dice.chance(0.05):
        return None
    if country.code == "NO":
        spaced = f"{digits[:3]} {digits[3:6]} {digits[6:]}"
        options = [digits, f"NO {spaced} MVA", f"NO{digits}MVA", spaced, f"NO{digits}"]
    elif country.code == "SE":
        options = [f"SE{digits}01", organisation, digits, f"SE {organisation} 01"]
    elif country.code == "DK":
        options = [f"DK{digits}", digits, f"DK {digits[:2]} {digits[2:4]} {digits[4:6]} {digits[6:]}"]
    else:
        options = [f"FI{digits}", organisation, f"FI {organisation}"]
    return dice.choice(options)


# -- the tenant ----------------------------------------------------------------------------------


@dataclass
class JaggaerDemoData:
    """Every record of the demo tenant, as J1P answers it, plus when it was last modified (ms)."""

    seed: int
    size: int
    days: float
    anchor: datetime
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    modified_ms: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        anchor_ms = to_ms(self.anchor)
        self._schedule = ModificationSchedule(self.seed, anchor_ms, self.days)
        self._visma = VismaDemoData(seed=self.seed, size=self.size, days=self.days, anchor=self.anchor)
        for collection in COLLECTIONS:
            self.records[collection] = {}
            self.modified_ms[collection] = {}
            self.invalid[collection] = {}
        self._gl_accounts()
        self._vendors()
        self._purchase_orders(max(5, self.size // 2))
        self._invoices(self.size)

    # -- helpers -----------------------------------------------------------------------------------
    def _stamp(self, collection: str, seq: int, count: int) -> tuple[int, int]:
        """(modified ms, created ms) of generated record ``seq``."""
        modified = self._schedule.modified_ms("jaggaer/" + collection, seq, count)
        created = modified - int(Dice(self.seed, f"jaggaer/{collection}/created", seq).unit() * 30 * DAY_MS)
        return modified, created

    def _put(self, collection: str, record: dict[str, Any], modified: int) -> None:
        record_id = str(record[ID_FIELDS[collection]])
        record[MODIFIED_FIELD] = j1p_datetime(modified)
        self.records[collection][record_id] = record
        self.modified_ms[collection][record_id] = modified

    # -- GL accounts -------------------------------------------------------------------------------
    def _gl_accounts(self) -> None:
        count = len(GL_ACCOUNT_TABLE)
        for seq, account in enumerate(GL_ACCOUNT_TABLE):
            modified, created = self._stamp(GL_ACCOUNTS, seq, count)
            self._put(GL_ACCOUNTS, {
                "code": account.code,
                "name": account.name,
                "type": "EXPENSE",
                "active": account.active,
                "chartOfAccounts": "FJORDLYS",
                "createdDate": j1p_datetime(created),
            }, modified)

    # -- vendors -----------------------------------------------------------------------------------
    def _vendor(self, seq: int, supplier_id: int, party: Party, name: str, erp_number: str | None,
                count: int) -> dict[str, Any]:
        dice = Dice(self.seed, "jaggaer/vendor", seq)
        modified, created = self._stamp(VENDORS, seq, count)
        terms = dice.choice(_PAYMENT_TERMS)
        record = {
            "supplierId": supplier_id,
            "name": name,
            "taxId": tax_id_variant(party.organisation, party.country, dice),
            "country": party.country.code,
            "currency": party.currency,
            "status": dice.weighted((("ACTIVE", 92), ("INACTIVE", 5), ("PENDING_APPROVAL", 3))),
            "erpNumber": erp_number,
            "paymentTerms": terms[0],
            "address": {"street": party.address.line1, "postalCode": party.address.postal_code,
                        "city": party.address.city, "country": party.country.code},
            "contact": {"name": party.contact, "email": party.email, "phone": party.phone},
            "createdDate": j1p_datetime(created),
        }
        self._put(VENDORS, record, modified)
        return record

    def _vendors(self) -> None:
        visma_count = self._visma.counts[SUPPLIERS]
        extras = max(3, visma_count // 8)
        count = visma_count + extras + 1
        stale_done = False
        self.vendor_parties: dict[int, Party] = {}
        for seq in range(visma_count):
            dice = Dice(self.seed, "jaggaer/vendor/choice", seq)
            if seq > 0 and dice.chance(0.15):
                continue  # this Visma supplier was never onboarded in JAGGAER
            party = self._visma.party(SUPPLIERS, seq)
            erp = party.number if dice.chance(0.25) else None
            if erp is None and not stale_done and seq >= 3:
                erp, stale_done = "19999", True  # a stale link: no such Visma supplier
            supplier_id = 310001 + seq
            self._vendor(seq, supplier_id, party, name_variant(party.name, party.country, dice), erp, count)
            self.vendor_parties[supplier_id] = party
        self.vendors_without_supplier: set[int] = set()  # no Visma supplier behind them: never matched
        for extra in range(extras):
            seq = visma_count + extra
            party = self._party("jaggaer/extra-vendor", extra)
            supplier_id = 310001 + seq
            self._vendor(seq, supplier_id, party, party.name, None, count)
            self.vendor_parties[supplier_id] = party
            self.vendors_without_supplier.add(supplier_id)
        # Same name as Visma's first supplier, another company: a name-only match would be wrong.
        twin = self._visma.party(SUPPLIERS, 0)
        other = self._party("jaggaer/name-twin", 0, country=twin.country)
        seq = visma_count + extras
        self._vendor(seq, 310001 + seq, other._replace(name=twin.name), twin.name, None, count)
        self.vendor_parties[310001 + seq] = other
        self.vendors_without_supplier.add(310001 + seq)

    def _party(self, label: str, index: int, country: Country | None = None) -> Party:
        dice = Dice(self.seed, label, index)
        country = country or COUNTRIES[dice.weighted(COUNTRY_WEIGHTS)]
        name = company_name(dice, country)
        organisation = organisation_number(dice, country)
        domain = "".join(ch for ch in name.lower().split(" ")[0] if ch.isascii() and ch.isalnum()) or "firma"
        return Party(
            internal_id=0, number="", name=name, country=country, currency=country.currency,
            organisation=organisation, vat="", address=street_address(dice, country),
            contact=person_name(dice, country), email=f"order@{domain}.{country.code.lower()}",
            phone=f"+{_PHONE_PREFIX[country.code]} {dice.between(20000000, 99999999)}", credit_terms=("30D", "30 dager netto", 30),
            payment_method=("BANK", "Bankoverføring"),
        )

    def _supplier_ref(self, supplier_id: int) -> dict[str, Any]:
        return {"supplierId": supplier_id, "name": self.records[VENDORS][str(supplier_id)]["name"]}

    # -- purchase orders ---------------------------------------------------------------------------
    def _purchase_orders(self, count: int) -> None:
        supplier_ids = sorted(self.vendor_parties)
        self.order_numbers: dict[str, str] = {}
        for seq in range(count):
            dice = Dice(self.seed, "jaggaer/" + PURCHASE_ORDERS, seq)
            modified, created = self._stamp(PURCHASE_ORDERS, seq, count)
            supplier_id = dice.choice(supplier_ids)
            party = self.vendor_parties[supplier_id]
            day = _local_day(created)
            department = dice.choice(DEPARTMENTS)
            centre = dice.choice(COST_CENTRES)
            lines = []
            for number in range(1, dice.between(1, 4) + 1):
                visma_account = dice.choice(_LINE_ACCOUNTS)
                quantity = float(dice.between(1, 120))
                unit_price = dice.money(15, 4000)
                lines.append({
                    "lineNumber": number,
                    "description": dice.choice(EXPENSE_LINE_TEXTS[visma_account]),
                    "catalogNumber": f"ART-{dice.between(1000, 9999)}",
                    "quantity": quantity,
                    "unitOfMeasure": dice.choice(_UNITS),
                    "unitPrice": unit_price,
                    "lineTotal": _money(quantity * unit_price),
                    "accountCode": _CODE_OF_VISMA[visma_account],
                    "costCenter": centre[0],
                })
            if dice.chance(0.04):
                lines[-1]["accountCode"] = "599000"  # an account with no Visma mapping
            po_number = f"PO-{day.year}-{seq + 1:06d}"
            record = {
                "purchaseOrderId": 520001 + seq,
                "poNumber": po_number,
                "status": dice.weighted(_PO_STATUS),
                "supplier": self._supplier_ref(supplier_id),
                "orderDate": day.isoformat(),
                "currency": party.currency,
                "totalAmount": _money(sum(line["lineTotal"] for line in lines)),
                "buyer": {"name": person_name(dice, COUNTRIES["NO"]), "department": department[0]},
                "receiptStatus": None,
                "lines": lines,
                "createdDate": j1p_datetime(created),
            }
            if dice.below(INVALID_ORDER_EVERY) == 0:
                record["supplier"] = None
                self.invalid[PURCHASE_ORDERS][str(record["purchaseOrderId"])] = "missing_supplier"
            self._put(PURCHASE_ORDERS, record, modified)
            self.order_numbers[po_number] = str(record["purchaseOrderId"])

    # -- invoices ----------------------------------------------------------------------------------
    def _invoices(self, count: int) -> None:
        orders = [o for o in self.records[PURCHASE_ORDERS].values() if o["supplier"] is not None]
        supplier_ids = sorted(self.vendor_parties)
        for seq in range(count):
            dice = Dice(self.seed, "jaggaer/" + INVOICES, seq)
            modified, created = self._stamp(INVOICES, seq, count)
            order = dice.choice(orders) if orders and dice.chance(0.75) else None
            supplier_id = order["supplier"]["supplierId"] if order else dice.choice(supplier_ids)
            party = self.vendor_parties[supplier_id]
            rate = dice.weighted(_TAX_RATES)
            lines = self._invoice_lines(dice, order)
            subtotal = _money(sum(line["lineTotal"] for line in lines))
            tax = _money(subtotal * rate / 100)
            for line in lines:
                line["taxRate"] = rate
            day = _local_day(created)
            terms = dice.choice(_PAYMENT_TERMS)
            status = dice.weighted(_INVOICE_STATUS)
            record: dict[str, Any] = {
                "invoiceId": 710001 + seq,
                "invoiceNumber": dice.choice((f"F-{day.year}-{dice.between(1000, 99999)}",
                                              f"INV{dice.between(10000, 999999)}", str(dice.between(100000, 9999999)))),
                "status": status,
                "supplier": self._supplier_ref(supplier_id),
                "purchaseOrderNumber": order["poNumber"] if order else None,
                "invoiceDate": day.isoformat(),
                "dueDate": (day + timedelta(days=terms[1])).isoformat(),
                "currency": order["currency"] if order else party.currency,
                "subtotalAmount": subtotal,
                "taxAmount": tax,
                "totalAmount": _money(subtotal + tax),
                "paymentStatus": "PAID" if status == "PAID" else "UNPAID",
                "erpStatus": None,
                "lines": lines,
                "createdDate": j1p_datetime(created),
            }
            if dice.below(INVALID_INVOICE_EVERY) == 0:
                reason = dice.choice(INVOICE_INVALID_REASONS)
                if reason == "missing_total":
                    del record["totalAmount"]
                elif reason == "garbled_amount":
                    record["totalAmount"] = f"{record['totalAmount']:,.2f}".replace(",", " ").replace(".", ",")
                else:
                    record["currency"] = dice.choice(("KR", "NKR", "XXX"))
                self.invalid[INVOICES][str(record["invoiceId"])] = reason
            self._put(INVOICES, record, modified)

    @staticmethod
    def _invoice_lines(dice: Dice, order: dict[str, Any] | None) -> list[dict[str, Any]]:
        if order is not None:
            lines = []
            for po_line in order["lines"]:
                quantity = po_line["quantity"] if dice.chance(0.7) else float(dice.between(1, int(po_line["quantity"])))
                lines.append({
                    "lineNumber": po_line["lineNumber"], "poLineNumber": po_line["lineNumber"],
                    "description": po_line["description"], "quantity": quantity,
                    "unitOfMeasure": po_line["unitOfMeasure"], "unitPrice": po_line["unitPrice"],
                    "lineTotal": _money(quantity * po_line["unitPrice"]), "accountCode": po_line["accountCode"],
                })
            return lines
        visma_account = dice.choice(_LINE_ACCOUNTS)
        quantity = float(dice.between(1, 12))
        unit_price = dice.money(100, 20000)
        return [{
            "lineNumber": 1, "poLineNumber": None, "description": dice.choice(EXPENSE_LINE_TEXTS[visma_account]),
            "quantity": quantity, "unitOfMeasure": "EA", "unitPrice": unit_price,
            "lineTotal": _money(quantity * unit_price), "accountCode": _CODE_OF_VISMA[visma_account],
        }]

    # -- what tests and the demo ask -----------------------------------------------------------------
    def invalid_records(self) -> list[tuple[str, str, str]]:
        """``(collection, id, reason)`` of every record generated malformed on purpose."""
        return [(collection, record_id, reason)
                for collection in COLLECTIONS for record_id, reason in sorted(self.invalid[collection].items())]


__all__ = [
    "COLLECTIONS",
    "GL_ACCOUNTS",
    "GL_ACCOUNT_MAP",
    "GL_ACCOUNT_TABLE",
    "ID_FIELDS",
    "INVOICES",
    "MODIFIED_FIELD",
    "PURCHASE_ORDERS",
    "VENDORS",
    "JaggaerAccount",
    "JaggaerDemoData",
    "j1p_datetime",
    "name_variant",
    "tax_id_variant",
]
