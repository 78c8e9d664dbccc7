"""JAGGAER GL codes and cost allocation onto Visma's chart of accounts and subaccount, through the GL table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ml_connector_dagster.config import SHIPPED_JAGGAER_GL_TABLE
from ml_connector_dagster.flows.jaggaer_visma_mapping import (
    LINE_COLUMNS,
    VismaChart,
    allocate_lines,
    load_gl_table,
    load_vendor_table,
)
from ml_connector_dagster.sandbox.jaggaer import GL_ACCOUNT_MAP
from ml_connector_dagster.sandbox.visma import VismaSimulator

SEGMENTS = {"department": 1, "cost_centre": 2}


@pytest.fixture(scope="module")
def chart() -> VismaChart:
    visma = VismaSimulator(size=20)
    try:
        state = visma.collections()
    finally:
        visma.close()
    return VismaChart.of(state["accounts"], state["dimensions"], "SUBACCOUNT")


def lines(*rows: tuple[str, int, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(LINE_COLUMNS))


def test_the_shipped_table_maps_every_jaggaer_account_the_sandbox_maps() -> None:
    table = load_gl_table(SHIPPED_JAGGAER_GL_TABLE)
    assert dict(zip(table["jaggaer_account"], table["visma_account"], strict=True)) == GL_ACCOUNT_MAP


def test_each_line_gets_its_visma_account_and_dimensions_in_one_join(chart: VismaChart) -> None:
    table = load_gl_table(SHIPPED_JAGGAER_GL_TABLE)
    mapped = allocate_lines(lines(("520001", 1, "410100", "", "110"), ("520001", 2, "540100", "", ""),
                                  ("520002", 1, "530100", "500", "")), table, chart, SEGMENTS)
    assert mapped[["visma_account", "department", "cost_centre", "problem"]].values.tolist() == [
        ["4000", "300", "110", ""],  # the table's default department, the line's own cost centre
        ["6300", "100", "000", ""],  # both from the table
        ["6100", "500", "", ""],  # the document's department wins over the table's default
    ]


def test_an_unmapped_jaggaer_account_is_a_problem_naming_the_line(chart: VismaChart) -> None:
    mapped = allocate_lines(lines(("520001", 2, "599000", "", "")), load_gl_table(SHIPPED_JAGGAER_GL_TABLE), chart,
                            SEGMENTS)
    assert mapped.loc[0, "problem"] == "line 2: JAGGAER account 599000 has no Visma account in the GL mapping table"


def test_an_override_maps_what_the_table_does_not(chart: VismaChart) -> None:
    table = load_gl_table(SHIPPED_JAGGAER_GL_TABLE, {"599000": "6790", "410100": "4300"})
    mapped = allocate_lines(lines(("1", 1, "599000", "", ""), ("1", 2, "410100", "", "")), table, chart, SEGMENTS)
    assert mapped["visma_account"].tolist() == ["6790", "4300"] and not mapped["problem"].any()


def test_an_account_visma_does_not_have_is_a_problem(chart: VismaChart) -> None:
    table = load_gl_table(SHIPPED_JAGGAER_GL_TABLE, {"410100": "9999"})
    mapped = allocate_lines(lines(("1", 1, "410100", "", "")), table, chart, SEGMENTS)
    assert "Visma account 9999 (mapped from JAGGAER 410100) is not in Visma's chart of accounts" in mapped.loc[0, "problem"]


def test_a_cost_centre_visma_does_not_know_is_a_problem(chart: VismaChart) -> None:
    mapped = allocate_lines(lines(("1", 3, "410300", "", "999")), load_gl_table(SHIPPED_JAGGAER_GL_TABLE), chart,
                            SEGMENTS)
    assert mapped.loc[0, "problem"] == "line 3: cost centre 999 is not a value of Visma subaccount segment 2"


def test_without_landed_visma_reference_data_nothing_is_checked_against_it() -> None:
    mapped = allocate_lines(lines(("1", 1, "410100", "", "999")), load_gl_table(None, {"410100": "9999"}),
                            VismaChart(), SEGMENTS)
    assert mapped.loc[0, "problem"] == ""


def test_a_table_without_a_required_column_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "gl.csv"
    path.write_text("jaggaer_account,visma\n410100,4000\n")
    with pytest.raises(ValueError, match="missing column.*visma_account"):
        load_gl_table(path)


def test_an_account_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gl.csv"
    path.write_text("jaggaer_account,visma_account,department,cost_centre\n410100,4000,,\n410100,4300,,\n")
    with pytest.raises(ValueError, match="410100 listed more than once"):
        load_gl_table(path)


def test_the_vendor_table_and_inline_links_combine_inline_winning(tmp_path: Path) -> None:
    path = tmp_path / "vendors.csv"
    path.write_text("jaggaer_supplier_id,visma_supplier_number\n310024,10007\n310021,10003\n")
    assert load_vendor_table(path, {"310021": "10009"}) == {"310024": "10007", "310021": "10009"}
