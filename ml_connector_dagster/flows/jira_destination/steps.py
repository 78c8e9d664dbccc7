"""The Dagster side every Jira destination shares: metadata, the retryable doubt, reconciliation by external id
(push config and step retries are every destination's: :mod:`..destination`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.jira.client import JiraClient, jql_field, jql_phrase, jql_string

from ..destination import PushConfig, step_retry_policy
from .records import LOOKUP_BATCH
from .writer import CreateInDoubt, PushOutcome

__all__ = [
    "PushConfig",
    "Reconciliation",
    "count_issues",
    "deferred_error",
    "outcome_metadata",
    "reconcile",
    "reconciled_result",
    "step_retry_policy",
]

ISSUE_LINKS_SHOWN = 5


def deferred_error(asset: str, deferred: Sequence[str]) -> CreateInDoubt:
    """The retryable failure of a push that left creates in doubt."""
    sample = ", ".join(deferred[:10])
    return CreateInDoubt(
        f"{asset}: {len(deferred)} create(s) may already be in Jira but are not searchable yet "
        f"({sample}); retrying instead of creating twice"
    )


def outcome_metadata(outcome: PushOutcome) -> dict[str, Any]:
    """Counts of what a push did, and links to (a few of) the issues it wrote."""
    metadata: dict[str, Any] = {
        "dry_run": False,
        "created": outcome.created,
        "updated": outcome.updated,
        "linked": outcome.linked,
        "commented": outcome.commented,
        "transitioned": outcome.transitioned,
        "failed": outcome.failed,
        "deferred": len(outcome.deferred),
        "issues_written": len(outcome.issues),
    }
    for key, url in list(outcome.issues.items())[:ISSUE_LINKS_SHOWN]:
        if url:
            metadata[f"issue {key}"] = dg.MetadataValue.url(url)
    return metadata


# -- reconciliation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    """One partition of one flow's records, source against Jira."""

    eligible: int
    linked: int
    found: int
    missing_links: list[str]
    missing_issues: list[str]
    duplicates: dict[str, int]

    @property
    def passed(self) -> bool:
        return not (self.missing_links or self.missing_issues or self.duplicates)


def count_issues(client: JiraClient, project_key: str, field_id: str,
                 wanted: Sequence[tuple[str, str | None]]) -> dict[str, int]:
    """How many issues of the project carry each external id (the client's lookup keeps one; this counts them all)."""
    counts: dict[str, int] = {}
    for start in range(0, len(wanted), LOOKUP_BATCH):
        batch = wanted[start : start + LOOKUP_BATCH]
        names = {external_id for external_id, _ in batch}
        clauses = " OR ".join(f"{jql_field(field_id)} ~ {jql_phrase(external_id)}" for external_id, _ in batch)
        jql = f"project = {jql_string(project_key)} AND ({clauses})"
        reconcile_ids = [issue_id for _, issue_id in batch if issue_id]
        for raw in client.search(jql, [field_id], reconcile_ids=reconcile_ids or None):
            value = (raw.get("fields") or {}).get(field_id)
            if value in names:
                counts[value] = counts.get(value, 0) + 1
    return counts


def reconcile(eligible: Mapping[str, str], *, flow: str, client: JiraClient, ledger: Ledger,
              project_keys: Sequence[str], field_id: str) -> Reconciliation:
    """Every eligible record (record id -> external id) should have one linked issue, and only one."""
    links = ledger.links_for(flow, eligible)
    linked = {rid: link for rid, link in links.items() if link.state == "linked"}
    wanted = [(external_id, linked[rid].dest_id if rid in linked else None) for rid, external_id in eligible.items()]
    counts: dict[str, int] = {}
    for project_key in project_keys:
        for external_id, n in count_issues(client, project_key, field_id, wanted).items():
            counts[external_id] = counts.get(external_id, 0) + n
    return Reconciliation(
        eligible=len(eligible),
        linked=len(linked),
        found=sum(1 for external_id in eligible.values() if counts.get(external_id)),
        missing_links=sorted(rid for rid in eligible if rid not in linked),
        missing_issues=sorted(external_id for external_id in eligible.values() if not counts.get(external_id)),
        duplicates={external_id: n for external_id, n in sorted(counts.items()) if n > 1},
    )


def reconciled_result(result: Reconciliation) -> dg.AssetCheckResult:
    """The check's verdict: a duplicate issue is an ERROR, a missing one a warning."""
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if result.duplicates else dg.AssetCheckSeverity.WARN,
        metadata={
            "eligible": result.eligible, "linked": result.linked, "found_in_jira": result.found,
            "missing_links": len(result.missing_links), "missing_issues": len(result.missing_issues),
            "duplicates": len(result.duplicates),
            "sample": dg.MetadataValue.json({
                "missing_links": result.missing_links[:10], "missing_issues": result.missing_issues[:10],
                "duplicates": dict(list(result.duplicates.items())[:10]),
            }),
        },
    )  # fmt: skip
