"""Acumatica records: value objects on the wire, plain pydantic models in the connector.

The contract-based API wraps every field in a value object (``{"value": x}``; a null field is
``{}``; a refused field carries ``"error"``) except ``id``, ``rowNumber`` and the ``delete`` flag of a
detail row. :func:`from_wire` and :func:`to_wire` are the one place where that wrapping is undone
and done; everything else in the connector sees plain values.

The models read plain records with the API's field names as aliases (``ReferenceNbr``,
``CurrencyID``, ``LastModifiedDateTime`` ...); unknown fields are kept (``extra="allow"``). What
the connector relies on (the id, the document number, status, vendor, currency, amounts as
``Decimal``, ``LastModifiedDateTime`` with its offset) is required and typed, so a record missing it
is quarantined with a message naming the API field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from ml_connector_dagster.core.currency import iso_currency_code
from ml_connector_dagster.core.landing import id_problem
from ml_connector_dagster.core.moments import to_utc
from ml_connector_dagster.core.validation import describe_error, validate_record

__all__ = [
    "AcumaticaRecord",
    "Bill",
    "BillLine",
    "Payment",
    "PaymentApplication",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "TaxLine",
    "Vendor",
    "describe_error",
    "field_errors",
    "from_wire",
    "parse_moment",
    "to_wire",
    "validate_record",
]

_BARE = frozenset({"id", "rowNumber", "delete"})
_DROPPED = frozenset({"_links", "custom", "files"})
_VALUE_KEYS = frozenset({"value", "error"})


def _is_mapping(value: Any) -> bool:
    # Parsed JSON is made of dicts: the exact type test spares the ABC check on every field.
    return type(value) is dict or isinstance(value, Mapping)


def _is_value_object(value: Any) -> bool:
    return _is_mapping(value) and value.keys() <= _VALUE_KEYS


def from_wire(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A record as the API sent it, made plain: value objects unwrapped (``{}`` -> None), detail rows
    and linked entities unwrapped recursively, ``_links``/``custom``/``files`` dropped."""
    plain: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _DROPPED:
            continue
        if name in _BARE:
            plain[name] = value
        elif _is_mapping(value):
            plain[name] = value.get("value") if value.keys() <= _VALUE_KEYS else from_wire(value)
        elif isinstance(value, list):
            plain[name] = [from_wire(row) if _is_mapping(row) else row for row in value]
        else:
            plain[name] = value  # not a value object: kept as sent, validation will name it
    return plain


