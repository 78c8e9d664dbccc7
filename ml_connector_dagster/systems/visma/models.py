"""Pydantic models of the Visma.net records the connector reads, with the API's field names.

Python names are snake_case; the wire names (``lastModifiedDateTime``, ``currencyId`` ...) are
aliases, so ``Model.model_validate(raw)`` reads an API record as-is and ``populate_by_name`` lets
tests build one by Python name. Unknown fields are kept (``extra="allow"``): the API adds fields
over time and a destination may want one we do not model. What the connector relies on (the id,
``lastModifiedDateTime``, amounts as ``Decimal``, currency, supplier, dates, status) is required
and typed, so a record missing it is quarantined with a message naming the field.

Timestamps without an offset are read as UTC: the notes leave Visma's zone open, the connector
sends explicit UTC, and the sources read with an overlap window behind every cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, NamedTuple, Self, TypeVar

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
    "Account",
    "CustomerInvoice",
    "Dimension",
    "JournalTransaction",
    "PageValidation",
    "Party",
    "Payment",
    "PurchaseOrder",
    "Supplier",
    "SupplierInvoice",
    "SupplierPayment",
    "VismaRecord",
    "as_update_dto",
    "describe_error",
    "parse_utc",
    "validate_page",
    "validate_record",
]


def parse_utc(value: Any) -> datetime:
    """A Visma timestamp as an aware UTC datetime; a value without an offset is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError("expected an ISO 8601 timestamp")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else to_utc(moment)


def _to_date(value: Any) -> Any:
    # Visma writes dates as midnight timestamps ("2026-01-05T00:00:00"); the day is what counts.
    if isinstance(value, str) and "T" in value:
        return value.split("T", 1)[0]
    if isinstance(value, datetime):
        return value.date()
    return value


UtcDateTime = Annotated[datetime, BeforeValidator(parse_utc)]
Currency = Annotated[str, AfterValidator(iso_currency_code)]
Day = Annotated[date, BeforeValidator(_to_date)]
Money = Decimal


class _VismaModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class VismaRecord(_VismaModel):
    """A top-level record: it knows its id and when it last changed."""

    id_field: ClassVar[str]

    @property
    def record_id(self) -> str:
        """The key the connector files this record under (ledger links, landing store)."""
        return str(getattr(self, self.id_field))

    @model_validator(mode="after")
    def _keyable_id(self) -> Self:
        # The id field itself too: a composite key (a GL batch's "module:batch") hides a blank part.
        problem = id_problem(str(getattr(self, self.id_field))) or id_problem(self.record_id)
        if problem:
            raise ValueError(f"{type(self).model_fields[self.id_field].alias or self.id_field}: the id {problem}")
        return self

    @classmethod
    def raw_id(cls, raw: Mapping[str, Any]) -> str | None:
        """The id of a raw record, read without validating it (None when it has none)."""
        value = raw.get(cls.model_fields[cls.id_field].alias or cls.id_field)
        return None if value in (None, "") else str(value)

    @property
    def modified_at(self) -> datetime | None:
        """``lastModifiedDateTime`` in UTC, when the record carries one."""
        return getattr(self, "last_modified_date_time", None)


class Party(_VismaModel):
    """A supplier or customer as referenced from a document."""

    number: str
    name: str | None = None


class AccountRef(_VismaModel):
    number: str | None = None
    description: str | None = None


class SupplierInvoiceLine(_VismaModel):
    line_number: int
    transaction_description: str | None = None
    quantity: Decimal | None = None
    unit_cost: Money | None = None
    cost: Money | None = None
    account: AccountRef | None = None
    po_number: str | None = None


class SupplierInvoice(VismaRecord):
    """An AP document (``/v1/supplierInvoice``)."""

    id_field: ClassVar[str] = "reference_number"

    reference_number: str
    document_type: str | None = None
    status: str
    supplier: Party
    date: Day
    due_date: Day | None = None
    currency_id: Currency
    amount: Money
    vat_total: Money | None = None
    balance: Money | None = None
    description: str | None = None
    supplier_reference: str | None = None
    financial_period: str | None = None
    last_modified_date_time: UtcDateTime
    time_stamp: str | None = None
    invoice_lines: list[SupplierInvoiceLine] = Field(default_factory=list)


class PurchaseOrderLine(_VismaModel):
    line_nbr: int
    line_description: str | None = None
    order_qty: Decimal | None = None
    unit_cost: Money | None = None
    amount: Money | None = None
    account: AccountRef | None = None
    promised: UtcDateTime | None = None


class Owner(_VismaModel):
    id: str | None = None
    name: str | None = None


class PurchaseOrder(VismaRecord):
    """A purchase order (``/v1/purchaseorder``)."""

    id_field: ClassVar[str] = "order_nbr"

    order_nbr: str
    order_type: str | None = None
    status: str
    date: Day
    promised_on: Day | None = None
    supplier: Party
    currency: Currency
    order_total: Money
    description: str | None = None
    owner: Owner | None = None
    last_modified_date_time: UtcDateTime
    time_stamp: str | None = None
    lines: list[PurchaseOrderLine] = Field(default_factory=list)


class Supplier(VismaRecord):
    """A supplier (``/v1/supplier``): reference data, read whole."""

    id_field: ClassVar[str] = "number"

    number: str
    name: str
    status: str | None = None
    currency_id: Currency | None = None
    vat_registration_id: str | None = None
    corporate_id: str | None = None
    last_modified_date_time: UtcDateTime | None = None


