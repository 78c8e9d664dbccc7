"""Which monday column each Visma field goes to: by title, by position, or by an explicit table.

monday has no finance objects, so every board is the customer's own: column titles in their words
("Invoice #", "Total"), ids either legacy (``text7``) or generated (``text_mkq1x2ab``). A field
therefore never goes to a column by id alone. :data:`FIELDS` lists each entity's Visma fields in
the order a board built for them would show them, with the titles a person might give them.

- ``title``: a field goes to the column titled like its name or one of its aliases (case, spaces
  and punctuation ignored; ``#`` reads as "number"), the first such column in board order.
- ``position``: the n-th field goes to the n-th column, the name column and the received column
  left out (that one belongs to the people working the board: the flow never writes it).
- ``table``: exactly the configured ``field -> column`` pairs; in the other modes they win.

Every pairing is checked for type: a number can go to a numbers or a text column, never to a
people column. ``VismaId`` must be mapped (it is the dedupe key). :func:`propose_mapping` is the
wizard's fuzzier guess: title similarity, aliases and type compatibility, scored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from ml_connector_dagster.config import MondayBoardMapping
from ml_connector_dagster.systems.monday.models import Board, Column

__all__ = [
    "FIELDS",
    "VISMA_ID",
    "ColumnMapping",
    "MappingError",
    "Proposal",
    "VismaField",
    "compatible",
    "find_column",
    "propose_mapping",
    "resolve_mapping",
]

VISMA_ID = "VismaId"
PROPOSAL_THRESHOLD = 0.6


class MappingError(ValueError):
    """A board and a mapping that do not fit together; the message names the field and the column."""


class VismaField(NamedTuple):
    """One Visma field as a board column: its name, the kind of value it holds, and its usual titles."""

    name: str
    kind: str  # text | numbers | date | status | dropdown
    aliases: tuple[str, ...] = ()


_ID = VismaField(VISMA_ID, "text", ("visma id", "visma", "visma reference", "erp id", "external id", "visma number"))
_CURRENCY = VismaField("Currency", "dropdown", ("currency", "cur", "valuta", "currency code"))
_AMOUNT = VismaField("Amount", "numbers", ("amount", "total", "sum", "total amount", "invoice total", "order total",
                                           "beløp", "belop"))
_DUE = VismaField("DueDate", "date", ("due date", "due", "payment due", "forfall", "forfallsdato"))
_DESCRIPTION = VismaField("Description", "text", ("description", "beskrivelse", "text", "name"))

FIELDS: dict[str, tuple[VismaField, ...]] = {
    "supplier_invoices": (
        VismaField("InvoiceNumber", "text", ("invoice number", "invoice no", "invoice nr", "invoice",
                                             "supplier invoice", "faktura", "fakturanummer")),
        VismaField("Supplier", "text", ("supplier", "vendor", "supplier name", "leverandør", "leverandor")),
        _AMOUNT, _CURRENCY, _DUE, _ID,
        VismaField("PONumber", "text", ("po", "po number", "purchase order", "order number", "order")),
    ),
    "purchase_orders": (
        VismaField("Supplier", "text", ("supplier", "vendor", "supplier name", "leverandør", "leverandor")),
        _AMOUNT, _CURRENCY,
        VismaField("OrderDate", "date", ("order date", "date", "ordered", "ordredato")),
        VismaField("PromisedDate", "date", ("promised date", "promised", "delivery date", "expected",
                                            "leveringsdato")),
        _ID,
    ),
    "customer_invoices": (
        VismaField("InvoiceNumber", "text", ("invoice number", "invoice no", "invoice nr", "invoice", "faktura",
                                             "fakturanummer")),
        VismaField("Customer", "text", ("customer", "client", "customer name", "kunde")),
        _AMOUNT, _CURRENCY, _DUE,
        VismaField("Status", "status", ("status", "state", "collection status")),
        VismaField("AgingBucket", "dropdown", ("aging", "ageing", "aging bucket", "age", "days past due",
                                               "past due", "overdue")),
        _ID,
    ),
    "gl_accounts": (
        VismaField("Account", "text", ("account", "account number", "gl account", "account no", "konto")),
        _DESCRIPTION,
        VismaField("Type", "dropdown", ("type", "account type", "category", "kontotype")),
        VismaField("Active", "status", ("active", "status", "state", "aktiv")),
        _ID,
    ),
    "dimensions": (
        VismaField("Dimension", "dropdown", ("dimension", "segment", "dimension type")),
        VismaField("Code", "text", ("code", "value", "segment value", "kode")),
        _DESCRIPTION, _ID,
    ),
}  # fmt: skip

# What a column of each type can take from a field of each kind (the value is converted on the way).
_TAKES: dict[str, frozenset[str]] = {
    "text": frozenset({"text", "numbers", "date", "status", "dropdown"}),
    "numbers": frozenset({"numbers"}),
    "date": frozenset({"date"}),
    "status": frozenset({"status", "dropdown"}),
    "dropdown": frozenset({"dropdown", "status"}),
}


def compatible(field: VismaField, column: Column) -> bool:
    """Whether ``column`` can hold ``field``'s values (a text column holds anything as text)."""
    return field.kind in _TAKES.get(column.type, frozenset())


