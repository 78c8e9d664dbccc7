"""The return path: an item marked "Received" in monday writes a receipt note on its Visma document.

What is written, and why there: the document's ``note`` (``SupplierInvoiceUpdateDto.note``,
``PurchaseOrderUpdateDto.note`` in ``specs/visma-net-v1.swagger.json``; "user-defined text connected
to the document" in the DTOs). It is the only free-text field both update DTOs share that carries no
accounting meaning: amounts, dates, hold and status drive posting and approval, ``description`` is
printed on the document, ``supplierReference`` is the supplier's invoice number. Receiving goods is
not a financial event in AP until matching, so a line is *appended* to the note, keeping what people
wrote there: ``Received 2026-11-22 [monday.com item 1880100005] on 'Procurement — supplier invoices'``.

Exactly once: each received item is one receipt (ledger flow ``visma_monday.receipts``, source id
``<board>:<item>``), marked pending before Visma is touched and linked to the document after. The
PUT carries ``If-Match`` with the ETag just read; a 412 (someone changed the document meanwhile)
reads it again and re-applies, and a note that already shows the item's marker is not written
again — so duplicate events, retries and concurrent runs end in one note line.

Two signals, one request per receipt (:func:`build_receipt_sensor`): monday's webhooks in the inbox
(``change_status_column_value`` events of the received column, subscribed by
:func:`ensure_receipt_webhooks`: a hint) and a poll of each board's
items in the received label updated since a watermark (the guarantee). Receipts whose run died
(pending past a window) are requested again; failures become dead letters for the replay job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import dagster as dg
from pydantic import BaseModel, Field, ValidationError

from ml_connector_dagster.config import VismaMondayFlow
from ml_connector_dagster.core.http import ApiError, NotFound
from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.core.ledger import InboxEvent, Ledger, Link
from ml_connector_dagster.run_tags import webhook_run_tags
from ml_connector_dagster.sensors.poll import poll_due
from ml_connector_dagster.systems.monday.client import MondayClient
from ml_connector_dagster.systems.monday.models import Item, Webhook
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity
from ml_connector_dagster.systems.visma.conditional_update import StillChanging, update_with_etag
from ml_connector_dagster.systems.visma.models import as_update_dto

from .destination import appended_once
from .visma_monday_mapping import ColumnMapping, resolve_mapping

__all__ = [
    "RECEIPTS_ASSET",
    "RECEIPTS_FLOW",
    "ReceiptBoard",
    "ReceiptCursor",
    "ReceiptOutcome",
    "announced_receipts",
    "apply_receipts",
    "build_receipt_sensor",
    "ensure_receipt_webhooks",
    "receipt_boards",
    "receipt_marker",
    "receipts_run_config",
]

RECEIPTS_FLOW = "visma_monday.receipts"
RECEIPTS_ASSET = "visma_monday.receipts"  # where the return path's dead letters are filed
RECEIVED_ENTITIES = {"supplier_invoices": VismaEntity.SUPPLIER_INVOICE, "purchase_orders": VismaEntity.PURCHASE_ORDER}
INBOX_BATCH = 500
RECEIPT_EVENT = "change_status_column_value"
STRANDED_AFTER = timedelta(minutes=10)


class ReceiptBoard(NamedTuple):
    """A board whose items are received, the Visma documents they stand for, and its columns."""

    entity: str
    visma_entity: VismaEntity
    mapping: ColumnMapping


def receipt_boards(client: MondayClient, settings: VismaMondayFlow) -> dict[str, ReceiptBoard]:
    """Board id -> the board, for every configured board with a received column (none: return path off)."""
    if not settings.return_path:
        return {}
    boards = {}
    for entity, board in settings.boards.items():
        if entity in RECEIVED_ENTITIES and board.received_column:
            mapping = resolve_mapping(entity, client.board(board.board_id), board)
            boards[mapping.board_id] = ReceiptBoard(entity, RECEIVED_ENTITIES[entity], mapping)
    return boards


def ensure_receipt_webhooks(client: MondayClient, boards: Mapping[str, ReceiptBoard], url: str) -> list[Webhook]:
    """Subscribe each board's received column to ``url`` (``change_status_column_value``), unless it already is.

    Registering twice would deliver every receipt twice: the board's webhooks are listed first.
    monday POSTs a challenge to ``url`` during the call, so the receiver must be up.
    """
    subscribed = []
    for board in boards.values():
        column = board.mapping.received_column
        existing = next((hook for hook in client.webhooks(board.mapping.board_id)
                         if hook.event == RECEIPT_EVENT and (hook.config or {}).get("columnId") == column), None)  # fmt: skip
        subscribed.append(existing or client.create_webhook(board.mapping.board_id, url, RECEIPT_EVENT,
                                                            {"columnId": column}))  # fmt: skip
    return subscribed


def receipt_marker(item_id: str) -> str:
    """What a note shows once item ``item_id``'s receipt is written (the bracket ends the id)."""
    return f"[monday.com item {item_id}]"


