"""Carrying out a plan on a monday board, exactly once: creates, updates and adoptions.

monday has no idempotency key, so each batch of creates is preceded by *pending* marks in the
ledger (one commit per batch) and followed at once by the links. The client sends several writes
per request as aliases, sized to the complexity budget (waiting out an exhausted one), and answers
one outcome per row: an alias monday refused (``ColumnValueException`` ...) created nothing, so its
mark is dropped and the row becomes a dead letter while the others go on. A request whose answer
was lost (:class:`BatchInterrupted`) is never sent again blind: the rows in doubt are looked up by
their Visma id, linked where found, and otherwise left pending and *deferred* (the step fails
retryably and looks again); rows never sent lose their mark and are sent again.

Updates (``change_multiple_column_values``) are idempotent: a refused one is a dead letter, one
without an answer is sent again; the ledger's content hash moves only once the
board has the new values. Rows are rendered again from the landing store, chunk by chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ml_connector_dagster.config import VismaMondayFlow
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.monday.client import BatchInterrupted, MondayClient
from ml_connector_dagster.systems.monday.models import AliasOutcome, BatchResult, Item, ItemDraft, ItemUpdate
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA

from .visma_monday_plan import Action, ItemPlan, PlannedItem, render_records
from .visma_monday_render import ItemKind, RenderedItem

__all__ = ["DEST", "WRITE_CHUNK", "PushOutcome", "push_plan"]

DEST = "monday"
WRITE_CHUNK = 100  # updates rendered together (the client sizes their requests); creates go a request at a time
SENDS = 3  # times a chunk's writes are sent in one push when answers go missing (then: the step's retry)
ITEM_LINKS_SHOWN = 5


class PushOutcome(BaseModel):
    """What one push did, for the materialization's metadata."""

    created: int = 0
    updated: int = 0
    linked: int = 0
    failed: int = 0
    deferred: list[str] = Field(default_factory=list, description="Rows whose write is in doubt or not sent.")
    items: dict[str, str] = Field(default_factory=dict, description="Visma id -> item URL, of (a few) items written.")
    succeeded: set[str] = Field(default_factory=set, description="Records all of whose rows went through.")
    failed_records: set[str] = Field(default_factory=set)


