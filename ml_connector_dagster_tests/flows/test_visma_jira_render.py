"""How a Visma document looks as a Jira issue: valid ADF for every record, readable summaries, filters."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.config import VismaJiraFilters, VismaJiraFlow
from ml_connector_dagster.core.canonical_json import canonical_json_stdlib
from ml_connector_dagster.core.currency import ISO_4217
from ml_connector_dagster.core.landing import id_problem
from ml_connector_dagster.flows.jira_destination.records import RenderedIssueBase
from ml_connector_dagster.flows.visma_jira_audit import audit_entries
from ml_connector_dagster.flows.visma_jira_plan import filter_reason
from ml_connector_dagster.flows.visma_jira_render import (
    DocumentView,
    FieldChange,
    change_comment,
    describe_changes,
    facts_of,
    format_money,
    invoice_view,
    purchase_order_view,
    render_issue,
    supplier_label,
)
from ml_connector_dagster.sandbox.demo_data import (
    JOURNAL_TRANSACTIONS,
    PURCHASE_ORDERS,
    SUPPLIER_INVOICES,
    SUPPLIER_PAYMENTS,
    VismaDemoData,
    visma_datetime,
)
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.visma.models import (
    JournalTransaction,
    PurchaseOrder,
    SupplierInvoice,
    SupplierPayment,
)

FLOW = VismaJiraFlow(status_map={"Open": "To Do", "Closed": "Done"})
ANCHOR = datetime(2026, 11, 21, 12, tzinfo=UTC)


def demo_record(kind: str, seed: int, seq: int) -> dict[str, Any] | None:
    """A record the demo data can produce, as landed (None for the ones made malformed on purpose)."""
    data = VismaDemoData(seed=seed, size=600, days=14, anchor=ANCHOR)
    if data.invalid_reason(kind, seq):
        return None
    return {**data.render(kind, seq), "lastModifiedDateTime": visma_datetime(data.modified_ms(kind, seq))}


def reference_content_hash(issue: RenderedIssueBase) -> str:
    """The content hash as every earlier release computed it (pydantic's JSON mode, stdlib JSON)."""
    dumped = issue.model_dump(mode="json", exclude=set(issue.unhashed))
    return hashlib.sha256(canonical_json_stdlib(dumped).encode("utf-8")).hexdigest()


def assert_renders_well(view: DocumentView) -> None:
    issue = render_issue(view, FLOW)
    assert issue.content_hash == reference_content_hash(issue)  # links stored by earlier releases still match
    adf.validate(issue.description)
    assert facts_of(issue.description) == issue.facts  # what an update compares reads back unchanged
    assert 0 < len(issue.summary) <= 255 and "\n" not in issue.summary and "\r" not in issue.summary
    assert all(label and not any(ch.isspace() for ch in label) for label in issue.labels)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), seq=st.integers(0, 599))
def test_every_demo_invoice_renders_to_a_valid_adf_description(seed: int, seq: int) -> None:
    record = demo_record(SUPPLIER_INVOICES, seed, seq)
    if record is not None:
        assert_renders_well(invoice_view(SupplierInvoice.model_validate(record)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), seq=st.integers(0, 299))
def test_every_demo_purchase_order_renders_to_a_valid_adf_description(seed: int, seq: int) -> None:
    record = demo_record(PURCHASE_ORDERS, seed, seq)
    assert record is not None
    assert_renders_well(purchase_order_view(PurchaseOrder.model_validate(record)))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), seq=st.integers(0, 299))
def test_every_demo_gl_posting_against_an_invoice_renders_a_valid_audit_comment(seed: int, seq: int) -> None:
    record = demo_record(JOURNAL_TRANSACTIONS, seed, seq)
    assert record is not None
    entries = audit_entries("journaltransaction", record)
    batch = JournalTransaction.model_validate(record)
    assert bool(entries) == (batch.module == "ModuleAP")
    for entry in entries:
        adf.validate(entry.body)
        assert entry.marker in adf.plain_text(entry.body)


def assert_payment_audits(record: dict[str, Any]) -> None:
    """One valid, read-only comment per invoice the payment settles, naming the payment and the money."""
    payment = SupplierPayment.model_validate(record)
    entries = audit_entries("supplierPayment", record)
    assert [e.invoice_id for e in entries] == list(dict.fromkeys(line.invoice_ref_nbr for line in payment.payment_lines))
    for entry in entries:
        adf.validate(entry.body)
        text = adf.plain_text(entry.body)
        settled = [line for line in payment.payment_lines if line.invoice_ref_nbr == entry.invoice_id]
        paid = format_money(sum((line.amount_paid for line in settled), Decimal(0)), payment.currency_id)
        assert entry.marker in text and "Read-only copy of a Visma record" in text
        assert payment.application_date.isoformat() in text and paid in text
        assert format_money(settled[-1].balance, payment.currency_id) in text
        assert entry.audit_id == f"audit:supplierPayment/{payment.ref_nbr}/{entry.invoice_id}"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), seq=st.integers(0, 199))