def _received_on(item: Item, column: str) -> str:
    raw = item.column_values.get(column)
    try:
        changed = json.loads(raw.value).get("changed_at") if raw is not None and raw.value else None
    except (ValueError, AttributeError):
        changed = None
    moment = changed or item.updated_at or datetime.now(UTC).isoformat()
    return str(moment)[:10]


def _note_line(item: Item, board: ReceiptBoard) -> str:
    day = _received_on(item, board.mapping.received_column or "")
    return f"Received {day} {receipt_marker(item.id)} on '{board.mapping.board_name}'"


class ReceiptOutcome(BaseModel):
    """What one run of the return path did."""

    applied: int = Field(0, description="Receipt notes written to Visma.")
    already: int = Field(0, description="Receipts found done (ledger link, or the note already shows them).")
    not_received: int = Field(0, description="Items no longer in the received label (or gone).")
    conflicts: int = Field(0, description="412s met and resolved by reading the document again.")
    failed: int = 0
    documents: dict[str, str] = Field(default_factory=dict, description="Receipt -> Visma document written.")


class _Receiver:
    def __init__(self, *, monday: MondayClient, visma: VismaClient, ledger: Ledger, settings: VismaMondayFlow,
                 boards: Mapping[str, ReceiptBoard], run_id: str, log: logging.Logger | Any) -> None:  # fmt: skip
        self.monday, self.visma, self.ledger, self.settings = monday, visma, ledger, settings
        self.boards, self.run_id, self.log = boards, run_id, log
        self.outcome = ReceiptOutcome()
        self.succeeded: list[str] = []

    def dead_letter(self, ref: str, record: Mapping[str, Any], error: str) -> None:
        self.outcome.failed += 1
        self.ledger.forget_link(RECEIPTS_FLOW, ref)
        self.ledger.add_dead_letter(RECEIPTS_ASSET, ref, dict(record), error, run_id=self.run_id)
        self.log.warning(f"receipt {ref} failed: {error}")

    def receive(self, ref: str, item: Item | None) -> None:
        board = self.boards.get(item.board_id or "") if item is not None else None
        if item is None or board is None or item.value(board.mapping.received_column or "") != self.settings.received_label:
            self.outcome.not_received += 1  # undone since, deleted, or not on a receipt board
            self.ledger.forget_link(RECEIPTS_FLOW, ref)
            self.succeeded.append(ref)
            return
        visma_id = (item.text(board.mapping.visma_id_column) or "").strip()
        record = {"board_id": board.mapping.board_id, "item_id": item.id, "item_name": item.name, "visma_id": visma_id}
        if not visma_id:
            self.dead_letter(ref, record, "the item has no Visma id: which document was received is unknown")
            return
        line = _note_line(item, board)
        marker = receipt_marker(item.id)

        def note_body(current: Mapping[str, Any]) -> dict[str, Any] | None:
            note = appended_once(current.get("note"), line, marker)  # None: an earlier attempt wrote it
            return None if note is None else as_update_dto({"note": note})

        def conflicted() -> None:
            self.outcome.conflicts += 1

        try:
            written = update_with_etag(self.visma, board.visma_entity, visma_id, note_body, on_conflict=conflicted)
        except NotFound:
            self.dead_letter(ref, record, f"Visma has no {board.visma_entity.value} {visma_id}")
            return
        except (ApiError, StillChanging) as exc:
            self.dead_letter(ref, record, str(exc))
            return
        self.ledger.record_links([Link(
            flow=RECEIPTS_FLOW, source_id=ref, source_version=item.updated_at or "-", dest_system=VISMA,
            dest_id=visma_id, dest_key=board.visma_entity.value, content_hash=content_hash({"note": line}),
            run_id=self.run_id,
        )])  # fmt: skip
        self.outcome.documents[ref] = f"{board.visma_entity.value} {visma_id}"
        if written:
            self.outcome.applied += 1
        else:
            self.outcome.already += 1
        self.succeeded.append(ref)


