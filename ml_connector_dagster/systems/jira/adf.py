"""Atlassian Document Format (ADF): builders that only produce valid documents, and a validator.

Jira's v3 API takes ADF, not plain text, for ``description``, ``environment``, textarea custom
fields and comment bodies. The builders here are generic (no business record knows them): a flow
renders its record with them, and :func:`validate` checks the result against the published
JSON schema (``adf_schema.json``, @atlaskit/adf-schema, draft-04) before anything is sent.

ADF has sharp edges the builders take care of: an empty text node is invalid (empty strings are
dropped), lists and tables need at least one item (an empty one is dropped: builders return
``None`` and containers skip ``None``), a code mark may only be combined with a link, and control
characters other than tab and newline are removed (Jira's storage rejects some of them).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema.exceptions import ValidationError, best_match

__all__ = [
    "InvalidAdf",
    "Node",
    "bullet_list",
    "code",
    "code_block",
    "doc",
    "em",
    "from_plain_text",
    "hard_break",
    "heading",
    "is_document",
    "link",
    "ordered_list",
    "paragraph",
    "plain_text",
    "rule",
    "strong",
    "table",
    "table_text",
    "text",
    "validate",
]

Node = dict[str, Any]
Inline = Node | str | None
_SIMPLE_MARKS = frozenset({"strong", "em", "code", "strike", "underline"})
# Cc except tab and newline; carriage returns are folded into newlines before this applies.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_BLOCK_CONTAINERS = frozenset(
    {"doc", "bulletList", "orderedList", "listItem", "table", "tableCell", "tableHeader", "blockquote", "panel"}
)


class InvalidAdf(ValueError):
    """A document that does not match the ADF schema; ``path`` is the JSON path of the first error."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"invalid ADF at {path}: {reason}")
        self.path = path
        self.reason = reason


# -- inline ------------------------------------------------------------------------------------


def _clean(value: str) -> str:
    if value.isprintable():  # no control, surrogate or line-breaking character: the common case
        return value
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub("", value)
    # Lone surrogates cannot be encoded as UTF-8 JSON; keep the position visible. (ASCII has none:
    # the per-character scan is skipped for it, as it runs for every text node of a description.)
    if not value.isascii() and any(unicodedata.category(ch) == "Cs" for ch in value):
        value = "".join("\ufffd" if unicodedata.category(ch) == "Cs" else ch for ch in value)
    return value


def _mark(mark: str | Mapping[str, Any]) -> Node:
    if isinstance(mark, str):
        if mark not in _SIMPLE_MARKS:
            raise ValueError(f"unknown ADF mark {mark!r} (use one of {sorted(_SIMPLE_MARKS)} or a mark dict)")
        return {"type": mark}
    return dict(mark)


def text(value: str, marks: Sequence[str | Mapping[str, Any]] = ()) -> Node:
    """A text node; ``marks`` are names (strong, em, code, strike, underline) or mark dicts.

    An empty string gives an empty text node, which containers drop (ADF forbids it).
    """
    node: Node = {"type": "text", "text": _clean(str(value))}
    if marks:
        node["marks"] = [_mark(m) for m in marks]
        kinds = {m["type"] for m in node["marks"]}
        if "code" in kinds and kinds - {"code", "link"}:
            raise ValueError("ADF allows the code mark only together with a link")
    return node


def strong(value: str) -> Node:
    """Bold text."""
    return text(value, ["strong"])


def em(value: str) -> Node:
    """Italic text."""
    return text(value, ["em"])


def code(value: str) -> Node:
    """Inline code (monospace) text."""
    return text(value, ["code"])


def link(label: str, url: str) -> Node:
    """A hyperlink; the URL itself is shown when ``label`` is empty."""
    return text(label or url, [{"type": "link", "attrs": {"href": url}}])


def hard_break() -> Node:
    """A line break inside a paragraph."""
    return {"type": "hardBreak"}


def _inline(items: Iterable[Inline]) -> list[Node]:
    nodes: list[Node] = []
    for item in items:
        if isinstance(item, str):  # most of a description: plain text, made here without text()'s checks
            cleaned = _clean(item)
            if cleaned:
                nodes.append({"type": "text", "text": cleaned})
        elif item is not None and (item.get("type") != "text" or item.get("text")):
            nodes.append(item)
    return nodes


