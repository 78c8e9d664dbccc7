"""Pydantic models of the J1P records the connector reads, with the API's (camelCase) field names.

``Model.model_validate(raw)`` reads an API record as it comes; unknown fields are kept
(``extra="allow"``), since each customer's J1P may add its own. What the connector relies on — the
id, ``lastModifiedDate``, amounts as ``Decimal``, an ISO 4217 currency, the supplier of a document —
is required and typed, so a record missing it is quarantined with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
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
from pydantic.alias_generators import to_camel

from ml_connector_dagster.core.currency import iso_currency_code
from ml_connector_dagster.core.landing import id_problem
from ml_connector_dagster.core.moments import to_utc
from ml_connector_dagster.core.validation import describe_error, validate_record

__all__ = [
    "GlAccount",
    "Invoice",
    "InvoiceLine",
    "JaggaerRecord",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "SupplierRef",
    "Vendor",
    "describe_error",
    "modified_at",
    "parse_timestamp",
    "validate_record",
]

MODIFIED_FIELD = "lastModifiedDate"


def parse_timestamp(value: Any) -> datetime:
    """A J1P timestamp as an aware UTC datetime; one without an offset is refused, not guessed."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError("expected an ISO 8601 timestamp")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the timestamp has no offset")
    return to_utc(moment)


def modified_at(raw: Mapping[str, Any]) -> datetime | None:
    """A raw record's ``lastModifiedDate`` in UTC, or None when missing or unreadable."""
    try:
        return parse_timestamp(raw.get(MODIFIED_FIELD))
    except (TypeError, ValueError):
        return None


UtcDateTime = Annotated[datetime, BeforeValidator(parse_timestamp)]
Currency = Annotated[str, AfterValidator(iso_currency_code)]


class _J1pModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class JaggaerRecord(_J1pModel):
    """A top-level record: it knows its id and when it last changed."""

    id_field: ClassVar[str]

    last_modified_date: UtcDateTime

    @property
    def record_id(self) -> str:
        """The key the connector files this record under (ledger links, landing store)."""
        return str(getattr(self, self.id_field))

    @model_validator(mode="after")
    def _keyable_id(self) -> Self:
        problem = id_problem(self.record_id)
        if problem:
            raise ValueError(f"{type(self).model_fields[self.id_field].alias or self.id_field}: the id {problem}")
        return self

    @property
    def modified_at(self) -> datetime:
        return self.last_modified_date

    @classmethod
    def raw_id(cls, raw: Mapping[str, Any]) -> str | None:
        """The id of a raw record, read without validating it (None when it has none)."""
        value = raw.get(cls.model_fields[cls.id_field].alias or cls.id_field)
        return None if value in (None, "") else str(value)


class SupplierRef(_J1pModel):
    """The vendor a document belongs to."""

    supplier_id: int
    name: str | None = None


class PurchaseOrderLine(_J1pModel):
    line_number: int
    description: str | None = None
    quantity: Decimal
    unit_of_measure: str | None = None
    unit_price: Decimal
    line_total: Decimal | None = None
    account_code: str | None = None
    cost_center: str | None = None


class PurchaseOrder(JaggaerRecord):
    """A purchase order with its lines."""

    id_field: ClassVar[str] = "purchase_order_id"

    purchase_order_id: int
    po_number: str
    status: str
    supplier: SupplierRef
    order_date: date | None = None
    currency: Currency
    total_amount: Decimal
    receipt_status: str | None = None
    lines: list[PurchaseOrderLine] = Field(default_factory=list)


class InvoiceLine(_J1pModel):
    line_number: int
    po_line_number: int | None = None
    description: str | None = None
    quantity: Decimal
    unit_price: Decimal
    line_total: Decimal | None = None
    account_code: str | None = None
    tax_rate: Decimal | None = None


class Invoice(JaggaerRecord):
    """A supplier invoice, usually against a purchase order."""

    id_field: ClassVar[str] = "invoice_id"

    invoice_id: int
    invoice_number: str
    status: str
    supplier: SupplierRef
    purchase_order_number: str | None = None
    invoice_date: date
    due_date: date | None = None
    currency: Currency
    subtotal_amount: Decimal | None = None
    tax_amount: Decimal | None = None
    total_amount: Decimal
    payment_status: str | None = None
    lines: list[InvoiceLine] = Field(default_factory=list)


class Vendor(JaggaerRecord):
    """A JAGGAER supplier. ``tax_id`` is as typed in JAGGAER: normalise it before matching."""

    id_field: ClassVar[str] = "supplier_id"

    supplier_id: int
    name: str
    tax_id: str | None = None
    country: str | None = None
    currency: Currency | None = None
    status: str | None = None
    erp_number: str | None = None


class GlAccount(JaggaerRecord):
    """A JAGGAER GL account code (mapped to the ERP's chart of accounts by a table)."""

    id_field: ClassVar[str] = "code"

    code: str
    name: str
    type: str | None = None
    active: bool = True




RecordT = TypeVar("RecordT", bound=JaggaerRecord)