class _Pusher:
    def __init__(self, plan: ItemPlan, kind: ItemKind, *, client: MondayClient, ledger: Ledger,
                 settings: VismaMondayFlow, run_id: str, log: logging.Logger | Any) -> None:  # fmt: skip
        self.plan, self.kind, self.client, self.ledger = plan, kind, client, ledger
        self.settings, self.run_id, self.log = settings, run_id, log
        self.board = plan.mapping.board_id
        self.outcome = PushOutcome()

    # -- bookkeeping -----------------------------------------------------------------------------
    def _url(self, item_id: str) -> str | None:
        return f"{self.plan.board_url}/pulses/{item_id}" if self.plan.board_url else None

    def _done(self, item: RenderedItem, item_id: str) -> Link:
        if len(self.outcome.items) < ITEM_LINKS_SHOWN and (url := self._url(item_id)):
            self.outcome.items[item.visma_id] = url
        self.outcome.succeeded.add(item.record_id)
        return Link(flow=self.plan.flow, source_id=item.row_id, source_version=item.version, dest_system=DEST,
                    dest_id=item_id, dest_key=item.visma_id, dest_url=self._url(item_id),
                    content_hash=item.content_hash, run_id=self.run_id)  # fmt: skip

    def dead_letter(self, planned: PlannedItem, error: str, payload: dict[str, Any] | None = None) -> None:
        """Record a row that failed (keyed by its landed record, which a replay pushes again)."""
        self.outcome.failed += 1
        self.outcome.failed_records.add(planned.record_id)
        self.ledger.add_dead_letter(self.plan.asset, planned.record_id, payload or {}, f"{planned.row_id}: {error}",
                                    partition_key=planned.partition_key, run_id=self.run_id)  # fmt: skip
        self.log.warning(f"{self.plan.asset}: {planned.row_id} failed: {error}")

    def _rendered(self, planned: Sequence[PlannedItem]) -> list[tuple[PlannedItem, RenderedItem]]:
        """The rows of ``planned`` rendered again from the landing store (gone or invalid ones fail)."""
        landed = LandingStore(self.ledger).get_many(VISMA, self.kind.visma_entity.value, {p.record_id for p in planned})
        rendered, failed, _ = render_records(self.kind, list(landed.values()), self.plan.mapping, self.plan.as_of)
        by_row = {item.row_id: item for item in rendered}
        reasons = {record.record_id: (reason, record.payload) for record, reason in failed}
        ready = []
        for item in planned:
            if item.row_id in by_row:
                ready.append((item, by_row[item.row_id]))
            elif item.record_id in reasons:
                self.dead_letter(item, *reasons[item.record_id])
            else:
                self.dead_letter(item, "the landed record is no longer in the landing store")
        return ready

    def _refused(self, planned: PlannedItem, item: RenderedItem, outcome: AliasOutcome) -> None:
        error = outcome.error
        reason = f"{error.code}: {error.message}" if error is not None and error.code else str(error and error.message)
        payload = LandingStore(self.ledger).get_many(VISMA, self.kind.visma_entity.value, [item.record_id])
        self.dead_letter(planned, reason, payload[item.record_id].payload if item.record_id in payload else None)

    # -- creates ---------------------------------------------------------------------------------
    def create(self, planned: Sequence[PlannedItem]) -> None:
        # Chunks sized to the next request (what the complexity budget pays for): a chunk cut anywhere
        # else leaves its remainder to a request of its own, one more call per chunk.
        start = 0
        while start < len(planned):
            size = self.client.next_write_batch(len(planned) - start)
            self._create_chunk(self._rendered(planned[start:start + size]))
            start += size

    def _create_chunk(self, chunk: list[tuple[PlannedItem, RenderedItem]], *, sends: int = SENDS) -> None:
        links = self.ledger.links_for(self.plan.flow, [item.row_id for _, item in chunk])
        fresh, doubtful = [], []
        for planned, item in chunk:
            link = links.get(item.row_id)
            if link is not None and link.state == "linked":  # a concurrent run, or an earlier attempt
                self.outcome.succeeded.add(item.record_id)
            else:
                (fresh if link is None else doubtful).append((planned, item))
        fresh += self._recheck(doubtful, links)
        intents = [(item.row_id, item.version, item.content_hash) for _, item in fresh]
        linked = self.ledger.mark_pending_many(self.plan.flow, intents, DEST, self.run_id)
        marked = [(p, item) for p, item in fresh if item.row_id not in linked]
        if not marked:
            return
        drafts = [ItemDraft(name=item.name, column_values=item.values, group_id=self.plan.mapping.group_id,
                            create_labels_if_missing=self.settings.create_labels_if_missing) for _, item in marked]
        try:
            result = self.client.create_items(self.board, drafts, key_only=True)  # the link needs the id only
        except BatchInterrupted as exc:
            self._created(marked, exc.result)
            self.log.warning(f"{self.plan.asset}: no answer to a create; looking up {len(exc.in_doubt)} item(s)")
            self._settle([marked[index] for index in exc.in_doubt])
            unsent = [marked[index] for index in exc.not_sent]
            for _, item in unsent:  # never reached monday: drop the mark, then send again (or on the retry)
                self.ledger.forget_link(self.plan.flow, item.row_id)
            if sends > 1:
                self._create_chunk(unsent, sends=sends - 1)
            else:
                self.outcome.deferred += [item.row_id for _, item in unsent]
            return
        self._created(marked, result)

    def _recheck(self, doubtful: list[tuple[PlannedItem, RenderedItem]], links: dict[str, Link]) -> list[tuple[PlannedItem, RenderedItem]]:  # fmt: skip
        """Rows with a create intent (an earlier attempt, a concurrent run): link those on the board, defer the
        recent ones, and return the rest to be created."""
        if not doubtful:
            return []
        found = self._find([item for _, item in doubtful])
        window = timedelta(seconds=self.settings.consistency_window_s)
        now = datetime.now(UTC)
        again, recorded = [], []
        for planned, item in doubtful:
            if (existing := found.get(item.visma_id)) is not None:
                recorded.append(self._done(item, existing.id))
                self.outcome.created += 1
            elif now - links[item.row_id].updated_at < window:
                self.outcome.deferred.append(item.row_id)
            else:
                again.append((planned, item))
        self.ledger.record_links(recorded)
        return again

    def _created(self, marked: list[tuple[PlannedItem, RenderedItem]], result: BatchResult) -> None:
        links = []
        for outcome in result.outcomes:
            planned, item = marked[outcome.index]
            if outcome.item is not None:
                links.append(self._done(item, outcome.item.id))
                self.outcome.created += 1
            else:
                self.ledger.forget_link(self.plan.flow, item.row_id)  # refused: no item exists
                self._refused(planned, item, outcome)
        self.ledger.record_links(links)

    def _settle(self, doubtful: list[tuple[PlannedItem, RenderedItem]]) -> None:
        """Link the creates in doubt that reached the board; the others stay pending and deferred."""
        found = self._find([item for _, item in doubtful])
        links = []
        for _, item in doubtful:
            existing = found.get(item.visma_id)
            if existing is None:
                self.outcome.deferred.append(item.row_id)
                continue
            links.append(self._done(item, existing.id))
            self.outcome.created += 1
        self.ledger.record_links(links)

    def _find(self, items: Sequence[RenderedItem]) -> dict[str, Item]:
        column = self.plan.mapping.visma_id_column
        found = self.client.find_items_by_column_values(self.board, column, [item.visma_id for item in items])
        return {visma_id: min(matches, key=lambda found_item: int(found_item.id)) for visma_id, matches in found.items()}

    # -- updates and adoptions -------------------------------------------------------------------
    def update(self, planned: Sequence[PlannedItem]) -> None:
        for start in range(0, len(planned), WRITE_CHUNK):
            self._update_chunk(self._rendered(planned[start:start + WRITE_CHUNK]))

    def _update_chunk(self, chunk: list[tuple[PlannedItem, RenderedItem]], *, sends: int = SENDS) -> None:
        if not chunk:
            return
        updates = [ItemUpdate(item_id=planned.item_id or "", column_values={**item.values, "name": item.name},
                              create_labels_if_missing=self.settings.create_labels_if_missing)
                   for planned, item in chunk]  # fmt: skip
        again: list[tuple[PlannedItem, RenderedItem]] = []
        try:
            result = self.client.update_items(self.board, updates)
        except BatchInterrupted as exc:  # updates are idempotent: those without an answer are sent again
            result = exc.result
            again = [chunk[index] for index in sorted((*exc.in_doubt, *exc.not_sent))]
        links = []
        for outcome in result.outcomes:
            planned, item = chunk[outcome.index]
            if outcome.item is None:
                self._refused(planned, item, outcome)
                continue
            links.append(self._done(item, outcome.item.id))
            if planned.action is Action.LINK:
                self.outcome.linked += 1
            else:
                self.outcome.updated += 1
        self.ledger.record_links(links)
        if again and sends > 1:
            self._update_chunk(again, sends=sends - 1)
        else:
            self.outcome.deferred += [item.row_id for _, item in again]