# -- blocks ------------------------------------------------------------------------------------


def paragraph(*inline: Inline) -> Node:
    """A paragraph of inline nodes (strings become plain text; empty ones are dropped)."""
    return {"type": "paragraph", "content": _inline(inline)}


def heading(level: int, *inline: Inline) -> Node:
    """A heading of ``level`` 1 (largest) to 6."""
    if not 1 <= level <= 6:
        raise ValueError(f"heading level must be 1..6, got {level}")
    return {"type": "heading", "attrs": {"level": level}, "content": _inline(inline)}


def rule() -> Node:
    """A horizontal rule."""
    return {"type": "rule"}


def code_block(value: str, language: str | None = None) -> Node:
    """A block of preformatted text (no marks allowed inside)."""
    node: Node = {"type": "codeBlock", "content": _inline([_clean(value)])}
    if language:
        node["attrs"] = {"language": language}
    return node


def _list_item(item: Inline | Sequence[Inline]) -> Node:
    if isinstance(item, dict) and item.get("type") in {"paragraph", "bulletList", "orderedList", "codeBlock"}:
        return {"type": "listItem", "content": [item]}
    inline = item if isinstance(item, list | tuple) else [item]
    return {"type": "listItem", "content": [paragraph(*inline)]}


def bullet_list(*items: Inline | Sequence[Inline]) -> Node | None:
    """A bulleted list; each item is a string, an inline node, a list of inline nodes, or a
    paragraph/list node. ``None`` when there are no items (ADF forbids an empty list)."""
    if not items:
        return None
    return {"type": "bulletList", "content": [_list_item(item) for item in items]}


def ordered_list(*items: Inline | Sequence[Inline]) -> Node | None:
    """A numbered list (same items as :func:`bullet_list`); ``None`` when empty."""
    if not items:
        return None
    return {"type": "orderedList", "content": [_list_item(item) for item in items]}


def table(header: Sequence[str], rows: Sequence[Sequence[Inline]]) -> Node | None:
    """A table with a header row and body rows, padded to a rectangle; ``None`` when empty.

    Cells are strings or inline nodes (e.g. :func:`link`, :func:`strong`).
    """
    width = _table_width(header, rows)
    if width == 0:
        return None

    def row_node(cells: Sequence[Inline], cell_type: str) -> Node:
        content = [{"type": cell_type, "content": [_cell_paragraph(cell)]} for cell in cells]
        content += [{"type": cell_type, "content": [{"type": "paragraph", "content": []}]}
                    for _ in range(width - len(cells))]  # fmt: skip
        return {"type": "tableRow", "content": content}

    content = [row_node(header, "tableHeader")] if header else []
    content += [row_node(row, "tableCell") for row in rows]
    return {"type": "table", "attrs": {"isNumberColumnEnabled": False, "layout": "default"}, "content": content}


def table_text(header: Sequence[str], rows: Sequence[Sequence[Inline]]) -> str:
    """``plain_text(table(header, rows))``, without building the table and walking it again."""
    width = _table_width(header, rows)
    lines = []
    for cells in [header, *rows] if header else rows:
        texts = [_clean(cell) if type(cell) is str else plain_text(_cell_paragraph(cell)) for cell in cells]
        line = " | ".join(texts + [""] * (width - len(cells)))
        if line:
            lines.append(line)
    return "\n".join(lines)


def _table_width(header: Sequence[str], rows: Sequence[Sequence[Inline]]) -> int:
    return max([len(header), *(len(row) for row in rows)], default=0)


def _cell_paragraph(cell: Inline) -> Node:
    if type(cell) is str:  # nearly every cell: made here without paragraph()'s general path
        cleaned = _clean(cell)
        return {"type": "paragraph", "content": [{"type": "text", "text": cleaned}] if cleaned else []}
    return paragraph(cell)


def doc(*blocks: Node | str | None) -> Node:
    """A document of block nodes; strings become paragraphs and ``None`` is skipped."""
    content = [paragraph(b) if isinstance(b, str) else b for b in blocks if b is not None]
    return {"type": "doc", "version": 1, "content": content}


