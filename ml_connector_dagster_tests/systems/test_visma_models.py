"""Visma record models: what they accept, what they refuse, and how they say why."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.core.currency import ISO_4217
from ml_connector_dagster.systems.visma.models import (
    JournalTransaction,
    SupplierInvoice,
    SupplierPayment,
    as_update_dto,
    parse_utc,
    validate_page,
)


def invoice(**changes: Any) -> dict[str, Any]:
    raw = {
        "referenceNumber": "000042", "documentType": "Invoice", "status": "Open",
        "supplier": {"number": "10001", "name": "Fjordkraft AS"}, "date": "2026-11-20T00:00:00",
        "currencyId": "NOK", "amount": 1250.5, "lastModifiedDateTime": "2026-11-20T16:58:29.123+01:00",
        "invoiceLines": [{"lineNumber": 1, "cost": 1000.4, "account": {"number": "6300"}}],
        "metadata": {"totalCount": 1, "maxPageSize": 1000},
    }  # fmt: skip
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_a_valid_invoice_reads_with_decimal_amounts_utc_time_and_plain_dates() -> None:
    parsed = SupplierInvoice.model_validate(invoice())
    assert parsed.record_id == "000042"
    assert parsed.amount == Decimal("1250.5") and parsed.invoice_lines[0].cost == Decimal("1000.4")
    assert parsed.modified_at == datetime(2026, 11, 20, 15, 58, 29, 123000, tzinfo=UTC)
    assert parsed.date == date(2026, 11, 20)


def test_unknown_fields_are_kept() -> None:
    assert SupplierInvoice.model_validate(invoice(approvalStatus="New")).model_extra["approvalStatus"] == "New"


def test_a_bad_record_is_reported_by_field_and_its_neighbours_still_validate() -> None:
    page = [invoice(referenceNumber="1"), invoice(referenceNumber="2", amount="1 250,50"),
            invoice(referenceNumber="3", currencyId="NOKK"), invoice(referenceNumber="4", amount=None)]
    checked = validate_page(SupplierInvoice, page)
    assert [r.record_id for r in checked.valid] == ["1"]
    reasons = [reason for _, reason in checked.invalid]
    assert reasons[0].startswith("amount:")
    assert reasons[1].startswith("currencyId:") and "NOKK" in reasons[1]
    assert reasons[2] == "amount: Field required"


def test_a_missing_modification_time_is_named() -> None:
    (_, reason), = validate_page(SupplierInvoice, [invoice(lastModifiedDateTime=None)]).invalid
    assert reason == "lastModifiedDateTime: Field required"


def test_a_non_object_in_a_page_is_refused_with_a_reason() -> None:
    assert validate_page(SupplierInvoice, ["oops"]).invalid == [({"value": "oops"}, "(record): expected an object, got str")]


def test_journal_transactions_are_keyed_by_module_and_batch() -> None:
    raw = {"module": "ModuleAP", "batchNumber": "000017", "status": "Posted", "transactionDate": "2026-11-20T00:00:00",
           "currencyId": "NOK", "lastModifiedDateTime": "2026-11-20T10:00:00+01:00"}
    assert JournalTransaction.model_validate(raw).record_id == "ModuleAP:000017" == JournalTransaction.raw_id(raw)


def test_update_bodies_wrap_values_and_keep_lines() -> None:
    lines = [{"operation": "Insert", "lineNumber": {"value": 1}}]
    assert as_update_dto({"description": "x", "date": date(2026, 1, 5), "invoiceLines": lines}) == {
        "description": {"value": "x"}, "date": {"value": "2026-01-05"}, "invoiceLines": lines}


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-7))])))
def test_timestamps_with_an_offset_keep_their_instant(moment: datetime) -> None:
    assert parse_utc(moment.isoformat()) == moment


@given(st.datetimes())
def test_timestamps_without_an_offset_are_read_as_utc(moment: datetime) -> None:
    assert parse_utc(moment.isoformat()) == moment.replace(tzinfo=UTC)


# -- supplier payments ---------------------------------------------------------------------------


def supplier_payment(**changes: Any) -> dict[str, Any]:
    raw = {
        "type": "Payment", "refNbr": "000017", "status": "Closed", "applicationDate": "2026-11-20T00:00:00",
        "supplier": {"internalId": 7001, "number": "10002", "name": "Bergen Stål AS"},
        "currency": {"id": "NOK", "description": "Norske kroner", "symbol": "kr", "isBaseCurrency": True},
        "paymentAmount": 1250.5, "paymentRef": "KID 42", "lastModifiedDateTime": "2026-11-20T16:58:29.12+01:00",
        "paymentLines": [{"docType": "Invoice", "invoiceRefNbr": "000042", "amountPaid": 1250.5, "balance": 0.0}],
    }  # fmt: skip
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_a_supplier_payment_reads_its_nested_currency_and_the_invoices_it_settles() -> None:
    parsed = SupplierPayment.model_validate(supplier_payment())
    assert (parsed.record_id, parsed.currency_id, parsed.application_date) == ("000017", "NOK", date(2026, 11, 20))
    (line,) = parsed.payment_lines
    assert (line.invoice_ref_nbr, line.amount_paid, line.balance) == ("000042", Decimal("1250.5"), Decimal("0.0"))
    assert parsed.modified_at == datetime(2026, 11, 20, 15, 58, 29, 120000, tzinfo=UTC)


def test_a_bad_supplier_payment_is_refused_naming_each_field() -> None:
    page = [supplier_payment(currency={"id": "NOKK"}),
            supplier_payment(paymentLines=[{"docType": "Invoice", "amountPaid": 1.0}]),
            supplier_payment(currency="NOK")]  # fmt: skip
    reasons = [reason for _, reason in validate_page(SupplierPayment, page).invalid]
    assert reasons[0].startswith("currency.id:") and "NOKK" in reasons[0]
    assert reasons[1] == "paymentLines.0.invoiceRefNbr: Field required"
    assert reasons[2].startswith("currency:")


amounts = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=2, allow_nan=False)
codes = st.sampled_from(sorted(ISO_4217))
offsets = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])


@given(
    amount=amounts, code=codes, day=st.dates(), moment=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=offsets),
    lines=st.lists(st.tuples(st.text(min_size=1, max_size=12), amounts, st.none() | amounts), max_size=4),
)  # fmt: skip
def test_any_supplier_payment_parses_to_its_amounts_currency_day_instant_and_lines(
    amount: Decimal, code: str, day: date, moment: datetime, lines: list[tuple[str, Decimal, Decimal | None]]
) -> None:
    raw = supplier_payment(
        paymentAmount=float(amount), currency={"id": code}, applicationDate=f"{day.isoformat()}T00:00:00",
        lastModifiedDateTime=moment.isoformat(),
        paymentLines=[{"invoiceRefNbr": ref, "amountPaid": float(paid), "balance": None if left is None else float(left)}
                      for ref, paid, left in lines],
    )  # fmt: skip
    parsed = SupplierPayment.model_validate(raw)
    assert parsed.payment_amount == Decimal(str(float(amount))) and parsed.currency_id == code
    assert parsed.application_date == day and parsed.modified_at == moment
    assert [(line.invoice_ref_nbr, line.amount_paid, line.balance) for line in parsed.payment_lines] == [
        (ref, Decimal(str(float(paid))), None if left is None else Decimal(str(float(left)))) for ref, paid, left in lines
    ]
    assert SupplierPayment.raw_id(raw) == parsed.record_id == "000017"