def _item_of(ref: str) -> str:
    return ref.rsplit(":", 1)[-1]


def apply_receipts(refs: Sequence[str], *, monday: MondayClient, visma: VismaClient, ledger: Ledger,
                   settings: VismaMondayFlow, boards: Mapping[str, ReceiptBoard], run_id: str,
                   log: logging.Logger | Any) -> ReceiptOutcome:  # fmt: skip
    """Write the receipt of each ``<board>:<item>`` in ``refs`` to its Visma document, once.

    Each item is read again first: only one still in the received label counts. Per-receipt
    failures become dead letters; receipts that went through resolve theirs.
    """
    wanted = list(dict.fromkeys(refs))
    receiver = _Receiver(monday=monday, visma=visma, ledger=ledger, settings=settings, boards=boards, run_id=run_id,
                         log=log)  # fmt: skip
    links = ledger.links_for(RECEIPTS_FLOW, wanted)
    todo = [ref for ref in wanted if getattr(links.get(ref), "state", None) != "linked"]
    receiver.outcome.already += len(wanted) - len(todo)
    # An intent first: a run that dies half-way leaves it pending, and the sensor requests it again.
    ledger.mark_pending_many(RECEIPTS_FLOW, [(ref, "-", "-") for ref in todo], VISMA, run_id)
    items = {item.id: item for item in monday.items([_item_of(ref) for ref in todo])}
    try:
        for ref in todo:
            receiver.receive(ref, items.get(_item_of(ref)))
    finally:
        ledger.resolve_dead_letters_for(RECEIPTS_ASSET, receiver.succeeded + [r for r in wanted if r not in todo])
    return receiver.outcome


def receipts_run_config(op_name: str, refs: Iterable[str]) -> dict[str, Any]:
    """The run config handing receipts (``<board>:<item>``) to the receipts op."""
    return {"ops": {op_name: {"config": {"items": list(refs)}}}}


# -- the sensor ------------------------------------------------------------------------------------


class ReceiptCursor(BaseModel):
    """Where the sensor is: inbox id read up to, per-board watermark, receipts recently requested."""

    inbox: int = 0
    watermarks: dict[str, str] = Field(default_factory=dict, description="Board id -> latest item update seen.")
    requested: dict[str, str] = Field(default_factory=dict, description="Receipt -> when it was requested.")
    polled_at: float | None = Field(None, description="When the boards were last polled (epoch s).")

    @classmethod
    def load(cls, raw: str | None) -> ReceiptCursor:
        if not raw:
            return cls()
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return cls()  # unreadable: start again; receipts already written are left out by the ledger


def announced_receipts(events: Iterable[InboxEvent], boards: Mapping[str, ReceiptBoard], label: str) -> Iterator[str]:
    """Receipts announced by the inbox's monday events: the received column set to the label."""
    for event in events:
        body = event.payload.get("event")
        if not isinstance(body, dict):
            continue
        board = boards.get(str(body.get("boardId")))
        value = body.get("value") if isinstance(body.get("value"), dict) else {}
        text = (value.get("label") or {}).get("text") if isinstance(value.get("label"), dict) else None
        if board is not None and body.get("columnId") == board.mapping.received_column and text == label:
            yield f"{board.mapping.board_id}:{body.get('pulseId')}"


def _polled(client: MondayClient, board: ReceiptBoard, label: str, since: datetime,
            limit: int) -> Iterator[tuple[str, str]]:  # fmt: skip
    """(receipt, updated_at) of the board's items in the received label updated since ``since``, oldest first."""
    query = {
        "rules": [
            {"column_id": board.mapping.received_column, "compare_value": [label], "operator": "any_of"},
            {"column_id": "__last_updated__", "compare_value": ["EXACT", since.isoformat()],
             "operator": "greater_than_or_equals"},
        ],
        "operator": "and",
        "order_by": [{"column_id": "__last_updated__", "direction": "asc"}],
    }  # fmt: skip
    for n, item in enumerate(client.iter_items(board.mapping.board_id, page_size=min(500, limit), query_params=query)):
        if n >= limit:
            return
        yield f"{board.mapping.board_id}:{item.id}", item.updated_at or since.isoformat()


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stranded(ledger: Ledger, now: datetime) -> list[str]:
    """Receipts whose run marked them and died: requested again."""
    return [link.source_id for link in ledger.pending_links(RECEIPTS_FLOW, limit=200)
            if now - link.updated_at >= STRANDED_AFTER]  # fmt: skip