class ColumnMapping(BaseModel):
    """A resolved mapping: Visma field -> the board's column id (and its type), for one board."""

    model_config = ConfigDict(frozen=True)

    entity: str
    board_id: str
    board_name: str
    group_id: str | None = None
    columns: dict[str, str] = Field(description="Visma field -> column id.")
    column_types: dict[str, str] = Field(description="Column id -> monday type, for encoding.")
    received_column: str | None = Field(None, description="The received column's id (never written).")

    @property
    def visma_id_column(self) -> str:
        return self.columns[VISMA_ID]


def _words(text: str) -> str:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).replace("#", " number ")
    return re.sub(r"[^0-9a-zæøåäö]+", "", spaced.casefold())


def _field(entity: str, name: str) -> VismaField:
    found = next((f for f in FIELDS[entity] if f.name == name), None)
    if found is None:
        known = ", ".join(f.name for f in FIELDS[entity])
        raise MappingError(f"{entity}: no Visma field {name!r} (known: {known})")
    return found


def find_column(board: Board, wanted: str) -> Column | None:
    """The active column whose id is ``wanted``, else whose title reads like it."""
    columns = [c for c in board.columns if not c.archived]
    return next((c for c in columns if c.id == wanted), None) or next(
        (c for c in columns if _words(c.title) == _words(wanted)), None
    )


def _writable(board: Board, received: Column | None) -> list[Column]:
    return [c for c in board.columns if not c.archived and c.type != "name" and (received is None or c.id != received.id)]


def _by_title(entity: str, columns: Sequence[Column], taken: set[str]) -> dict[str, Column]:
    chosen: dict[str, Column] = {}
    for field in FIELDS[entity]:
        names = {_words(field.name), *(_words(alias) for alias in field.aliases)}
        column = next((c for c in columns if c.id not in taken and _words(c.title) in names and compatible(field, c)), None)
        if column is not None:
            chosen[field.name] = column
            taken.add(column.id)
    return chosen


def _by_position(entity: str, columns: Sequence[Column]) -> dict[str, Column]:
    chosen: dict[str, Column] = {}
    for field, column in zip(FIELDS[entity], columns, strict=False):
        if not compatible(field, column):
            raise MappingError(f"{entity}: by position, field {field.name} ({field.kind}) would go to column "
                               f"{column.title!r} ({column.id}, {column.type}), which cannot hold it")
        chosen[field.name] = column
    return chosen


def resolve_mapping(entity: str, board: Board, settings: MondayBoardMapping) -> ColumnMapping:
    """The columns of ``board`` the entity's fields go to, as ``settings`` says (MappingError if they do not fit)."""
    received = None
    if settings.received_column:
        received = find_column(board, settings.received_column)
        if received is None or received.type != "status":
            raise MappingError(f"{entity}: received_column {settings.received_column!r} is not a status column of "
                               f"board {board.name!r}")
    columns = _writable(board, received)
    pinned: dict[str, Column] = {}
    for name, wanted in settings.table.items():
        field, column = _field(entity, name), find_column(board, wanted)
        if column is None or column not in columns:
            raise MappingError(f"{entity}: table maps {name} to {wanted!r}, which is no writable column of board "
                               f"{board.name!r}")
        if not compatible(field, column):
            raise MappingError(f"{entity}: table maps {name} ({field.kind}) to {column.title!r} ({column.type}), "
                               "which cannot hold it")
        pinned[name] = column
    if settings.mode == "table":
        chosen = pinned
    elif settings.mode == "position":
        chosen = {**_by_position(entity, columns), **pinned}
    else:
        taken = {c.id for c in pinned.values()}
        chosen = {**_by_title(entity, columns, taken), **pinned}
    if VISMA_ID not in chosen:
        raise MappingError(f"{entity}: no column of board {board.name!r} holds the Visma id (title it 'Visma ID' or "
                           "map VismaId in the table)")
    return ColumnMapping(
        entity=entity, board_id=board.id, board_name=board.name, group_id=settings.group_id,
        columns={name: column.id for name, column in chosen.items()},
        column_types={column.id: column.type for column in chosen.values()},
        received_column=received.id if received is not None else None,
    )  # fmt: skip


class Proposal(NamedTuple):
    """The wizard's guess for one field: a column (or None) and how sure it is (0..1)."""

    field: VismaField
    column: Column | None
    score: float


def _similarity(field: VismaField, column: Column) -> float:
    title = _words(column.title)
    names = [_words(field.name), *(_words(alias) for alias in field.aliases)]
    if title in names:
        return 1.0
    return max(SequenceMatcher(None, title, name).ratio() for name in names)


def propose_mapping(entity: str, board: Board, *, received_column: str | None = None) -> list[Proposal]:
    """For each field of ``entity``, the most similar compatible column not proposed for an earlier field.

    Exact title or alias matches come first; then the best similarity above a threshold. Fields
    with no such column are proposed unmapped (None).
    """
    received = find_column(board, received_column) if received_column else None
    columns = _writable(board, received)
    scored = sorted(
        ((_similarity(field, column), index, field, column)
         for index, field in enumerate(FIELDS[entity]) for column in columns if compatible(field, column)),
        key=lambda entry: (-entry[0], entry[1]),
    )  # fmt: skip
    chosen: dict[str, tuple[Column, float]] = {}
    used: set[str] = set()
    for score, _, field, column in scored:
        if score < PROPOSAL_THRESHOLD or field.name in chosen or column.id in used:
            continue
        chosen[field.name] = (column, score)
        used.add(column.id)
    return [Proposal(field, *chosen.get(field.name, (None, 0.0))) for field in FIELDS[entity]]
