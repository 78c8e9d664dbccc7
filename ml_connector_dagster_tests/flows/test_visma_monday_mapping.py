"""Visma fields -> monday columns: by title, by position, by a table; and rows -> column values.

The boards are the demo account's, as the simulator answers them (legacy ids on the invoice board,
generated ids on the others), read once through the real client.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.config import MondayBoardMapping
from ml_connector_dagster.flows.visma_monday_mapping import (
    FIELDS,
    MappingError,
    compatible,
    propose_mapping,
    resolve_mapping,
)
from ml_connector_dagster.flows.visma_monday_render import (
    AGING_BUCKETS,
    Row,
    aging_buckets,
    aging_summary,
    render_item,
)
from ml_connector_dagster.sandbox.monday import AR_BOARD, GL_BOARD, INVOICE_BOARD, PO_BOARD, MondaySimulator
from ml_connector_dagster.systems.monday.models import Board, Column
from ml_connector_dagster_tests.monday_sandbox import monday_client


@pytest.fixture(scope="module")
def boards() -> Iterator[dict[int, Board]]:
    sim = MondaySimulator()
    try:
        with monday_client(sim) as client:
            yield {board_id: client.board(str(board_id)) for board_id in (INVOICE_BOARD, PO_BOARD, AR_BOARD, GL_BOARD)}
    finally:
        sim.close()


def titles(board: Board, entity: str, settings: MondayBoardMapping) -> dict[str, str]:
    mapping = resolve_mapping(entity, board, settings)
    by_id = {column.id: column.title for column in board.columns}
    return {field: by_id[column] for field, column in mapping.columns.items()}


# -- by title ---------------------------------------------------------------------------------------


def test_by_title_fields_find_the_columns_people_titled_for_them(boards: dict[int, Board]) -> None:
    mapped = titles(boards[INVOICE_BOARD], "supplier_invoices",
                    MondayBoardMapping(board_id=str(INVOICE_BOARD), received_column="Status"))
    assert mapped == {"InvoiceNumber": "Invoice #", "Supplier": "Supplier", "Amount": "Total", "Currency": "Currency",
                      "DueDate": "Due date", "VismaId": "Visma ID", "PONumber": "PO"}


def test_the_received_column_is_never_mapped(boards: dict[int, Board]) -> None:
    mapping = resolve_mapping("supplier_invoices", boards[INVOICE_BOARD],
                              MondayBoardMapping(board_id=str(INVOICE_BOARD), received_column="Status",
                                                 table={"VismaId": "text7"}))
    assert mapping.received_column == "status"
    assert "status" not in mapping.columns.values()


def test_titles_match_whatever_their_case_spacing_and_punctuation(boards: dict[int, Board]) -> None:
    board = boards[INVOICE_BOARD]
    shouted = board.model_copy(update={"columns": [c.model_copy(update={"title": f"  {c.title.upper()}  "})
                                                   for c in board.columns]})  # fmt: skip
    settings_ = MondayBoardMapping(board_id=board.id, received_column="status")
    assert resolve_mapping("supplier_invoices", shouted, settings_).columns == \
        resolve_mapping("supplier_invoices", board, settings_).columns


def test_a_board_without_a_visma_id_column_is_refused_by_name(boards: dict[int, Board]) -> None:
    board = boards[INVOICE_BOARD]
    renamed = board.model_copy(update={"columns": [c.model_copy(update={"title": "Notes"}) if c.id == "text7" else c
                                                   for c in board.columns]})  # fmt: skip
    with pytest.raises(MappingError, match="Visma id"):
        resolve_mapping("supplier_invoices", renamed, MondayBoardMapping(board_id=board.id))


# -- by position ------------------------------------------------------------------------------------


def test_by_position_the_nth_field_goes_to_the_nth_column_skipping_name_and_received(boards: dict[int, Board]) -> None:
    mapped = titles(boards[PO_BOARD], "purchase_orders",
                    MondayBoardMapping(board_id=str(PO_BOARD), mode="position", received_column="Status"))
    assert mapped == {"Supplier": "Supplier", "Amount": "Amount", "Currency": "Currency", "OrderDate": "Order date",
                      "PromisedDate": "Promised date", "VismaId": "Visma ID"}


def test_by_position_a_column_of_the_wrong_type_is_refused_naming_both(boards: dict[int, Board]) -> None:
    # Without the received column left out, Visma ID (text) would land on the Status column.
    with pytest.raises(MappingError, match=r"VismaId \(text\).*'Status'.*status"):
        resolve_mapping("purchase_orders", boards[PO_BOARD], MondayBoardMapping(board_id=str(PO_BOARD), mode="position"))


# -- by table ---------------------------------------------------------------------------------------


def test_by_table_only_the_listed_pairs_count_by_column_id_or_title(boards: dict[int, Board]) -> None:
    board = boards[AR_BOARD]
    visma_id = board.column_by_title("Visma ID")
    assert visma_id is not None
    mapped = titles(board, "customer_invoices", MondayBoardMapping(
        board_id=board.id, mode="table", table={"VismaId": visma_id.id, "Amount": "amount", "AgingBucket": "Aging"}))
    assert mapped == {"VismaId": "Visma ID", "Amount": "Amount", "AgingBucket": "Aging"}


def test_table_pairs_win_over_titles(boards: dict[int, Board]) -> None:
    mapped = titles(boards[INVOICE_BOARD], "supplier_invoices",
                    MondayBoardMapping(board_id=str(INVOICE_BOARD), table={"InvoiceNumber": "PO"}))
    assert mapped["InvoiceNumber"] == "PO" and "PONumber" not in mapped


def test_a_table_naming_an_unknown_field_lists_the_known_ones(boards: dict[int, Board]) -> None:
    with pytest.raises(MappingError, match="no Visma field 'Totl'.*Amount"):
        resolve_mapping("supplier_invoices", boards[INVOICE_BOARD],
                        MondayBoardMapping(board_id=str(INVOICE_BOARD), mode="table", table={"Totl": "Total"}))


def test_a_table_pairing_a_number_with_a_people_column_is_refused(boards: dict[int, Board]) -> None:
    with pytest.raises(MappingError, match="Amount.*'Owner'.*people"):
        resolve_mapping("supplier_invoices", boards[INVOICE_BOARD],
                        MondayBoardMapping(board_id=str(INVOICE_BOARD), table={"Amount": "Owner"}))


def test_a_received_column_must_be_a_status_column(boards: dict[int, Board]) -> None:
    with pytest.raises(MappingError, match="received_column 'Supplier'"):
        resolve_mapping("supplier_invoices", boards[INVOICE_BOARD],
                        MondayBoardMapping(board_id=str(INVOICE_BOARD), received_column="Supplier"))


# -- any board --------------------------------------------------------------------------------------

COLUMN_TYPES = ("text", "numbers", "date", "status", "dropdown", "people", "link")
ALIASES = sorted({alias for fields in FIELDS.values() for field in fields for alias in (field.name, *field.aliases)})


@st.composite
def any_board(draw: st.DrawFn) -> Board:
    count = draw(st.integers(1, 12))
    columns = [Column(id="name", title="Name", type="name")]
    for n in range(count):
        title = draw(st.sampled_from(ALIASES) | st.text(min_size=1, max_size=12))
        columns.append(Column(id=f"c{n}", title=title, type=draw(st.sampled_from(COLUMN_TYPES))))
    columns.append(Column(id="vid", title="Visma ID", type="text"))
    return Board(id="1", name="Any", columns=columns)


@settings(max_examples=80, deadline=None)
@given(board=any_board(), entity=st.sampled_from(sorted(FIELDS)))
def test_by_title_every_pair_fits_its_column_and_no_column_serves_two_fields(board: Board, entity: str) -> None:
    mapping = resolve_mapping(entity, board, MondayBoardMapping(board_id="1"))
    fields = {field.name: field for field in FIELDS[entity]}
    columns = {column.id: column for column in board.columns}
    assert len(set(mapping.columns.values())) == len(mapping.columns)
    assert all(compatible(fields[name], columns[column]) for name, column in mapping.columns.items())
    assert mapping.column_types == {column: columns[column].type for column in mapping.columns.values()}


@settings(max_examples=80, deadline=None)
@given(board=any_board(), entity=st.sampled_from(sorted(FIELDS)))
def test_proposals_never_pair_a_field_with_a_column_that_cannot_hold_it(board: Board, entity: str) -> None:
    proposals = propose_mapping(entity, board)
    chosen = [p.column.id for p in proposals if p.column is not None]
    assert [p.field.name for p in proposals] == [f.name for f in FIELDS[entity]]
    assert len(chosen) == len(set(chosen))
    assert all(compatible(p.field, p.column) for p in proposals if p.column is not None)


def test_the_wizard_proposes_by_similar_titles(boards: dict[int, Board]) -> None:
    board = boards[INVOICE_BOARD]
    sloppy = board.model_copy(update={"columns": [
        c.model_copy(update={"title": {"Invoice #": "Invoice No.", "Due date": "Due dte"}.get(c.title, c.title)})
        for c in board.columns]})  # fmt: skip
    proposed = {p.field.name: p.column.title if p.column else None
                for p in propose_mapping("supplier_invoices", sloppy, received_column="Status")}  # fmt: skip
    assert proposed["InvoiceNumber"] == "Invoice No."
    assert proposed["Amount"] == "Total"
    assert proposed["DueDate"] == "Due dte"


# -- rows as column values --------------------------------------------------------------------------

AS_OF = date(2026, 11, 22)


@pytest.mark.parametrize(("days_past_due", "bucket"), [
    (-10, "current"), (0, "current"), (1, "1-30"), (30, "1-30"), (31, "31-60"), (60, "31-60"), (61, "61-90"),
    (90, "61-90"), (91, "90+"), (400, "90+"),
])  # fmt: skip
def test_aging_buckets_by_days_past_due(days_past_due: int, bucket: str) -> None:
    assert aging_buckets([AS_OF - timedelta(days=days_past_due)], [Decimal("100")], AS_OF) == [bucket]


def test_a_settled_receivable_has_no_bucket_and_an_open_one_without_due_date_is_current() -> None:
    assert aging_buckets([AS_OF - timedelta(days=200), None], [Decimal(0), Decimal("5")], AS_OF) == [None, "current"]


@given(st.lists(st.tuples(st.integers(-400, 400), st.decimals(-1000, 100000, places=2)), max_size=30))
def test_every_open_receivable_gets_exactly_one_bucket(invoices: list[tuple[int, Decimal]]) -> None:
    buckets = aging_buckets([AS_OF - timedelta(days=d) for d, _ in invoices], [b for _, b in invoices], AS_OF)
    assert [b is not None for b in buckets] == [b > 0 for _, b in invoices]
    assert all(b in AGING_BUCKETS for b in buckets if b is not None)


def test_the_aging_summary_counts_and_sums_per_bucket_and_currency() -> None:
    summary = aging_summary([("1-30", "NOK", 100.0), ("1-30", "NOK", 50.5), ("90+", "SEK", 7.0)])
    by_bucket = summary.set_index("bucket")
    assert list(summary["bucket"]) == list(AGING_BUCKETS)
    assert by_bucket.loc["1-30", "invoices"] == 2 and by_bucket.loc["1-30", "NOK"] == 150.5
    assert by_bucket.loc["90+", "SEK"] == 7.0 and by_bucket.loc["current", "invoices"] == 0


def test_values_take_the_form_of_their_column(boards: dict[int, Board]) -> None:
    mapping = resolve_mapping("supplier_invoices", boards[INVOICE_BOARD],
                              MondayBoardMapping(board_id=str(INVOICE_BOARD), table={"Amount": "Supplier"},
                                                 received_column="Status"))  # fmt: skip
    row = Row("000042", "000042", "Invoice 9 — Fjord AS", {"InvoiceNumber": "9", "Amount": Decimal("1200.50"),
              "Currency": "NOK", "DueDate": date(2026, 12, 1), "VismaId": "000042"})  # fmt: skip
    item = render_item(row, mapping)
    assert item.values["text0"] == "1200.5"  # a number in a text column, as text
    assert item.values["dropdown"] == {"labels": ["NOK"]}
    assert item.values["date4"] == {"date": "2026-12-01"}
    assert item.values["text8"] is None  # no PO: the column is cleared
    changed = render_item(row._replace(fields={**row.fields, "Amount": Decimal("1200.51")}), mapping)
    assert changed.content_hash != item.content_hash
