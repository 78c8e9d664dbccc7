"""Planning one partition (or the reference data) of Visma records against a monday board.

The plan reads the landed records in chunks, renders each row, and asks the ledger what it already
links (one read per chunk). A linked row whose content hash is unchanged is skipped; a linked row
that changed is an update of its item. Only rows the ledger does not link (or holds a create
intent for) are looked up on the board by the Visma-id column, many values per request
(``items_page_by_column_values``), or, when the board holds fewer items than those lookups would
take requests (a backfill onto a new board), by one listing of the board (:class:`BoardIndex`);
either reads back ids and the Visma-id column only. An item found there is adopted (LINK) — a
duplicate is never created for an item a person entered by hand — and a row found nowhere is
created, unless an earlier create of it went unanswered less than ``consistency_window_s`` ago
(DEFER: look again later). The plan keeps ids only; the push renders the rows again from the
landing store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml_connector_dagster.config import VismaMondayFlow
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.monday.client import LOOKUP_CHUNK, MAX_PAGE_SIZE, MondayClient
from ml_connector_dagster.systems.monday.columns import ColumnValueError
from ml_connector_dagster.systems.monday.models import Item
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.models import describe_error

from .visma_monday_mapping import ColumnMapping
from .visma_monday_render import ItemKind, RenderedItem, Row, aging_summary, open_receivables, render_item

__all__ = [
    "CHUNK",
    "Action",
    "BoardIndex",
    "ItemPlan",
    "PlannedItem",
    "landed_chunks",
    "plan_items",
    "render_records",
]

CHUNK = 200  # landed records planned together: one ledger read, one or two board lookups


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    LINK = "link"  # on the board without a ledger link: adopt it and bring it up to date
    DEFER = "defer"  # an earlier create went unanswered moments ago: look again before creating
    FAILED = "failed"


class PlannedItem(BaseModel):
    """What the push will do with one row (skipped rows are only counted)."""

    model_config = ConfigDict(frozen=True)

    row_id: str
    record_id: str
    visma_id: str
    action: Action
    item_id: str | None = None
    partition_key: str | None = None
    reason: str | None = None


class ItemPlan(BaseModel):
    """The plan of one partition (or of replayed records) of one kind, against its board."""

    entity: str
    asset: str
    flow: str
    label: str | None = Field(description="The partition(s) planned, for the log.")
    mapping: ColumnMapping
    board_url: str | None = None
    as_of: date
    items: list[PlannedItem] = Field(default_factory=list)
    skipped: int = 0
    duplicates: dict[str, int] = Field(default_factory=dict, description="Visma id -> items carrying it (> 1).")
    aging: list[dict[str, Any]] = Field(default_factory=list, description="Open receivables per aging bucket.")

    def count(self, action: Action) -> int:
        return sum(1 for item in self.items if item.action is action)

    def of(self, *actions: Action) -> list[PlannedItem]:
        return [item for item in self.items if item.action in actions]


def render_records(kind: ItemKind, landed: Sequence[LandedRecord], mapping: ColumnMapping,
                   as_of: date) -> tuple[list[RenderedItem], list[tuple[LandedRecord, str]], list[Row]]:  # fmt: skip
    """The chunk's rendered items, the records that failed (with the reason), and the rows."""
    valid, failed = [], []
    for record in landed:
        try:
            valid.append(kind.model.model_validate(record.payload))
        except ValidationError as error:
            failed.append((record, describe_error(error)))
    by_id = {record.record_id: record for record in landed}
    rows = kind.rows(valid, as_of)
    rendered = []
    for row in rows:
        try:
            rendered.append(render_item(row, mapping))
        except ColumnValueError as error:
            failed.append((by_id[row.record_id], f"{row.row_id}: {error}"))
    return rendered, failed, rows


def landed_chunks(kind: ItemKind, ledger: Ledger, partition_keys: Sequence[str | None]) -> Iterator[list[LandedRecord]]:
    """The landed records of the partitions (``[None]``: the reference data), chunk by chunk."""
    store = LandingStore(ledger)
    for partition_key in partition_keys:
        yield from store.iter_partition(VISMA, kind.visma_entity.value, partition_key, chunk=CHUNK)


def _now() -> datetime:
    return datetime.now(UTC)