class Account(VismaRecord):
    """A general ledger account (``/v1/account``)."""

    id_field: ClassVar[str] = "account_cd"

    account_cd: str = Field(alias="accountCD")
    description: str
    type: str | None = None
    active: bool | None = None
    account_class: str | None = None
    last_modified_date_time: UtcDateTime | None = None


class CustomerInvoiceLine(_VismaModel):
    line_number: int
    description: str | None = None
    quantity: Decimal | None = None
    unit_price: Money | None = None
    amount: Money | None = None
    account: AccountRef | None = None


class CustomerInvoice(VismaRecord):
    """An AR document (``/v1/customerinvoice``)."""

    id_field: ClassVar[str] = "reference_number"

    reference_number: str
    document_type: str | None = None
    status: str
    customer: Party
    document_date: Day
    document_due_date: Day | None = None
    currency_id: Currency
    amount: Money
    balance: Money | None = None
    last_modified_date_time: UtcDateTime
    invoice_lines: list[CustomerInvoiceLine] = Field(default_factory=list)


class PaymentLine(_VismaModel):
    document_type: str | None = None
    ref_nbr: str | None = None
    amount_paid: Money | None = None


class Payment(VismaRecord):
    """A customer (AR) payment (``/v1/payment``); supplier payments are :class:`SupplierPayment`."""

    id_field: ClassVar[str] = "ref_nbr"

    ref_nbr: str
    type: str | None = None
    status: str
    customer: Party
    application_date: Day
    currency: Currency
    payment_amount: Money
    payment_ref: str | None = None
    last_modified_date_time: UtcDateTime
    payment_lines: list[PaymentLine] = Field(default_factory=list)


class CurrencyRef(_VismaModel):
    """A currency as supplier payments nest it (``{"id": "NOK", "description": ...}``)."""

    id: Currency
    description: str | None = None


class SupplierPaymentLine(_VismaModel):
    """One document a supplier payment settles (``SupplierPaymentAdjustmentDto``)."""

    doc_type: str | None = None
    invoice_ref_nbr: str
    amount_paid: Money
    balance: Money | None = Field(None, description="What is still owed on the document after this payment.")
    date: Day | None = None
    due_date: Day | None = None
    currency: str | None = None


class SupplierPayment(VismaRecord):
    """A supplier (AP) payment (``/v1/supplierPayment``); ``paymentLines`` name the invoices it settles."""

    id_field: ClassVar[str] = "ref_nbr"

    ref_nbr: str
    type: str
    status: str
    supplier: Party
    application_date: Day
    currency: CurrencyRef
    payment_amount: Money
    payment_ref: str | None = None
    unapplied_balance: Money | None = None
    released: bool | None = None
    last_modified_date_time: UtcDateTime
    time_stamp: str | None = None
    payment_lines: list[SupplierPaymentLine] = Field(default_factory=list)

    @property
    def currency_id(self) -> str:
        """The payment's ISO 4217 code."""
        return self.currency.id


class JournalTransactionLine(_VismaModel):
    line_number: int
    account_number: str
    description: str | None = None
    reference_number: str | None = None
    debit_amount: Money = Decimal(0)
    credit_amount: Money = Decimal(0)


class JournalTransaction(VismaRecord):
    """A GL batch (``/v2/journaltransaction``); batch numbers are numbered per module."""

    id_field: ClassVar[str] = "batch_number"

    module: str
    batch_number: str
    status: str
    transaction_date: Day
    currency_id: Currency
    debit_total: Money | None = None
    credit_total: Money | None = None
    description: str | None = None
    last_modified_date_time: UtcDateTime
    journal_transaction_lines: list[JournalTransactionLine] = Field(default_factory=list)

    @property
    def record_id(self) -> str:
        return f"{self.module}:{self.batch_number}"

    @classmethod
    def raw_id(cls, raw: Mapping[str, Any]) -> str | None:
        batch = raw.get("batchNumber")
        return None if batch in (None, "") else f"{raw.get('module')}:{batch}"


class SegmentValue(_VismaModel):
    value_id: str
    description: str | None = None
    active: bool | None = None


class Segment(_VismaModel):
    segment_id: int
    description: str | None = None
    segment_values: list[SegmentValue] = Field(default_factory=list)


class Dimension(VismaRecord):
    """A dimension (cost centre, project ...) with its segments and values (``/v1/dimension``)."""

    id_field: ClassVar[str] = "id"

    id: str
    description: str | None = None
    segments: list[Segment] = Field(default_factory=list)




RecordT = TypeVar("RecordT", bound=VismaRecord)


class PageValidation(NamedTuple, Generic[RecordT]):
    """A page split into the records that validated and the ones that did not, with the reason."""

    valid: list[RecordT]
    invalid: list[tuple[Mapping[str, Any], str]]




def validate_page(model: type[RecordT], raw_records: Iterable[Any]) -> PageValidation[RecordT]:
    """Validate each raw record on its own: a bad record never stops its neighbours."""
    valid: list[RecordT] = []
    invalid: list[tuple[Mapping[str, Any], str]] = []
    for raw in raw_records:
        checked = validate_record(model, raw)
        if isinstance(checked, str):
            invalid.append((raw if isinstance(raw, Mapping) else {"value": raw}, checked))
        else:
            valid.append(checked)
    return PageValidation(valid, invalid)


def as_update_dto(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap plain values the way Visma's *UpdateDto bodies expect them: ``{"field": {"value": x}}``.

    Lists (invoice lines ...) and dicts already in that shape are passed through unchanged.
    """
    wrapped: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, list) or (isinstance(value, Mapping) and "value" in value):
            wrapped[name] = value
        else:
            wrapped[name] = {"value": value.isoformat() if isinstance(value, date) else value}
    return wrapped
