"""A headless replay: each flow's replay job (its open dead letters pushed again), once, on the local
Dagster instance.

Used by ``ml-connector replay``. A replay job is an op job tagged ``ml_connector/job: replay``
(:func:`~ml_connector_dagster.run_tags.job_tags`); it pushes each open dead letter's latest landed
copy through the flow's own push and resolves the letters that go through. The runs land in the
instance the UI shows; the report is the terminal's view of their metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from .core.ledger import Ledger
from .progress import progress_bar
from .run_tags import FLOW_TAG, JOB_KIND_TAG
from .sync import QUIET_CONSOLE, local_instance

__all__ = ["ReplayOutcome", "ReplayReport", "replay_jobs", "run_replay"]


@dataclass
class ReplayOutcome:
    flow: str
    job: str
    replayed: int = 0
    failed: int = 0
    error: str | None = None


@dataclass
class ReplayReport:
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    open_before: int = 0
    open_after: int = 0

    @property
    def success(self) -> bool:
        return all(outcome.error is None for outcome in self.outcomes)

    def render(self) -> str:
        """A fixed-width table, one row per replay job, and the ledger's open dead letters before and after."""
        header = ["flow", "job", "replayed", "failed", "result"]
        rows = [[o.flow, o.job, str(o.replayed), str(o.failed), "ok" if o.error is None else "FAILED"]
                for o in self.outcomes]
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
        lines = ["ml-connector replay"]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                  for row in [header, *rows]]
        lines.append(f"open dead letters: {self.open_before} before, {self.open_after} after")
        lines += [f"FAILED: {o.job}: {o.error}" for o in self.outcomes if o.error is not None]
        return "\n".join(lines)


def replay_jobs(defs: dg.Definitions, flow: str | None = None) -> list[dg.JobDefinition]:
    """The replay jobs of the configured flows (of ``flow`` only, when given), by name."""
    jobs = [job for job in defs.resolve_all_job_defs() if job.tags.get(JOB_KIND_TAG) == "replay"]
    return sorted((job for job in jobs if flow is None or job.tags.get(FLOW_TAG) == flow), key=lambda job: job.name)


def run_replay(jobs: Sequence[dg.JobDefinition], *, instance: dg.DagsterInstance | None = None,
               ledger_url: str | None = None) -> ReplayReport:
    """Run each replay job once, in this process, on ``instance`` (default: the connector's local one)."""
    instance = instance or local_instance()
    report = ReplayReport(open_before=_open_letters(ledger_url))
    with progress_bar(jobs, desc="replay", unit="job") as bar:
        for job in bar:
            bar.set_postfix_str(job.name)
            report.outcomes.append(_replay(job, instance))
    report.open_after = _open_letters(ledger_url)
    return report


def _replay(job: dg.JobDefinition, instance: dg.DagsterInstance) -> ReplayOutcome:
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=_QUIET,
                                    tags={"ml_connector/trigger": "cli-replay"})
    outcome = ReplayOutcome(flow=job.tags.get(FLOW_TAG, "-"), job=job.name)
    for event in result.all_events:
        if event.is_successful_output and event.step_output_data.metadata:
            for key, value in event.step_output_data.metadata.items():
                count = value.value if isinstance(value.value, int) else 0
                if key.endswith("replayed"):
                    outcome.replayed += count
                elif key.endswith("_failed"):
                    outcome.failed += count
        elif event.is_step_failure:
            error = event.step_failure_data.error
            outcome.error = error.message.strip() if error else "failed"
    if not result.success and outcome.error is None:
        outcome.error = "the run failed"
    return outcome


def _open_letters(ledger_url: str | None) -> int:
    with Ledger.open(ledger_url) as ledger:
        return ledger.count_open_dead_letters()


# The replay jobs have a console logger only (op jobs get Dagster's default): warnings and errors.
_QUIET = {"loggers": {"console": QUIET_CONSOLE["loggers"]["console"]}}