def build_receipt_sensor(settings: VismaMondayFlow, job: dg.JobDefinition, op_name: str, *, lookback: timedelta,
                         poll_interval_seconds: float, minimum_interval_seconds: int = 1) -> dg.SensorDefinition:  # fmt: skip
    """``visma_monday_receipts``: items marked received -> receipt runs. monday's webhooks are read from the
    inbox every tick (a hint waits a tick, not a poll interval); the boards are polled for items updated
    since their watermarks every ``poll_interval_seconds`` (monday requests: the guarantee)."""
    overlap = timedelta(seconds=settings.receipt_overlap_s)

    @dg.sensor(name="visma_monday_receipts", job=job, minimum_interval_seconds=minimum_interval_seconds,
               required_resource_keys={"monday", "ledger"}, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Requests receipt runs for monday items set to the received label (webhooks in the "
                           "inbox every tick, and a poll of the boards' items updated since the cursor every "
                           f"{poll_interval_seconds:g} s).")  # fmt: skip
    def receipts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = ReceiptCursor.load(context.cursor)
        now = datetime.now(UTC)
        poll = poll_due(cursor.polled_at, now, poll_interval_seconds)
        watermarks = dict(cursor.watermarks)
        announced: set[str] = set()
        found: dict[str, str] = {}
        with context.resources.ledger.open() as ledger:
            events = ledger.inbox_after(cursor.inbox, INBOX_BATCH, system="monday", unprocessed_only=False)
            if events or poll:  # the boards' received columns: monday requests, only when there is something to read
                with context.resources.monday.client() as client:
                    boards = receipt_boards(client, settings)
                    announced = set(announced_receipts(events, boards, settings.received_label))
                    found |= {ref: now.isoformat() for ref in announced}
                    for board_id, board in boards.items() if poll else ():
                        since = _parse(watermarks[board_id]) - overlap if board_id in watermarks else now - lookback
                        for ref, updated in _polled(client, board, settings.received_label, since,
                                                    settings.receipts_per_tick):  # fmt: skip
                            found[ref] = updated
                            watermarks[board_id] = max(watermarks.get(board_id, updated), updated, key=_parse)
            handled = ledger.links_for(RECEIPTS_FLOW, found)
            stranded = _stranded(ledger, now)
        fresh = sorted(ref for ref in found if ref not in handled and ref not in cursor.requested)
        recent = {ref for ref, at in cursor.requested.items() if now - _parse(at) < STRANDED_AFTER}
        fresh += [ref for ref in stranded if ref not in fresh and ref not in recent]
        kept = {ref: at for ref, at in cursor.requested.items() if now - _parse(at) < overlap + STRANDED_AFTER}
        next_cursor = ReceiptCursor(inbox=events[-1].id if events else cursor.inbox, watermarks=watermarks,
                                    requested={**kept, **{ref: now.isoformat() for ref in fresh}},
                                    polled_at=now.timestamp() if poll else cursor.polled_at)  # fmt: skip
        if not fresh:
            return dg.SensorResult(skip_reason="no new receipts", cursor=next_cursor.model_dump_json())
        digest = hashlib.sha256("|".join(fresh).encode()).hexdigest()[:20]
        # A run a webhook asked for takes the fast lane: it carries a few receipts (a poll's may carry many).
        lane = webhook_run_tags() if set(fresh) <= announced else {}
        request = dg.RunRequest(run_key=f"visma_monday_receipts:{now:%Y%m%d%H%M%S}:{digest}",
                                run_config=receipts_run_config(op_name, fresh),
                                tags={"ml_connector/trigger": "monday_receipt", **lane})  # fmt: skip
        return dg.SensorResult(run_requests=[request], cursor=next_cursor.model_dump_json())

    return receipts
