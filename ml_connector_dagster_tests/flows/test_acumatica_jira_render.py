"""Which Acumatica documents need attention, and how their Jira issue reads: rules, external ids, ADF."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.config import AcumaticaExceptionRule, AcumaticaJiraFlow, ConfigError, parse_config
from ml_connector_dagster.flows.acumatica_jira_render import (
    DocumentRef,
    change_comment,
    describe_changes,
    document_of,
    exception_of,
    render_issue,
    view_of,
)
from ml_connector_dagster.flows.jira_destination import table_facts
from ml_connector_dagster.systems.acumatica.client import AcumaticaEntity
from ml_connector_dagster.systems.acumatica.models import Bill, Payment, PurchaseOrder
from ml_connector_dagster.systems.jira import adf

from .test_visma_jira_render import reference_content_hash

MODIFIED = "2026-11-20T21:14:03.127+01:00"
RULES = AcumaticaJiraFlow().rules


def bill(**changes: Any) -> Bill:
    """A plain (landed) bill of 1 250 NOK: one line of 1 000 plus 25 % tax."""
    fields = {
        "id": "6b1f1c1e-0d7c-5a56-9a53-2d6f0a0f3f01", "Type": "Bill", "ReferenceNbr": "001042", "Status": "Balanced",
        "Hold": False, "Vendor": "NORDFRAKT", "CurrencyID": "NOK", "Amount": 1250.0, "Balance": 1250.0,
        "TaxTotal": 250.0, "Details": [{"Amount": 1000.0}], "LastModifiedDateTime": MODIFIED, **changes,
    }  # fmt: skip
    return Bill.model_validate(fields)


def order(status: str) -> PurchaseOrder:
    return PurchaseOrder.model_validate({
        "id": "7c2f1c1e-0d7c-5a56-9a53-2d6f0a0f3f02", "Type": "Normal", "OrderNbr": "PO001007", "Status": status,
        "VendorID": "FJORDPAPIR", "CurrencyID": "SEK", "OrderTotal": 182_000.5, "LastModifiedDateTime": MODIFIED,
    })  # fmt: skip


def payment(status: str) -> Payment:
    return Payment.model_validate({
        "id": "8d3f1c1e-0d7c-5a56-9a53-2d6f0a0f3f03", "Type": "Payment", "ReferenceNbr": "005001", "Status": status,
        "CustomerID": "KVIKKHANDEL", "CurrencyID": "NOK", "PaymentAmount": 990.0, "LastModifiedDateTime": MODIFIED,
    })  # fmt: skip


# -- which documents need attention ----------------------------------------------------------------


def test_a_held_bill_is_in_the_on_hold_exception() -> None:
    rule = exception_of(view_of(bill(Status="On Hold", Hold=True)), RULES)

    assert rule is not None and rule.name == "bill_on_hold"


def test_a_bill_whose_control_total_misses_its_lines_is_unbalanced_before_it_is_on_hold() -> None:
    view = view_of(bill(Status="On Hold", Hold=True, Amount=1375.0, Balance=1375.0))
    rule = exception_of(view, RULES)

    assert view.unbalanced and rule is not None and rule.name == "bill_unbalanced"


def test_purchase_orders_pending_approval_or_rejected_and_held_payments_need_attention() -> None:
    named = [exception_of(view_of(document), RULES) for document in
             (order("Pending Approval"), order("Rejected"), payment("On Hold"))]  # fmt: skip

    assert [rule.name if rule else None for rule in named] == ["po_pending_approval", "po_rejected", "payment_on_hold"]


@pytest.mark.parametrize("document", [bill(), order("Open"), payment("Balanced"), bill(Status="Open")])
def test_documents_in_good_order_need_no_attention(document: Any) -> None:
    assert exception_of(view_of(document), RULES) is None


def test_a_rule_naming_no_state_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"flows\.acumatica_jira\.rules\.0.*rule odd: give statuses, unbalanced"):
        parse_config({"systems": {"acumatica": {"base_url": "http://127.0.0.1:1"}},
                      "flows": {"acumatica_jira": {"rules": [{"name": "odd", "entity": "bills"}]}}})


def test_rule_names_must_be_unique() -> None:
    twice = [{"name": "held", "entity": "bills", "statuses": ["On Hold"]}] * 2

    with pytest.raises(ConfigError, match="rule names must be unique"):
        parse_config({"systems": {"acumatica": {"base_url": "http://127.0.0.1:1"}},
                      "flows": {"acumatica_jira": {"rules": twice}}})


def test_a_rule_sends_its_issues_to_its_own_project_and_issue_type() -> None:
    procurement = AcumaticaExceptionRule(name="po_pending_approval", entity="purchase_orders",
                                         statuses=["Pending Approval"], project_key="PROC", issue_type="Bug")
    settings_ = AcumaticaJiraFlow(rules=[procurement])
    view = view_of(order("Pending Approval"))

    issue = render_issue(view, exception_of(view, settings_.rules), settings_)

    assert (issue.project_key, issue.issue_type) == ("PROC", "Bug")


# -- external ids ----------------------------------------------------------------------------------

_KEY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=20)


@given(entity=st.sampled_from([AcumaticaEntity.BILL, AcumaticaEntity.PURCHASE_ORDER, AcumaticaEntity.PAYMENT]),
       doc_type=_KEY, number=_KEY)
def test_an_external_id_names_its_document_back(entity: AcumaticaEntity, doc_type: str, number: str) -> None:
    ref = DocumentRef(entity=entity, keys=(doc_type, number))

    assert document_of(ref.external_id) == ref


@pytest.mark.parametrize("external_id", [None, "", "Bill/001042", "Vendor/NORDFRAKT/x", "supplierInvoice/1/2",
                                         "Bill//001042"])
def test_an_external_id_of_another_kind_names_no_document(external_id: str | None) -> None:
    assert document_of(external_id) is None


# -- the issue -------------------------------------------------------------------------------------


def test_the_summary_carries_the_reference_vendor_and_amount() -> None:
    view = view_of(bill(Status="On Hold", Hold=True, Amount=12_500.0, Details=[{"Amount": 10_000.0}],
                        TaxTotal=2_500.0))

    issue = render_issue(view, exception_of(view, RULES), AcumaticaJiraFlow())

    assert issue.summary == "Bill 001042 – NORDFRAKT – 12 500,00 NOK"
    assert issue.external_id == "Bill/Bill/001042" and issue.amount == 12_500.0 and issue.party == "NORDFRAKT"


@settings(max_examples=60, deadline=None)
@given(description=st.text(max_size=300), vendor=st.text(min_size=1, max_size=40),
       amount=st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=2))
def test_any_bill_renders_to_a_valid_adf_description_whose_facts_read_back(description: str, vendor: str,
                                                                          amount: Decimal) -> None:
    view = view_of(bill(Status="On Hold", Hold=True, Description=description, Vendor=vendor, Amount=float(amount)))

    issue = render_issue(view, exception_of(view, RULES), AcumaticaJiraFlow())

    adf.validate(issue.description)
    assert table_facts(issue.description) == issue.facts
    assert len(issue.summary) <= 255
    assert issue.content_hash == reference_content_hash(issue)


def test_leaving_the_exception_is_said_once_per_version_with_what_changed() -> None:
    held = view_of(bill(Status="On Hold", Hold=True))
    released = view_of(bill(Status="Open", LastModifiedDateTime="2026-11-20T22:00:00.000+01:00"))
    before = render_issue(held, exception_of(held, RULES), AcumaticaJiraFlow())
    after = render_issue(released, None, AcumaticaJiraFlow())

    body, marker = change_comment(after, describe_changes(before.facts, after.facts), closing=True)

    text = adf.plain_text(body)
    assert "No longer needs attention in Acumatica" in text and "Status: On Hold → Open" in text
    assert "Exception: bill on hold → —" in text and marker in text
    assert marker == "Acumatica Bill/Bill/001042, version 2026-11-20T21:00:00.000Z"
    assert "Last modified in Acumatica" not in text  # audit facts are shown, never reported as changes


def test_project_type_and_labels_do_not_make_an_update() -> None:
    view = view_of(bill(Status="On Hold", Hold=True))
    held = render_issue(view, exception_of(view, RULES), AcumaticaJiraFlow())
    moved = held.model_copy(update={"project_key": "PROC", "issue_type": "Bug", "labels": ("x",)})

    assert moved.content_hash == held.content_hash
    assert held.model_copy(update={"summary": "changed"}).content_hash != held.content_hash