class BoardIndex:
    """The items of a board by Visma id, for the rows the ledger does not link.

    Looked up value by value (100 a request), or, once the board's own listing takes no more
    requests than the lookups of a chunk would, listed whole once and kept for the plan: a backfill
    onto a board of few items then costs one request instead of one per hundred rows.
    """

    def __init__(self, client: MondayClient, mapping: ColumnMapping, board_items: int | None) -> None:
        self.client, self.mapping, self.board_items = client, mapping, board_items
        self.listing: dict[str, list[Item]] | None = None

    def find(self, visma_ids: Sequence[str]) -> dict[str, list[Item]]:
        """The items showing each of ``visma_ids`` (absent ids: no key)."""
        board, column = self.mapping.board_id, self.mapping.visma_id_column
        lookups = math.ceil(len(visma_ids) / LOOKUP_CHUNK)
        if self.listing is None and self.board_items is not None and math.ceil(self.board_items / MAX_PAGE_SIZE) <= lookups:
            self.listing = self.client.items_by_column(board, column)
        if self.listing is not None:
            return {visma_id: self.listing[visma_id] for visma_id in visma_ids if visma_id in self.listing}
        return self.client.find_items_by_column_values(board, column, list(visma_ids), key_only=True)


def plan_items(
    kind: ItemKind, chunks: Iterable[Sequence[LandedRecord]], *, client: MondayClient, ledger: Ledger,
    mapping: ColumnMapping, settings: VismaMondayFlow, as_of: date, label: str | None,
    url: str | None = None, now: Callable[[], datetime] = _now, board_items: int | None = None,
) -> ItemPlan:
    """The plan for these landed records: skip, update, link, create, defer or fail each row.

    ``board_items``: how many items the board holds (when known, a listing may replace the lookups).
    """
    plan = ItemPlan(entity=kind.entity, asset=kind.asset, flow=kind.flow, label=label, mapping=mapping,
                    board_url=url, as_of=as_of)  # fmt: skip
    index = BoardIndex(client, mapping, board_items)
    window = timedelta(seconds=settings.consistency_window_s)
    receivables: list[tuple[str, str, float]] = []
    for chunk in chunks:
        rendered, failed, rows = render_records(kind, chunk, mapping, as_of)
        plan.items += [PlannedItem(row_id=record.record_id, record_id=record.record_id, visma_id=record.record_id,
                                   action=Action.FAILED, partition_key=record.partition_key, reason=reason)
                       for record, reason in failed]  # fmt: skip
        if kind.receivable:
            receivables += open_receivables(rows)
        partition_of = {record.record_id: record.partition_key for record in chunk}
        links = ledger.links_for(kind.flow, [item.row_id for item in rendered])
        unlinked = []
        for item in rendered:
            link = links.get(item.row_id)
            if link is not None and link.state == "linked":
                if link.content_hash == item.content_hash:
                    plan.skipped += 1
                else:
                    plan.items.append(_planned(item, Action.UPDATE, partition_of, item_id=link.dest_id))
            else:
                unlinked.append(item)
        plan.items += _looked_up(unlinked, links, index, plan, partition_of, window, now())
    if kind.receivable:
        plan.aging = aging_summary(receivables).to_dict(orient="records")
    return plan


def _planned(item: RenderedItem, action: Action, partition_of: dict[str, str | None], **extra: Any) -> PlannedItem:
    return PlannedItem(row_id=item.row_id, record_id=item.record_id, visma_id=item.visma_id, action=action,
                       partition_key=partition_of.get(item.record_id), **extra)


def _looked_up(items: Sequence[RenderedItem], links: dict[str, Link], index: BoardIndex, plan: ItemPlan,
               partition_of: dict[str, str | None], window: timedelta, now: datetime) -> list[PlannedItem]:  # fmt: skip
    """Rows without a link, decided by what the board shows under their Visma ids."""
    if not items:
        return []
    found = index.find(list(dict.fromkeys(i.visma_id for i in items)))
    planned = []
    for item in items:
        matches = sorted(found.get(item.visma_id, []), key=lambda found_item: int(found_item.id))
        pending = links.get(item.row_id)
        if matches:
            if len(matches) > 1:
                plan.duplicates[item.visma_id] = len(matches)
            planned.append(_planned(item, Action.LINK, partition_of, item_id=matches[0].id))
        elif pending is not None and now - pending.updated_at < window:
            planned.append(_planned(item, Action.DEFER, partition_of, reason="an earlier create may not be visible yet"))
        else:
            planned.append(_planned(item, Action.CREATE, partition_of))
    return planned
