"""What every destination asset needs, whatever the vendor: exactly-once creates over the ledger, the
push step's run config and retries, the ``reconciled`` check's arithmetic, dead letters listed for
review (and their check), and the records a replay starts from.

A create without an idempotency key is made exactly once by a *pending* mark in the ledger, written
before the create is sent and turned into a link as soon as the destination names the new object.
Whoever meets a pending mark (an unanswered create, a crashed run) looks the record up in the
destination first, from the moment of the mark on, and creates it again only when it is not there
and the destination's lookup can be believed (``window``: how long a just-created object may stay
invisible to it). A create the destination refused (4xx) created nothing: its mark is dropped.
"""

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from ml_connector_dagster.core.http import ApiError, TransportFailure
from ml_connector_dagster.core.landing import LandedRecord, LandingStore
from ml_connector_dagster.core.ledger import AlreadyLinked, DeadLetter, Ledger, Link
from ml_connector_dagster.resources import LedgerResource

__all__ = [
    "CreateInDoubt",
    "CreateIntent",
    "CreateResult",
    "PushConfig",
    "Reconciliation",
    "appended_once",
    "build_dead_letter_check",
    "create_once",
    "dead_letter_review",
    "replay_copies",
    "step_retry_policy",
]

REVIEW_ROWS = 50


class PushConfig(dg.Config):
    """Run config of a push step: ``dry_run`` shows the plan and writes nothing."""

    dry_run: bool = False


def step_retry_policy(retries: int, delay_s: float) -> dg.RetryPolicy:
    """Retries of a plan/push step: exponential backoff with jitter, so concurrent runs spread out."""
    return dg.RetryPolicy(max_retries=retries, delay=delay_s, backoff=dg.Backoff.EXPONENTIAL,
                          jitter=dg.Jitter.PLUS_MINUS)


class CreateInDoubt(RuntimeError):
    """A create may have reached the destination and cannot be found (yet): look again later, never create."""


@dataclass(frozen=True)
class CreateIntent:
    """One source record to create in a destination, as the ledger will know it."""

    flow: str
    source_id: str
    source_version: str
    content_hash: str
    dest_system: str


@dataclass(frozen=True)
class CreateResult:
    """Where the record now lives; ``created`` only when this call created it."""

    dest_id: str
    created: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _link(intent: CreateIntent, dest_id: str, run_id: str | None, dest_key: str | None) -> Link:
    return Link(flow=intent.flow, source_id=intent.source_id, source_version=intent.source_version,
                dest_system=intent.dest_system, dest_id=dest_id, dest_key=dest_key, content_hash=intent.content_hash,
                run_id=run_id)


def create_once(
    ledger: Ledger,
    intent: CreateIntent,
    *,
    create: Callable[[], str],
    find: Callable[[datetime], str | None],
    run_id: str | None,
    dest_key: str | None = None,
    window: timedelta = timedelta(0),
    now: Callable[[], datetime] = _utcnow,
) -> CreateResult:
    """Create the record unless the ledger or the destination already has it; link it either way.

    ``create`` sends the create and returns the new object's id; ``find(since)`` looks the record up
    among objects created since a moment and returns its id or None. Raises :class:`CreateInDoubt`
    when a create may have happened but cannot be confirmed; the destination's own errors propagate.
    """
    link = ledger.links_for(intent.flow, [intent.source_id]).get(intent.source_id)
    if link is not None and link.state == "linked" and link.dest_id:
        return CreateResult(link.dest_id, created=False)
    if link is not None:  # an earlier create went unanswered: was it made?
        found = find(link.updated_at)
        if found is not None:
            ledger.record_links([_link(intent, found, run_id, dest_key)])
            return CreateResult(found, created=False)
        if now() - link.updated_at < window:
            raise CreateInDoubt(f"{intent.flow} {intent.source_id}: an earlier create may not be visible yet")
    marked_at = now()
    try:
        ledger.mark_pending(intent.flow, intent.source_id, intent.source_version, intent.dest_system,
                            intent.content_hash, run_id)
    except AlreadyLinked:  # a concurrent run linked it meanwhile
        linked = ledger.links_for(intent.flow, [intent.source_id])[intent.source_id]
        return CreateResult(linked.dest_id or "", created=False)
    try:
        dest_id = create()
    except TransportFailure as exc:
        if not exc.may_have_been_applied:
            ledger.forget_link(intent.flow, intent.source_id)
            raise
        found = find(marked_at)
        if found is None:
            raise CreateInDoubt(f"{intent.flow} {intent.source_id}: no answer to the create and not found "
                                f"in {intent.dest_system}; the pending mark stays") from exc
        ledger.record_links([_link(intent, found, run_id, dest_key)])
        return CreateResult(found, created=False)
    except ApiError as exc:
        if exc.status_code is not None and 400 <= exc.status_code < 500:
            ledger.forget_link(intent.flow, intent.source_id)  # refused: nothing was created
        raise
    ledger.record_links([_link(intent, dest_id, run_id, dest_key)])
    return CreateResult(dest_id, created=True)


