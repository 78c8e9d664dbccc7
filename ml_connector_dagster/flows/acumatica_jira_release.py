"""The return path: a resolved Jira issue releases (or approves) its Acumatica document, exactly once.

For each resolved issue :func:`release_resolved` reads the issue (its resolution, resolution date
and external id), and identifies the resolution as ``<issue id>@<resolved epoch ms>``: the ledger
(flow ``acumatica_jira.resolutions``) remembers each one handled, so a duplicate webhook, the poll
seeing it again, or a re-run changes nothing. Then it re-reads the document by its external id
(``Bill/Bill/001042``), since Acumatica actions are not idempotent, and acts on what it finds:

- already released (approved) -> nothing is sent; "already released";
- on hold -> taken off hold (``PUT`` with ``If-Match: *``, idempotent); a rule Acumatica enforces
  (a bill out of balance) refuses it with Acumatica's message;
- ready (a balanced bill or payment, a PO pending approval) -> an *intent* is written to the
  ledger (flow ``acumatica_jira.actions``, pending, keyed by the document), then the action is
  sent once (``ReleaseBill`` / ``ReleasePayment`` answer 202 and are polled; a PO's ``Approve`` is
  done at once); the status location is kept in the ledger's state while it runs;
- anything else -> refused, naming the status.

A retry that meets a pending intent never sends the action again blindly: it polls the kept status
location, or, when the answer to the action itself was lost, re-reads the document (released:
"already released") and, while the document is unchanged, waits ``action_window_s`` for a release
that may still be running before it would release again. The outcome (released, already released,
refused with Acumatica's error, or acknowledged without action) is commented on the issue once
(the comment carries the resolution's marker) and then recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from ml_connector_dagster.config import AcumaticaJiraFlow
from ml_connector_dagster.core.http import ApiError, TransportFailure
from ml_connector_dagster.core.ledger import AlreadyLinked, Ledger, Link
from ml_connector_dagster.systems.acumatica.client import SYSTEM as ACUMATICA
from ml_connector_dagster.systems.acumatica.client import (
    ActionFailed,
    AcumaticaClient,
    AcumaticaEntity,
    RecordRejected,
)
from ml_connector_dagster.systems.acumatica.models import from_wire
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import JiraClient
from ml_connector_dagster.systems.jira.models import JiraIssue, parse_jira_datetime

from .acumatica_jira_issues import SOURCES, projects_of
from .acumatica_jira_render import DocumentRef, document_of, exception_of, view_of
from .jira_destination import DEST, comment_once

__all__ = [
    "ACTIONS",
    "ACTIONS_FLOW",
    "RELEASE_ASSET",
    "RESOLUTIONS_FLOW",
    "ActionInDoubt",
    "DocumentAction",
    "Outcome",
    "ReleaseReport",
    "release_resolved",
    "resolution_key",
]

RESOLUTIONS_FLOW = "acumatica_jira.resolutions"  # "<issue id>@<resolved ms>" -> the outcome comment
ACTIONS_FLOW = "acumatica_jira.actions"  # document id -> its release/approval (pending: in flight or in doubt)
RELEASE_ASSET = "acumatica_jira_release"  # where dead letters of the return path are filed
_LOCATION_STATE = "acumatica_jira.action_location/"


class ActionInDoubt(RuntimeError):
    """An action may have run and its document does not show it yet: look again later, do not resend."""


class Outcome(StrEnum):
    DONE = "done"  # released / approved now
    ALREADY = "already"  # Acumatica shows it released / approved already: nothing sent
    REFUSED = "refused"  # Acumatica (or its document's status) refused
    ACKNOWLEDGED = "acknowledged"  # a resolution that asks for no action


@dataclass(frozen=True)
class DocumentAction:
    """What resolving an issue does to one entity's document, and the statuses that tell its state."""

    verb: str
    past: str
    action: str
    ready: frozenset[str]
    done: frozenset[str]