def from_plain_text(value: str) -> Node:
    """A document from plain text: blank lines separate paragraphs, single newlines are line breaks."""
    cleaned = _clean(value).strip("\n")
    blocks: list[Node] = []
    for chunk in _BLANK_LINE.split(cleaned):
        inline: list[Inline] = []
        for i, line in enumerate(chunk.split("\n")):
            if i:
                inline.append(hard_break())
            inline.append(line)
        node = paragraph(*inline)
        if any(n["type"] == "text" for n in node["content"]):
            blocks.append(node)
    return doc(*blocks)


# -- reading and validation --------------------------------------------------------------------


def is_document(value: Any) -> bool:
    """True for something shaped like an ADF root (``type: doc``); :func:`validate` checks the rest."""
    return isinstance(value, dict) and value.get("type") == "doc"


def plain_text(node: Any) -> str:
    """The text of a document or node: blocks on their own lines, table cells joined with `` | ``."""
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    # A text child is read in place: most of a document's nodes are text, and a call each is costly.
    children = [child["text"] if type(child) is dict and child.get("type") == "text" and type(child.get("text")) is str
                else plain_text(child) for child in node.get("content") or []]  # fmt: skip
    if kind == "tableRow":
        return " | ".join(children)
    if kind in _BLOCK_CONTAINERS:
        return "\n".join(c for c in children if c)
    return "".join(children)


def _node_types(definition: Mapping[str, Any], definitions: Mapping[str, Any]) -> frozenset[str] | None:
    """The ``type`` values a definition admits (its discriminator), or None when unconstrained."""
    enum = definition.get("properties", {}).get("type", {}).get("enum")
    if enum is not None:
        return frozenset(enum)
    for part in definition.get("allOf", []):
        ref = part.get("$ref", "")
        found = _node_types(definitions[ref.rsplit("/", 1)[-1]], definitions) if ref else _node_types(part, definitions)
        if found is not None:
            return found
    return None


def _schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("adf_schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _verdict() -> Any:
    """The compiled validator: whether a document is valid, in tens of microseconds.

    The explaining validator below takes milliseconds per description (jsonschema descends into
    Python objects node by node); Jira checks every document it is sent, so the simulator does too,
    and only a refused one needs the explanation.
    """
    return jsonschema_rs.Draft4Validator(_schema())


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    """A draft-04 validator whose ``anyOf`` only tries the alternatives that admit the node's type.

    ADF nests ``anyOf`` lists of twenty-odd node kinds; plain draft-04 descends into every one of
    them at every level (~0.2 s for a small document). An alternative whose ``type`` enum excludes
    the instance's ``type`` can never match, so skipping it changes no verdict, only the cost.
    """
    schema = _schema()
    definitions = schema["definitions"]
    admits = {f"#/definitions/{name}": _node_types(d, definitions) for name, d in definitions.items()}

    def any_of(validator: Any, alternatives: list[Any], instance: Any, _schema: Any) -> Iterator[ValidationError]:
        kind = instance.get("type") if isinstance(instance, dict) else None
        if isinstance(kind, str):
            alternatives = [
                alt for alt in alternatives if (admits.get(alt.get("$ref", "")) or frozenset({kind})).__contains__(kind)
            ]
            if not alternatives:
                yield ValidationError(f"type {kind!r} is not allowed here")
                return
        errors: list[ValidationError] = []
        for index, alternative in enumerate(alternatives):
            found = list(validator.descend(instance, alternative, schema_path=index))
            if not found:
                return
            errors.extend(found)
        yield ValidationError("no alternative matches", context=errors)

    validator_class = jsonschema.validators.extend(jsonschema.Draft4Validator, {"anyOf": any_of})
    return validator_class(schema)


def validate(document: Any) -> None:
    """Raise :class:`InvalidAdf` unless ``document`` is a valid ADF document (schema v1).

    Both validators must find it valid: the compiled one decides quickly, jsonschema confirms a
    refusal and names its culprit (a document either finds invalid is refused).
    """
    if _verdict().is_valid(document):
        return
    error = best_match(_validator().iter_errors(document))
    if error is None:
        raise InvalidAdf("$", "the document does not match the ADF schema")
    # Follow the alternative that got furthest into the document: its error names the culprit.
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    reason = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    raise InvalidAdf(error.json_path, reason)