# -- reconciliation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    """Source records that belong in a destination, against the ledger and what the destination holds."""

    eligible: int
    linked: int
    found: int
    missing_links: list[str]
    missing_in_destination: list[str]
    duplicates: dict[str, int]

    @classmethod
    def of(cls, eligible: Sequence[str], linked: Collection[str], found: Mapping[str, int]) -> "Reconciliation":
        """From the eligible source ids, the linked ones, and how many destination objects carry each id."""
        return cls(
            eligible=len(eligible), linked=len(linked), found=sum(1 for sid in eligible if found.get(sid)),
            missing_links=sorted(sid for sid in eligible if sid not in linked),
            missing_in_destination=sorted(sid for sid in linked if not found.get(sid)),
            duplicates={sid: n for sid, n in sorted(found.items()) if n > 1},
        )  # fmt: skip

    @property
    def passed(self) -> bool:
        return not (self.missing_links or self.missing_in_destination or self.duplicates)

    def check_result(self, destination: str, sample: int = 10) -> dg.AssetCheckResult:
        """The ``reconciled`` check's result: a duplicate is an ERROR, anything missing a WARN."""
        return dg.AssetCheckResult(
            passed=self.passed,
            severity=dg.AssetCheckSeverity.ERROR if self.duplicates else dg.AssetCheckSeverity.WARN,
            metadata={"eligible": self.eligible, "linked": self.linked, f"found_in_{destination}": self.found,
                      "missing_links": len(self.missing_links), f"missing_in_{destination}": len(self.missing_in_destination),
                      "duplicates": len(self.duplicates),
                      "sample": dg.MetadataValue.json({"missing_links": self.missing_links[:sample],
                                                       f"missing_in_{destination}": self.missing_in_destination[:sample],
                                                       "duplicates": dict(list(self.duplicates.items())[:sample])})},
        )  # fmt: skip


# -- dead letters ----------------------------------------------------------------------------------


def dead_letter_review(letters: Sequence[DeadLetter], rows: int = REVIEW_ROWS) -> dg.MetadataValue:
    """A markdown table of letters for a human to review: record, partition, attempts, reason."""
    if not letters:
        return dg.MetadataValue.md("_no open dead letters_")
    frame = pd.DataFrame([{"record": letter.source_id, "partition": letter.partition_key or "",
                           "attempts": letter.attempts, "reason": " ".join(letter.error.split())[:240]}
                          for letter in letters[:rows]])
    table = frame.to_markdown(index=False, disable_numparse=True)
    more = f"\n\n_and {len(letters) - rows} more_" if len(letters) > rows else ""
    return dg.MetadataValue.md(table + more)


def _reason_kind(error: str) -> str:
    """The part of an error before its first colon: what kind of failure it is."""
    return error.split(":", 1)[0].strip()[:80] or "unknown"


def build_dead_letter_check(asset_key: dg.AssetKey, *, name: str = "no_open_dead_letters",
                            replay_job: str | None = None) -> dg.AssetChecksDefinition:
    """A warning check listing the asset's open dead letters with their reasons, counted by kind."""
    asset = asset_key.to_user_string()
    hint = f" Fix the cause, then run {replay_job}." if replay_job else ""

    @dg.asset_check(asset=asset_key, name=name, blocking=False,
                    description=f"Records of {asset} that failed and wait for review.{hint}")
    def check(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
        with ledger.open() as opened:
            letters = opened.open_dead_letters(asset)
        if context.has_partition_key or context.has_partition_key_range:
            keys = set(context.partition_keys)
            letters = [letter for letter in letters if letter.partition_key in keys or letter.partition_key is None]
        kinds = Counter(_reason_kind(letter.error) for letter in letters)
        return dg.AssetCheckResult(
            passed=not letters, severity=dg.AssetCheckSeverity.WARN,
            metadata={"open_dead_letters": len(letters), "by_reason": dg.MetadataValue.json(dict(kinds.most_common())),
                      "review": dead_letter_review(letters)},
        )

    return check


def replay_copies(ledger: Ledger, letters: Iterable[DeadLetter], *, system: str, entity: str) -> list[LandedRecord]:
    """What a replay pushes for each letter: the record's latest landed copy, else the copy the letter kept."""
    letters = list(letters)
    landed = LandingStore(ledger).get_many(system, entity, [letter.source_id for letter in letters])
    return [landed.get(letter.source_id)
            or LandedRecord(record_id=letter.source_id, partition_key=letter.partition_key, payload=letter.record)
            for letter in letters]


def appended_once(text: str | None, line: str, marker: str) -> str | None:
    """``text`` with ``line`` added on a line of its own, or None when ``marker`` shows it is there already.

    How a return path writes into a free-text field (a document's note) exactly once: a retry after
    a lost answer finds its marker and writes nothing; what people wrote there is kept.
    """
    current = text or ""
    if marker in current:
        return None
    return f"{current.rstrip()}\n{line}" if current.strip() else line