_RELEASED = frozenset({"Open", "Closed", "Voided", "Reserved"})
ACTIONS = {
    AcumaticaEntity.BILL: DocumentAction("release", "released", "ReleaseBill", frozenset({"Balanced"}), _RELEASED),
    AcumaticaEntity.PAYMENT: DocumentAction("release", "released", "ReleasePayment", frozenset({"Balanced"}),
                                            _RELEASED),
    AcumaticaEntity.PURCHASE_ORDER: DocumentAction(
        "approve", "approved", "Approve", frozenset({"Pending Approval"}),
        frozenset({"Open", "Pending Printing", "Pending Email", "Completed", "Closed"}),
    ),
}  # fmt: skip
_MODELS = {source.entity: source.model for source in SOURCES}


def resolution_key(issue_id: str, resolved: datetime) -> str:
    """``<issue id>@<resolved epoch ms>``: one resolution of one issue (a reopen and resolve is another)."""
    return f"{issue_id}@{int(resolved.timestamp() * 1000)}"


@dataclass
class _Result:
    outcome: Outcome
    ref: DocumentRef
    detail: str
    status: str | None = None


@dataclass
class ReleaseReport:
    """What one run of the return path did, for the run's metadata."""

    counts: dict[str, int] = field(default_factory=dict)
    in_doubt: list[str] = field(default_factory=list)  # issues whose action may have run unseen: retry them
    comments: dict[str, str] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Releaser:
    def __init__(self, *, jira: JiraClient, acumatica: AcumaticaClient, ledger: Ledger, settings: AcumaticaJiraFlow,
                 run_id: str, log: logging.Logger | Any, now: Callable[[], datetime]) -> None:
        self.jira, self.acumatica, self.ledger, self.settings = jira, acumatica, ledger, settings
        self.run_id, self.log, self.now = run_id, log, now
        self.projects = {key.casefold() for key in projects_of(settings)}
        self.external_id_field = jira.field_id(settings.external_id_field)
        self.report = ReleaseReport()

    # -- one issue -------------------------------------------------------------------------------
    def handle(self, issue_ref: str) -> None:
        issue = self.jira.get_issue(issue_ref, ["status", "resolution", "resolutiondate", "project",
                                                self.external_id_field])
        project = ((issue.fields.get("project") or {}).get("key") or "").casefold()
        ref = document_of(issue.fields.get(self.external_id_field))
        resolved = _resolved_at(issue)
        if project not in self.projects or ref is None:
            self.report.count("not_ours")
            return
        if resolved is None or issue.resolution_name is None:
            self.report.count("not_resolved")  # reopened since the event, or an event of another change
            return
        key = resolution_key(issue.id, resolved)
        earlier = self.ledger.links_for(RESOLUTIONS_FLOW, [key]).get(key)
        if earlier is not None and earlier.state == "linked":
            self.report.count("duplicate")
            return
        if issue.resolution_name.casefold() not in {r.casefold() for r in self.settings.act_on_resolutions}:
            result = _Result(Outcome.ACKNOWLEDGED, ref, f"resolved as {issue.resolution_name}")
        else:
            result = self._act(ref, key)
        self._report(issue, key, result)

    def _report(self, issue: JiraIssue, key: str, result: _Result) -> None:
        marker = f"ml-connector resolution {key}"
        body = _outcome_comment(result, marker)
        comment = comment_once(self.jira, issue.key or issue.id, body, marker, look_first=True)
        self.ledger.record_links([Link(
            flow=RESOLUTIONS_FLOW, source_id=key, source_version=result.ref.external_id, dest_system=DEST,
            dest_id=comment.id, dest_key=issue.key, dest_url=self.jira.browse_url(issue.key) if issue.key else None,
            content_hash=result.outcome.value, run_id=self.run_id,
        )])  # fmt: skip
        self.report.count(result.outcome.value)
        self.report.comments[issue.key or issue.id] = adf.plain_text(body)
        self.log.info(f"{RELEASE_ASSET}: {issue.key} -> {result.ref.external_id}: {result.outcome.value} ({result.detail})")

    # -- the document ------------------------------------------------------------------------------
    def _read(self, ref: DocumentRef) -> dict[str, Any]:
        return from_wire(self.acumatica.get(ref.entity, list(ref.keys)))

    def _act(self, ref: DocumentRef, key: str) -> _Result:
        action = ACTIONS[ref.entity]
        document = self._read(ref)
        rule = exception_of(view_of(_MODELS[ref.entity].model_validate(document)), self.settings.rules)
        if rule is not None and not rule.act_on_resolve:
            return _Result(Outcome.ACKNOWLEDGED, ref, f"{rule.name.replace('_', ' ')} asks for no action",
                           document.get("Status"))
        doc_id = str(document["id"])
        intent = self.ledger.links_for(ACTIONS_FLOW, [doc_id]).get(doc_id)
        status = document.get("Status")
        if intent is not None and intent.state == "pending":
            settled = self._settle_in_flight(ref, action, intent, doc_id, status, key)
            if settled is not None:
                return settled
        if status in action.done:
            return self._already(ref, intent, key, status)
        if document.get("Hold") and status not in action.ready:
            try:
                document = from_wire(self.acumatica.update(ref.entity, {"id": doc_id, "Hold": False}))
            except RecordRejected as exc:
                return _Result(Outcome.REFUSED, ref, _refusal(exc.field_errors, exc.detail), status)
            status = document.get("Status")
        if status in action.done:
            return self._already(ref, intent, key, status)
        if status not in action.ready:
            return _Result(Outcome.REFUSED, ref, f"the document is {status}; Acumatica can {action.verb} it only "
                                                 f"when {' or '.join(sorted(action.ready))}", status)
        return self._invoke(ref, action, doc_id, key)

    def _already(self, ref: DocumentRef, intent: Link | None, key: str, status: str | None) -> _Result:
        action = ACTIONS[ref.entity]
        if intent is not None and intent.state == "linked" and intent.source_version == key:
            return _Result(Outcome.DONE, ref, f"{action.past} by ml-connector", status)  # a retry after the action
        if intent is not None and intent.state == "pending":
            self._confirm(intent.source_id, key, ref, "already")
        return _Result(Outcome.ALREADY, ref, f"Acumatica shows it {status}", status)

    def _settle_in_flight(self, ref: DocumentRef, action: DocumentAction, intent: Link, doc_id: str,
                          status: str | None, key: str) -> _Result | None:
        """An earlier attempt's action: follow it when its status location is known; else believe the
        document if it shows the action done, or wait out the window; None: it never ran, act anew."""
        location = self.ledger.get_state(_LOCATION_STATE + doc_id)
        if location:
            try:
                self.acumatica.wait_for_action(location, timeout_s=self.settings.action_timeout_s,
                                               interval_s=self.settings.action_poll_s)
            except ActionFailed as exc:
                return self._failed(ref, action, doc_id, intent.source_version, exc)
            return self._confirm(doc_id, intent.source_version, ref, "done")
        if status in action.done:
            return self._already(ref, intent, key, status)
        if self.now() - intent.updated_at < timedelta(seconds=self.settings.action_window_s):
            raise ActionInDoubt(f"{ref.external_id}: an earlier {action.action} got no answer and the document "
                                "does not show it yet; looking again later instead of sending it twice")
        self.log.warning(f"{RELEASE_ASSET}: {ref.external_id}: the unanswered {action.action} never took effect")
        self.ledger.forget_link(ACTIONS_FLOW, doc_id)
        return None

    def _invoke(self, ref: DocumentRef, action: DocumentAction, doc_id: str, key: str) -> _Result:
        try:
            self.ledger.mark_pending(ACTIONS_FLOW, doc_id, key, ACUMATICA, action.action, self.run_id)
        except AlreadyLinked:
            return _Result(Outcome.ALREADY, ref, f"ml-connector {action.past} it before")
        location = self.acumatica.invoke_action(ref.entity, action.action, {"id": doc_id})
        self.ledger.set_state(_LOCATION_STATE + doc_id, location)
        try:
            self.acumatica.wait_for_action(location, timeout_s=self.settings.action_timeout_s,
                                           interval_s=self.settings.action_poll_s)
        except ActionFailed as exc:
            return self._failed(ref, action, doc_id, key, exc)
        return self._confirm(doc_id, key, ref, "done")

    def _failed(self, ref: DocumentRef, action: DocumentAction, doc_id: str, key: str, exc: ActionFailed) -> _Result:
        """Acumatica says the action failed: believed once the document confirms it did not run.

        A document still ready for the action holds no reason for the failure: the process itself
        failed (an interrupted operation), and resolving the issue again would not change that. The
        error goes up as a dead letter, which the replay acts on again; only a document that moved on
        makes a refusal to comment.
        """
        status = self._read(ref).get("Status")
        if status in action.done:
            return self._confirm(doc_id, key, ref, "done")
        self.ledger.forget_link(ACTIONS_FLOW, doc_id)
        self.ledger.delete_state(_LOCATION_STATE + doc_id)
        if status in action.ready:
            raise exc
        return _Result(Outcome.REFUSED, ref, exc.reason or exc.detail or "the action failed", status)

    def _confirm(self, doc_id: str, key: str, ref: DocumentRef, how: str) -> _Result:
        self.ledger.record_links([Link(flow=ACTIONS_FLOW, source_id=doc_id, source_version=key, dest_system=ACUMATICA,
                                       dest_id=doc_id, dest_key=ref.external_id, content_hash=how,
                                       run_id=self.run_id)])  # fmt: skip
        self.ledger.delete_state(_LOCATION_STATE + doc_id)
        action = ACTIONS[ref.entity]
        if how == "already":
            return _Result(Outcome.ALREADY, ref, "Acumatica shows it done")
        return _Result(Outcome.DONE, ref, f"{action.past} by ml-connector", self._read(ref).get("Status"))