def _wire_value(value: Any, zone: tzinfo | None) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a date-time sent to Acumatica needs an offset (a naive one is read in the server's zone)")
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        # The contract has no date type: a date travels as the users' midnight, with its offset, so
        # that the instance (which keeps dates in its users' zone) files it under the same day.
        if zone is None:
            raise ValueError("a date sent to Acumatica needs the instance's time zone (to_wire(..., zone=...))")
        return datetime(value.year, value.month, value.day, tzinfo=zone).isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def to_wire(record: Mapping[str, Any], zone: tzinfo | None = None) -> dict[str, Any]:
    """Plain fields wrapped as the API expects them: ``{"Hold": {"value": True}}``.

    ``id`` and ``delete`` stay bare; a list becomes detail rows (each wrapped); a mapping that is
    already a value object is passed through; another mapping is a linked entity, wrapped inside.
    ``rowNumber`` is the server's and is not sent. A ``date`` is sent as midnight in ``zone``.
    """
    wire: dict[str, Any] = {}
    for name, value in record.items():
        if name == "rowNumber":
            continue
        if name in _BARE or name == "custom":
            wire[name] = value
        elif isinstance(value, list):
            wire[name] = [to_wire(row, zone) for row in value]
        elif _is_value_object(value) and value:
            wire[name] = dict(value)
        elif isinstance(value, Mapping):
            wire[name] = to_wire(value, zone)
        else:
            wire[name] = {"value": _wire_value(value, zone)}
    return wire


def field_errors(raw: Any) -> dict[str, str]:
    """The ``error`` of every value object (and of the record itself, under ``""``) in a 422 body."""
    errors: dict[str, str] = {}
    if not isinstance(raw, Mapping):
        return errors
    if isinstance(raw.get("error"), str):
        errors[""] = raw["error"]
    for name, value in raw.items():
        if isinstance(value, Mapping) and isinstance(value.get("error"), str):
            errors[name] = value["error"]
        elif isinstance(value, list):
            for n, row in enumerate(value):
                errors |= {f"{name}[{n}].{key}".rstrip("."): text for key, text in field_errors(row).items()}
    return errors


# -- scalar types ----------------------------------------------------------------------------------


def parse_moment(value: Any) -> datetime:
    """An Acumatica DateTimeValue as an aware UTC datetime; a value without an offset is refused
    (it is in the instance's zone, which the connector does not know)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        match = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d{7})(.*)$", text)
        if match:  # .NET writes up to 7 fraction digits; Python reads 6
            text = f"{match[1]}.{match[2][:6]}{match[3]}"
        moment = datetime.fromisoformat(text)
    else:
        raise ValueError("expected an ISO 8601 date-time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the date-time has no offset")
    return to_utc(moment)


def _day(value: Any) -> Any:
    # Date fields come as the company's midnight with its offset: the local day is what counts.
    if isinstance(value, str) and "T" in value:
        return value.split("T", 1)[0]
    if isinstance(value, datetime):
        return value.date()
    return value


UtcMoment = Annotated[datetime, BeforeValidator(parse_moment)]
Day = Annotated[date, BeforeValidator(_day)]
Currency = Annotated[str, AfterValidator(iso_currency_code)]
Money = Decimal

_ACRONYMS = {"id": "ID", "po": "PO", "uom": "UOM"}
_SPECIAL = {"id": "id", "row_number": "rowNumber", "note": "note", "uom": "UOM"}


def api_name(name: str) -> str:
    """The API's spelling of a Python field name: ``currency_id`` -> ``CurrencyID``."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in name.split("_"))


class _AcumaticaModel(BaseModel):
    model_config = ConfigDict(alias_generator=api_name, populate_by_name=True, extra="allow")


class AcumaticaRecord(_AcumaticaModel):
    """A top-level record: its ``id`` (the record's NoteID, stable for life) and last modification."""

    number_field: ClassVar[str]

    id: str
    last_modified_date_time: UtcMoment

    @property
    def record_id(self) -> str:
        """The key the connector files this record under (ledger links, landing store, webhooks)."""
        return self.id

    @model_validator(mode="after")
    def _keyable_id(self) -> Self:
        problem = id_problem(self.id)
        if problem:
            raise ValueError(f"id: the id {problem}")
        return self

    @property
    def reference(self) -> str:
        """The document number a person recognises (``Bill 001042``, ``Normal PO001007``, a vendor id)."""
        number = str(getattr(self, self.number_field))
        doc_type = getattr(self, "type", None)
        return f"{doc_type} {number}" if doc_type else number

    @classmethod
    def raw_id(cls, plain: Mapping[str, Any]) -> str | None:
        """The id of a plain record, read without validating it."""
        value = plain.get("id")
        return None if value in (None, "") else str(value)

    @property
    def modified_at(self) -> datetime:
        return self.last_modified_date_time


class TaxLine(_AcumaticaModel):
    tax_id: str
    tax_rate: Money | None = None
    taxable_amount: Money | None = None
    tax_amount: Money | None = None


class BillLine(_AcumaticaModel):
    id: str | None = None
    transaction_description: str | None = None
    inventory_id: str | None = None
    qty: Money | None = None
    uom: str | None = None
    unit_cost: Money | None = None
    extended_cost: Money | None = None
    amount: Money | None = None
    account: str | None = None
    subaccount: str | None = None
    tax_category: str | None = None
    po_order_nbr: str | None = None


class Bill(AcumaticaRecord):
    """An AP bill (``Bill`` entity, screen AP301000)."""

    number_field: ClassVar[str] = "reference_nbr"

    type: str
    reference_nbr: str
    status: str
    hold: bool | None = None
    date: Day | None = None
    due_date: Day | None = None
    vendor: str
    vendor_ref: str | None = None
    description: str | None = None
    currency_id: Currency
    amount: Money
    balance: Money | None = None
    tax_total: Money | None = None
    terms: str | None = None
    branch_id: str | None = None
    approved_for_payment: bool | None = None
    details: list[BillLine] = Field(default_factory=list)
    tax_details: list[TaxLine] = Field(default_factory=list)


class PurchaseOrderLine(_AcumaticaModel):
    id: str | None = None
    line_nbr: int | None = None
    inventory_id: str | None = None
    line_description: str | None = None
    order_qty: Money | None = None
    uom: str | None = None
    unit_cost: Money | None = None
    extended_cost: Money | None = None
    account: str | None = None
    qty_on_receipts: Money | None = None
    completed: bool | None = None
    cancelled: bool | None = None


class PurchaseOrder(AcumaticaRecord):
    """A purchase order (``PurchaseOrder`` entity, screen PO301000)."""

    number_field: ClassVar[str] = "order_nbr"

    type: str
    order_nbr: str
    status: str
    hold: bool | None = None
    date: Day | None = None
    promised_on: Day | None = None
    vendor_id: str
    vendor_ref: str | None = None
    description: str | None = None
    currency_id: Currency
    order_total: Money
    line_total: Money | None = None
    tax_total: Money | None = None
    control_total: Money | None = None
    owner: str | None = None
    details: list[PurchaseOrderLine] = Field(default_factory=list)


class PaymentApplication(_AcumaticaModel):
    id: str | None = None
    doc_type: str | None = None
    reference_nbr: str | None = None
    amount_paid: Money | None = None


class Payment(AcumaticaRecord):
    """A customer payment (``Payment`` entity, screen AR302000)."""

    number_field: ClassVar[str] = "reference_nbr"

    type: str
    reference_nbr: str
    status: str
    hold: bool | None = None
    application_date: Day | None = None
    customer_id: str
    payment_method: str | None = None
    payment_ref: str | None = None
    description: str | None = None
    currency_id: Currency
    payment_amount: Money
    applied_to_documents: Money | None = None
    available_balance: Money | None = None
    documents_to_apply: list[PaymentApplication] = Field(default_factory=list)


class Vendor(AcumaticaRecord):
    """A vendor (``Vendor`` entity, screen AP303000)."""

    number_field: ClassVar[str] = "vendor_id"

    vendor_id: str
    vendor_name: str | None = None
    status: str | None = None
    vendor_class: str | None = None
    currency_id: Currency | None = None
    terms: str | None = None
    tax_registration_id: str | None = None




RecordT = TypeVar("RecordT", bound=AcumaticaRecord)