def test_every_demo_supplier_payment_renders_a_valid_audit_comment_per_invoice_it_settles(seed: int, seq: int) -> None:
    record = demo_record(SUPPLIER_PAYMENTS, seed, seq)
    assert record is not None
    assert_payment_audits(record)


def test_a_customer_payment_never_becomes_an_audit_comment() -> None:
    data = VismaDemoData(seed=3, size=60, days=14, anchor=ANCHOR)
    assert audit_entries("payment", data.render("payments", 0)) == []


# -- any document Visma could send ---------------------------------------------------------------------

texts = st.text(max_size=80)
optional_texts = st.none() | texts
ids = texts.filter(lambda text: id_problem(text) is None)  # a record id the ledger can key
money = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False, allow_infinity=False,
                    places=2)
currencies = st.sampled_from(sorted(ISO_4217))
timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
accounts = st.none() | st.fixed_dictionaries({"number": texts, "description": optional_texts})
invoice_lines = st.lists(st.fixed_dictionaries({
    "lineNumber": st.integers(0, 10_000), "transactionDescription": optional_texts,
    "quantity": st.none() | money, "unitCost": st.none() | money, "cost": st.none() | money,
    "account": accounts, "poNumber": optional_texts,
}), max_size=6)  # fmt: skip
invoices = st.fixed_dictionaries({
    "referenceNumber": ids, "documentType": optional_texts, "status": texts,
    "supplier": st.fixed_dictionaries({"number": texts, "name": optional_texts}),
    "date": st.dates(), "dueDate": st.none() | st.dates(), "currencyId": currencies, "amount": money,
    "vatTotal": st.none() | money, "balance": st.none() | money, "description": optional_texts,
    "supplierReference": optional_texts, "lastModifiedDateTime": timestamps, "invoiceLines": invoice_lines,
})  # fmt: skip
order_lines = st.lists(st.fixed_dictionaries({
    "lineNbr": st.integers(0, 10_000), "lineDescription": optional_texts, "orderQty": st.none() | money,
    "unitCost": st.none() | money, "amount": st.none() | money, "account": accounts,
}), max_size=6)  # fmt: skip
orders = st.fixed_dictionaries({
    "orderNbr": ids, "orderType": optional_texts, "status": texts, "date": st.dates(),
    "promisedOn": st.none() | st.dates(), "supplier": st.fixed_dictionaries({"number": texts, "name": optional_texts}),
    "currency": currencies, "orderTotal": money, "description": optional_texts, "lastModifiedDateTime": timestamps,
    "lines": order_lines,
})  # fmt: skip


