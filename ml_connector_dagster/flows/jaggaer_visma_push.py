"""Carrying out a plan in Visma, exactly once: creates by POST, updates by PUT with If-Match.

Creates go through :func:`.destination.create_once`: a pending mark before the POST, the link
(JAGGAER id -> Visma number, from the answer's ``Location``) right after. After an unanswered POST
the record is looked up by its marker among the Visma records of that kind modified since the mark
(:func:`find_by_marker`; Visma's lists are consistent at once, so "not found" is believed).

Updates read the record and its ETag, build the body against what Visma holds now (line
operations included), and PUT it with ``If-Match``; a 412 means someone changed the record
meanwhile, so it is read and the change applied again (``systems.visma.conditional_update``). A
document Visma no longer lets anyone change (released, closed) is not touched: it becomes a dead
letter, as does every document Visma refuses, with Visma's reason. A record that goes through
resolves its letter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ml_connector_dagster.core.http import ApiError, NotFound
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster.systems.visma.conditional_update import StillChanging, update_with_etag

from .destination import CreateInDoubt, CreateIntent, create_once
from .jaggaer_visma_plan import Action, DocumentKind, DocumentPlan, PlannedDocument
from .jaggaer_visma_render import find_marker

__all__ = ["DocumentLocked", "PushOutcome", "find_by_marker", "push_plan"]

CLOCK_SKEW = timedelta(minutes=5)  # between our clock (the ledger's marks) and Visma's timestamps


class DocumentLocked(RuntimeError):
    """The Visma document is in a status that no longer allows changes."""


class PushOutcome(BaseModel):
    """What one push did, for the materialization's metadata."""

    created: int = 0
    recovered: int = Field(0, description="Creates whose answer was lost, found in Visma and linked.")
    updated: int = 0
    skipped: int = 0
    filtered: int = 0
    failed: int = 0
    conflicts: int = Field(0, description="412s met and resolved by reading and applying again.")
    deferred: list[str] = Field(default_factory=list, description="Creates in doubt: looked for again on retry.")
    succeeded: list[str] = Field(default_factory=list)
    written: dict[str, str] = Field(default_factory=dict, description="JAGGAER id -> Visma number written.")


def find_by_marker(client: VismaClient, kind: DocumentKind, record_id: str, since: datetime) -> str | None:
    """The Visma record of ``kind`` carrying JAGGAER ``record_id``'s marker, among those modified since ``since``."""
    for page in client.iter_changed(kind.entity, since - CLOCK_SKEW):
        for raw in page:
            if find_marker(raw.get("description"), kind.label) == record_id:
                return str(raw.get(kind.visma_id_field))
    return None


class _Pusher:
    def __init__(self, plan: DocumentPlan, kind: DocumentKind, client: VismaClient, ledger: Ledger, run_id: str,
                 log: logging.Logger | Any) -> None:
        self.plan, self.kind, self.client, self.ledger, self.run_id, self.log = plan, kind, client, ledger, run_id, log
        self.outcome = PushOutcome()

    def dead_letter(self, record: PlannedDocument, reason: str) -> None:
        self.outcome.failed += 1
        self.ledger.add_dead_letter(self.plan.asset, record.record_id, record.payload or {}, reason,
                                    partition_key=record.partition_key, run_id=self.run_id)
        self.log.warning(f"{self.plan.asset}: JAGGAER {self.kind.label} {record.record_id} failed: {reason}")

    def done(self, record: PlannedDocument, visma_id: str | None) -> None:
        self.outcome.succeeded.append(record.record_id)
        if visma_id:
            self.outcome.written[record.record_id] = visma_id

    def create(self, record: PlannedDocument) -> None:
        document = record.document
        assert document is not None
        intent = CreateIntent(flow=self.plan.flow, source_id=record.record_id, source_version=record.source_version,
                              content_hash=document.content_hash, dest_system=VISMA)
        try:
            result = create_once(
                self.ledger, intent, run_id=self.run_id, dest_key=record.number,
                create=lambda: self.client.create(self.kind.entity, document.create_body()),
                find=lambda since: find_by_marker(self.client, self.kind, record.record_id, since),
            )
        except CreateInDoubt as exc:
            self.outcome.deferred.append(record.record_id)
            self.log.warning(str(exc))
            return
        except ApiError as exc:
            self.dead_letter(record, f"Visma refused the {self.kind.label}: {exc}")
            return
        if result.created:
            self.outcome.created += 1
        else:
            self.outcome.recovered += 1
        self.done(record, result.dest_id)

    def update(self, record: PlannedDocument) -> None:
        document, number = record.document, record.visma_id
        assert document is not None and number is not None

        def body_for(current: Mapping[str, Any]) -> dict[str, Any]:
            status = str(current.get("status") or "")
            if status not in self.kind.editable:
                raise DocumentLocked(f"Visma {self.kind.label} {number} is {status} and can no longer be changed; "
                                     "apply the JAGGAER change in Visma by hand (or with a credit note)")
            lines = current.get(document.lines_field) or []
            return document.update_body(int(line[self.kind.line_number_field]) for line in lines
                                        if isinstance(line, Mapping) and self.kind.line_number_field in line)

        def conflict() -> None:
            self.outcome.conflicts += 1
            self.log.info(f"{self.plan.asset}: Visma {number} changed meanwhile (412); reading it again")

        try:
            update_with_etag(self.client, self.kind.entity, number, body_for, on_conflict=conflict)
        except NotFound:
            self.dead_letter(record, f"linked Visma {self.kind.label} {number} no longer exists")
            return
        except (DocumentLocked, StillChanging) as exc:
            self.dead_letter(record, f"Visma {self.kind.label} not updated: {exc}")
            return
        except ApiError as exc:
            self.dead_letter(record, f"Visma refused the {self.kind.label} update: {exc}")
            return
        self.ledger.record_links([Link(
            flow=self.plan.flow, source_id=record.record_id, source_version=record.source_version, dest_system=VISMA,
            dest_id=number, dest_key=record.number, content_hash=document.content_hash, run_id=self.run_id,
        )])  # fmt: skip
        self.outcome.updated += 1
        self.done(record, number)


def push_plan(plan: DocumentPlan, kind: DocumentKind, *, client: VismaClient, ledger: Ledger, run_id: str,
              log: logging.Logger | Any) -> PushOutcome:
    """Carry out ``plan`` in Visma; failures become dead letters, successes resolve theirs.

    Creates in doubt are listed in ``outcome.deferred``: the caller fails the step so that its retry
    (or the next run) looks for them again.
    """
    pusher = _Pusher(plan, kind, client, ledger, run_id, log)
    try:
        for record in plan.records:
            if record.action is Action.CREATE:
                pusher.create(record)
            elif record.action is Action.UPDATE:
                pusher.update(record)
            elif record.action is Action.FAILED:
                pusher.dead_letter(record, record.reason or "failed")
            else:
                if record.action is Action.SKIP:
                    pusher.outcome.skipped += 1
                else:
                    pusher.outcome.filtered += 1
                pusher.done(record, record.visma_id)
    finally:
        ledger.resolve_dead_letters_for(plan.asset, pusher.outcome.succeeded)
    return pusher.outcome
