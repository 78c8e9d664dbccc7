"""Jira as the destination of a flow: what every flow that turns records into Jira issues shares.

Jira has no idempotency key, so each create is preceded by a *pending* mark in the ledger and
followed at once by the link. Whoever meets a pending mark (a timed-out create, a crashed run)
looks the record up in Jira by its external-id field before creating it again. The search index is
eventually consistent, so "not found" is only believed once the mark is older than the consistency
window; until then the record is *deferred* and the step fails with a retryable
:class:`CreateInDoubt`, so its retry policy (or the next run) looks again.

Updates comment first, then set the fields, then move the status, and only then advance the
ledger's content hash: a failure anywhere leaves the hash behind, so the next run picks the record
up again. Comments carry a marker and are looked for before being sent a second time
(:func:`comment_once`). Records that still fail become dead letters; a record that succeeds
resolves its own.

A flow plans with :func:`triage` (before asking Jira) and :func:`decide` (after the batched
:func:`lookup_issues`), and pushes with a subclass of :class:`IssueWriter` that says how its
records become create fields and how they are looked up.
"""

from .records import (
    LOOKUP_BATCH,
    RECHECK,
    UNKNOWN_LOOKUP_BATCH,
    Action,
    FieldIds,
    PlannedIssueBase,
    RenderedIssueBase,
    decide,
    known_issue_id,
    lookup_issues,
    triage,
)
from .steps import (
    PushConfig,
    Reconciliation,
    count_issues,
    deferred_error,
    outcome_metadata,
    reconcile,
    reconciled_result,
    step_retry_policy,
)
from .text import (
    MISSING,
    format_amount,
    format_money,
    one_line,
    table_facts,
    utc_text,
)
from .workflow import (
    TransitionMenu,
    comment_once,
    move_to_status,
    next_step,
)
from .writer import (
    DEST,
    LOOKUPS_AHEAD,
    SENDERS,
    CreateInDoubt,
    InFlight,
    IssueWriter,
    PushOutcome,
)

__all__ = [
    "DEST",
    "LOOKUPS_AHEAD",
    "LOOKUP_BATCH",
    "SENDERS",
    "UNKNOWN_LOOKUP_BATCH",
    "MISSING",
    "RECHECK",
    "Action",
    "CreateInDoubt",
    "FieldIds",
    "InFlight",
    "IssueWriter",
    "PlannedIssueBase",
    "PushConfig",
    "PushOutcome",
    "Reconciliation",
    "RenderedIssueBase",
    "TransitionMenu",
    "comment_once",
    "count_issues",
    "decide",
    "deferred_error",
    "format_amount",
    "format_money",
    "known_issue_id",
    "lookup_issues",
    "move_to_status",
    "next_step",
    "one_line",
    "outcome_metadata",
    "reconcile",
    "reconciled_result",
    "step_retry_policy",
    "table_facts",
    "triage",
    "utc_text",
]