def _resolved_at(issue: JiraIssue) -> datetime | None:
    try:
        return parse_jira_datetime(issue.fields.get("resolutiondate"))
    except (TypeError, ValueError):
        return None


def _refusal(field_errors: dict[str, str], detail: str | None) -> str:
    return "; ".join(text if not name else f"{name}: {text}" for name, text in field_errors.items()) or detail or ""


def _outcome_comment(result: _Result, marker: str) -> dict[str, Any]:
    action = ACTIONS[result.ref.entity]
    document = result.ref.reference
    headline = {
        Outcome.DONE: f"{document} was {action.past} in Acumatica.",
        Outcome.ALREADY: f"{document} is already {action.past} in Acumatica; nothing was sent.",
        Outcome.REFUSED: f"Acumatica refused to {action.verb} {document}.",
        Outcome.ACKNOWLEDGED: f"{document} was left as it is in Acumatica.",
    }[result.outcome]
    facts = [f"Reason: {result.detail}" if result.outcome is Outcome.REFUSED else f"Detail: {result.detail}"]
    if result.status:
        facts.append(f"Status in Acumatica: {result.status}")
    return adf.doc(adf.paragraph(adf.strong(headline)), adf.bullet_list(*facts), adf.paragraph(adf.em(marker)))


def release_resolved(issues: Sequence[str], *, jira: JiraClient, acumatica: AcumaticaClient, ledger: Ledger,
                     settings: AcumaticaJiraFlow, run_id: str, log: logging.Logger | Any,
                     now: Callable[[], datetime] = _utcnow) -> ReleaseReport:
    """Act on each resolved issue (ids or keys) once; failures become dead letters, doubts are reported.

    ``report.in_doubt`` lists issues whose action may have run unseen: the caller retries them.
    """
    releaser = _Releaser(jira=jira, acumatica=acumatica, ledger=ledger, settings=settings, run_id=run_id, log=log,
                         now=now)
    succeeded = []
    for issue in dict.fromkeys(issues):
        try:
            releaser.handle(issue)
        except (ActionInDoubt, TransportFailure, TimeoutError) as exc:
            # The action may have run: its intent stays pending, so the retry looks before it acts.
            releaser.report.in_doubt.append(issue)
            log.warning(f"{RELEASE_ASSET}: {issue}: {exc}")
        except ApiError as exc:
            releaser.report.count("failed")
            ledger.add_dead_letter(RELEASE_ASSET, issue, {"issue": issue}, str(exc), run_id=run_id)
            log.warning(f"{RELEASE_ASSET}: {issue} failed: {exc}")
        else:
            succeeded.append(issue)
    ledger.resolve_dead_letters_for(RELEASE_ASSET, succeeded)
    return releaser.report
