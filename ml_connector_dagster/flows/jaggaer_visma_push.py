"""Carrying out a plan in Visma, exactly once: creates by POST, updates by PUT with If-Match.

Creates go through :func:`.destination.create_once`: a pending mark before the POST, the link
(JAGGAER id -> Visma number, from the answer's ``Location``) right after. Every record to create is
first looked up by its marker in the kind's index of Visma documents (:class:`.jaggaer_visma_index.MarkerIndex`,
brought up to date by one listing of what changed): a document already there (a create whose answer
was lost, a ledger restored from a backup, a copy keyed by hand) is linked, not created again. After
an unanswered POST the index is brought up to date again and asked once more (Visma's lists are
consistent at once, so "not found" is believed).

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
from typing import Any

from pydantic import BaseModel, Field

from ml_connector_dagster.core.http import ApiError, NotFound
from ml_connector_dagster.core.ledger import Ledger, Link
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster.systems.visma.conditional_update import StillChanging, update_with_etag

from .destination import CreateInDoubt, CreateIntent, create_once
from .jaggaer_visma_index import MarkerIndex
from .jaggaer_visma_plan import Action, DocumentKind, DocumentPlan, PlannedDocument

__all__ = ["DocumentLocked", "PushOutcome", "push_plan"]


class DocumentLocked(RuntimeError):
    """The Visma document is in a status that no longer allows changes."""


class PushOutcome(BaseModel):
    """What one push did, for the materialization's metadata."""

    created: int = 0
    recovered: int = Field(0, description="Documents to create found in Visma by their marker (a lost answer, a "
                           "restored ledger) and linked instead.")
    updated: int = 0
    skipped: int = 0
    filtered: int = 0
    failed: int = 0
    conflicts: int = Field(0, description="412s met and resolved by reading and applying again.")
    deferred: list[str] = Field(default_factory=list, description="Creates in doubt: looked for again on retry.")
    succeeded: list[str] = Field(default_factory=list)
    written: dict[str, str] = Field(default_factory=dict, description="JAGGAER id -> Visma number written.")


class _Pusher:
    def __init__(self, plan: DocumentPlan, kind: DocumentKind, client: VismaClient, ledger: Ledger, run_id: str,
                 log: logging.Logger | Any) -> None:
        self.plan, self.kind, self.client, self.ledger, self.run_id, self.log = plan, kind, client, ledger, run_id, log
        self.outcome = PushOutcome()
        self.index = MarkerIndex(client, ledger, kind)
        creates = [record.record_id for record in plan.records if record.action is Action.CREATE]
        # One look for every create: a listing of the documents changed since the index last looked.
        self.in_visma = self.index.find(creates) if creates else {}

    def find_again(self, record_id: str) -> str | None:
        """After a create whose answer never came: the document carrying its marker, if Visma has it now."""
        return self.index.find([record_id], fresh=True).get(record_id)

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
        if (found := self.in_visma.get(record.record_id)) is not None:
            self.ledger.record_links([Link(
                flow=intent.flow, source_id=intent.source_id, source_version=intent.source_version, dest_system=VISMA,
                dest_id=found, dest_key=record.number, content_hash=intent.content_hash, run_id=self.run_id,
            )])  # fmt: skip
            self.log.info(f"{self.plan.asset}: JAGGAER {self.kind.label} {record.record_id} is Visma {found} "
                          "already (found by its marker); linked, not created again")
            self.outcome.recovered += 1
            self.done(record, found)
            return
        try:
            result = create_once(
                self.ledger, intent, run_id=self.run_id, dest_key=record.number,
                create=lambda: self.client.create(self.kind.entity, document.create_body()),
                find=lambda since: self.find_again(record.record_id),
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
            self.index.drop([number])
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