payment_lines = st.lists(st.fixed_dictionaries({
    "docType": st.sampled_from(["Invoice", "CreditAdj", "DebitAdj"]), "invoiceRefNbr": texts.filter(bool),
    "amountPaid": money, "balance": st.none() | money,
}), max_size=5)  # fmt: skip
supplier_payments = st.fixed_dictionaries({
    "type": st.sampled_from(["Payment", "Prepayment", "Refund"]), "refNbr": ids, "status": texts,
    "supplier": st.fixed_dictionaries({"number": texts, "name": optional_texts}),
    "applicationDate": st.dates(), "currency": st.fixed_dictionaries({"id": currencies}), "paymentAmount": money,
    "paymentRef": optional_texts, "lastModifiedDateTime": timestamps, "paymentLines": payment_lines,
})  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payment=supplier_payments)
def test_any_supplier_payment_becomes_one_valid_audit_comment_per_invoice(payment: dict[str, Any]) -> None:
    assert_payment_audits({**payment, "applicationDate": payment["applicationDate"].isoformat(),
                           "lastModifiedDateTime": payment["lastModifiedDateTime"].isoformat()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoice=invoices)
def test_any_invoice_renders_to_valid_adf_whatever_its_text_and_amounts(invoice: dict[str, Any]) -> None:
    assert_renders_well(invoice_view(SupplierInvoice.model_validate(invoice)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders)
def test_any_purchase_order_renders_to_valid_adf_whatever_its_text_and_amounts(order: dict[str, Any]) -> None:
    assert_renders_well(purchase_order_view(PurchaseOrder.model_validate(order)))


# -- the parts of an issue -------------------------------------------------------------------------------


def invoice(**overrides: Any) -> DocumentView:
    record = {
        "referenceNumber": "100234", "status": "Open", "supplier": {"number": "10023", "name": "Nordic Steel AS"},
        "date": "2026-11-02T00:00:00", "dueDate": "2026-12-02T00:00:00", "currencyId": "NOK", "amount": 12500,
        "lastModifiedDateTime": "2026-11-21T10:31:28.402+01:00",
        "invoiceLines": [{"lineNumber": 1, "transactionDescription": "Stålprofiler", "quantity": 10, "cost": 10000,
                          "poNumber": "PO000042"}],
    }  # fmt: skip
    return invoice_view(SupplierInvoice.model_validate({**record, **overrides}))


def test_the_summary_names_the_invoice_the_supplier_and_the_amount() -> None:
    assert render_issue(invoice(), FLOW).summary == "Invoice 100234 – Nordic Steel AS – 12 500,00 NOK"


@pytest.mark.parametrize(("amount", "text"), [
    (Decimal("0"), "0,00 NOK"), (Decimal("1234567.891"), "1 234 567,89 NOK"), (Decimal("-999.5"), "-999,50 NOK"),
    (Decimal("1E+30"), "1 000 000 000 000 000 000 000 000 000 000,00 NOK"),
    (Decimal("10000000000000000000000000001"), "10 000 000 000 000 000 000 000 000 001,00 NOK"),  # every digit kept
    (Decimal("-0.004"), "0,00 NOK"), (Decimal("0.005"), "0,01 NOK"),
])  # fmt: skip
def test_amounts_read_the_nordic_way_with_their_currency(amount: Decimal, text: str) -> None:
    assert format_money(amount, "NOK") == text


def test_the_issue_carries_the_visma_id_po_reference_due_date_and_audit_timestamp() -> None:
    issue = render_issue(invoice(), FLOW)

    assert (issue.external_id, issue.po_reference, issue.duedate) == ("supplierInvoice/100234", "PO000042", "2026-12-02")
    assert issue.facts["Last modified in Visma"] == "2026-11-21T09:31:28.402Z"
    assert "supplierInvoice/100234" in adf.plain_text(issue.description)


def test_the_supplier_becomes_a_label_without_spaces_or_the_mapped_assignee() -> None:
    as_label = render_issue(invoice(), FLOW)
    as_assignee = render_issue(invoice(), FLOW.model_copy(update={"supplier_as": "assignee",
                                                                   "supplier_assignees": {"10023": "acct-1"}}))

    assert supplier_label(invoice()) == "Nordic_Steel_AS" and "Nordic_Steel_AS" in as_label.labels
    assert as_assignee.assignee == "acct-1" and "Nordic_Steel_AS" not in as_assignee.labels


def test_an_unchanged_document_keeps_its_content_hash_and_a_change_alters_it() -> None:
    assert render_issue(invoice(), FLOW).content_hash == render_issue(invoice(), FLOW).content_hash
    assert render_issue(invoice(), FLOW).content_hash != render_issue(invoice(amount=13000), FLOW).content_hash


def test_the_change_comment_lists_each_changed_fact_old_to_new() -> None:
    before, after = render_issue(invoice(), FLOW), render_issue(invoice(status="Closed", amount=13000), FLOW)

    changes = describe_changes(facts_of(before.description), after.facts)
    text = adf.plain_text(change_comment(after, changes))

    assert changes == [FieldChange(field="Status", old="Open", new="Closed"),
                       FieldChange(field="Amount", old="12 500,00 NOK", new="13 000,00 NOK")]
    assert "Status: Open → Closed" in text and "Amount: 12 500,00 NOK → 13 000,00 NOK" in text
    adf.validate(change_comment(after, changes))


def test_a_status_maps_to_its_jira_status() -> None:
    assert render_issue(invoice(status="Closed"), FLOW).jira_status == "Done"
    assert render_issue(invoice(status="Hold"), FLOW).jira_status is None


@pytest.mark.parametrize(("filters", "overrides", "reason"), [
    (VismaJiraFilters(suppliers_include=["99999"]), {}, "supplier_not_included"),
    (VismaJiraFilters(suppliers_include=["nordic steel as"]), {}, None),
    (VismaJiraFilters(suppliers_exclude=["10023"]), {}, "supplier_excluded"),
    (VismaJiraFilters(exclude_internal_orders=True, internal_suppliers=["10023"]), {}, "internal_order"),
    (VismaJiraFilters(), {"amount": 0}, "zero_amount"),
    (VismaJiraFilters(exclude_zero_amounts=False), {"amount": 0}, None),
    (VismaJiraFilters(min_amount=20000), {}, "below_min_amount"),
    (VismaJiraFilters(min_amount=12500), {}, None),
])  # fmt: skip
def test_filters_name_the_reason_a_document_gets_no_issue(filters: VismaJiraFilters, overrides: dict[str, Any],
                                                          reason: str | None) -> None:
    assert filter_reason(invoice(**overrides), filters, status_filtered=False) == reason


def test_po_statuses_filter_only_purchase_orders() -> None:
    filters = VismaJiraFilters(po_statuses=["Open"])

    assert filter_reason(invoice(status="Closed"), filters, status_filtered=True) == "po_status"
    assert filter_reason(invoice(status="Closed"), filters, status_filtered=False) is None
