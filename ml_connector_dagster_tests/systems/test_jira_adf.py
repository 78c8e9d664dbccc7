"""The ADF builders only produce documents Jira accepts, and the validator explains what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.systems.jira import adf

any_text = st.text(max_size=300) | st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=5000)
cell = st.text(max_size=40)


@given(any_text)
def test_any_plain_text_makes_a_valid_document(value: str) -> None:
    adf.validate(adf.from_plain_text(value))


@given(any_text, any_text)
def test_any_text_in_any_builder_makes_a_valid_document(first: str, second: str) -> None:
    document = adf.doc(
        adf.heading(2, first),
        adf.paragraph(first, adf.strong(second), adf.code(first), adf.link(second, "https://example.com/x")),
        adf.bullet_list(first, [second, adf.em(first)]),
        adf.code_block(second),
        adf.rule(),
        second,
    )
    adf.validate(document)


@settings(max_examples=50)
@given(st.lists(cell, max_size=6), st.lists(st.lists(cell, max_size=6), max_size=8))
def test_any_table_makes_a_valid_document(header: list[str], rows: list[list[str]]) -> None:
    adf.validate(adf.doc(adf.table(header, rows)))


inline_cell = cell | cell.map(adf.strong) | cell.map(lambda value: adf.link(value, "https://erp.example/x")) | st.none()


@given(st.lists(cell, max_size=6), st.lists(st.lists(inline_cell, max_size=6), max_size=8))
def test_a_tables_text_is_the_text_read_back_from_the_table(header: list[str], rows: list[list[adf.Inline]]) -> None:
    assert adf.table_text(header, rows) == adf.plain_text(adf.table(header, rows) or {})


@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=200))
def test_a_single_line_reads_back_unchanged(value: str) -> None:
    assert adf.plain_text(adf.from_plain_text(value)) == value


def test_empty_strings_are_dropped_rather_than_made_into_empty_text_nodes() -> None:
    assert adf.paragraph("", "Amount", "") == {"type": "paragraph", "content": [{"type": "text", "text": "Amount"}]}


def test_blank_lines_separate_paragraphs_and_newlines_break_lines() -> None:
    document = adf.from_plain_text("Invoice 1001\nNordic Steel Oy\n\nDue 2026-12-01")
    assert [block["type"] for block in document["content"]] == ["paragraph", "paragraph"]
    assert [node["type"] for node in document["content"][0]["content"]] == ["text", "hardBreak", "text"]


def test_control_characters_are_removed() -> None:
    assert adf.text("a\x00b\x1bc")["text"] == "abc"


def test_empty_lists_and_tables_are_left_out_of_the_document() -> None:
    assert adf.doc(adf.bullet_list(), adf.table([], []), "text")["content"] == [adf.paragraph("text")]


def test_a_ragged_table_is_padded_to_a_rectangle() -> None:
    table = adf.table(["Item", "Qty", "Price"], [["Bearings"]])
    assert [len(row["content"]) for row in table["content"]] == [3, 3]
    assert table["content"][0]["content"][0]["type"] == "tableHeader"


def test_a_link_without_a_label_shows_its_url() -> None:
    assert adf.link("", "https://erp.example/inv/1")["text"] == "https://erp.example/inv/1"


def test_code_cannot_be_combined_with_other_marks() -> None:
    with pytest.raises(ValueError, match="code mark"):
        adf.text("x", ["code", "strong"])


def test_heading_levels_are_one_to_six() -> None:
    with pytest.raises(ValueError):
        adf.heading(7, "Too deep")


def test_plain_text_is_not_a_document() -> None:
    with pytest.raises(adf.InvalidAdf) as caught:
        adf.validate("Amount 12 450,00 SEK")
    assert caught.value.path == "$"


def test_the_error_names_the_path_of_an_empty_text_node() -> None:
    document = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]}
    with pytest.raises(adf.InvalidAdf) as caught:
        adf.validate(document)
    assert caught.value.path == "$.content[0].content[0].text"


def test_the_error_names_a_node_that_is_not_allowed_where_it_stands() -> None:
    with pytest.raises(adf.InvalidAdf, match=r"\$\.content\[0\]: type 'doc' is not allowed here"):
        adf.validate(adf.doc(adf.doc()))


def test_a_missing_version_is_invalid() -> None:
    with pytest.raises(adf.InvalidAdf, match="'version' is a required property"):
        adf.validate({"type": "doc", "content": []})


def test_plain_text_reads_a_document_back() -> None:
    document = adf.doc(adf.heading(1, "Invoice"), adf.table(["Item", "Qty"], [["Bearings", "10"]]))
    assert adf.plain_text(document) == "Invoice\nItem | Qty\nBearings | 10"



_NODE_TYPES = ["doc", "paragraph", "text", "heading", "table", "tableRow", "tableCell", "tableHeader", "bulletList",
               "listItem", "rule", "hardBreak", "codeBlock", "mention", "panel", "nope"]
_ODD_VALUES = st.sampled_from([None, "", "x", 0, 7, -1, True, 1.5, [], {}, "#ff00AA", "https://x.test", {"type": "em"}])


def _valid_document(first: str, second: str, rows: list[list[str]]) -> dict:
    return adf.doc(
        adf.heading(2, first or "h"),
        adf.paragraph(first, adf.strong(second), adf.code(first), adf.link(second, "https://example.com/x")),
        adf.bullet_list(first, [second, adf.em(first)]),
        adf.table(["a", "b"], rows),
        adf.code_block(second),
        adf.rule(),
    )


def _nodes(node: object) -> list[dict]:
    if not isinstance(node, dict):
        return []
    content = node.get("content")
    return [node, *(n for child in (content if isinstance(content, list) else []) for n in _nodes(child))]


@st.composite
def _adf_like(draw: st.DrawFn) -> dict:
    """A valid document from the builders, then up to three random edits of its nodes (a type, a key, a value)."""
    document = _valid_document(draw(st.text(max_size=8)), draw(st.text(max_size=8)),
                               draw(st.lists(st.lists(st.text(max_size=4), max_size=3), max_size=3)))
    for _ in range(draw(st.integers(0, 3))):
        node = draw(st.sampled_from(_nodes(document)))
        edit = draw(st.sampled_from(["type", "drop", "set", "attrs", "marks"]))
        if edit == "type":
            node["type"] = draw(st.sampled_from(_NODE_TYPES))
        elif edit == "drop" and node:
            node.pop(draw(st.sampled_from(sorted(node))))
        elif edit == "set":
            node[draw(st.sampled_from(["text", "version", "content", "attrs", "extra"]))] = draw(_ODD_VALUES)
        elif edit == "attrs":
            attrs = node["attrs"] = node["attrs"] if isinstance(node.get("attrs"), dict) else {}
            attrs[draw(st.sampled_from(["level", "layout", "href", "language", "color"]))] = draw(_ODD_VALUES)
        else:
            node["marks"] = [{"type": draw(st.sampled_from(["strong", "em", "code", "link", "textColor", "bogus"])),
                              **({"attrs": {"href": draw(_ODD_VALUES)}} if draw(st.booleans()) else {})}]
    return document


@settings(max_examples=300)
@given(_adf_like())
def test_the_compiled_validator_and_the_explaining_one_agree(document: dict) -> None:
    # The simulator trusts the compiled verdict for valid documents: it must be jsonschema's.
    explained = adf.best_match(adf._validator().iter_errors(document)) is None
    assert adf._verdict().is_valid(document) == explained


@given(st.sampled_from(_NODE_TYPES), st.text(max_size=5))
def test_a_refused_document_is_refused_by_validate_whichever_validator_spots_it(kind: str, value: str) -> None:
    document = {"type": "doc", "version": 1, "content": [{"type": kind, "content": [{"type": "text", "text": value}]}]}
    if adf._verdict().is_valid(document):
        adf.validate(document)
    else:
        with pytest.raises(adf.InvalidAdf):
            adf.validate(document)