def push_plan(plan: ItemPlan, kind: ItemKind, *, client: MondayClient, ledger: Ledger, settings: VismaMondayFlow,
              run_id: str, log: logging.Logger | Any) -> PushOutcome:  # fmt: skip
    """Carry out ``plan``; refused rows become dead letters, records that went through resolve theirs.

    Returns with ``outcome.deferred`` naming rows whose write is in doubt; the caller retries.
    """
    pusher = _Pusher(plan, kind, client=client, ledger=ledger, settings=settings, run_id=run_id, log=log)
    invalid = plan.of(Action.FAILED)
    landed = LandingStore(ledger).get_many(VISMA, kind.visma_entity.value, [planned.record_id for planned in invalid])
    for planned in invalid:
        copy = landed.get(planned.record_id)
        pusher.dead_letter(planned, planned.reason or "invalid record", copy.payload if copy is not None else None)
    pusher.outcome.deferred += [planned.row_id for planned in plan.of(Action.DEFER)]
    try:
        pusher.create(plan.of(Action.CREATE))
        pusher.update(plan.of(Action.UPDATE, Action.LINK))
    finally:
        outcome = pusher.outcome
        ledger.resolve_dead_letters_for(plan.asset, outcome.succeeded - outcome.failed_records)
    return outcome
