"""``ml-connector chaos``: run schedules, show a bar on stderr, print the figure, write the report."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from ml_connector_dagster.progress import printing_beside_bars, progress_bar

from .runner import make_schedule, parse_schedule_id, run_chaos
from .schedule import ScheduleOutcome, run_schedule

__all__ = ["chaos_command"]


def chaos_command(
    count: int,
    seed: int,
    flows: Sequence[str],
    workers: int,
    kills: bool,
    replay_id: str | None,
    report_path: Path | None,
) -> None:
    """What ``ml-connector chaos`` does (see its help); exits 1 unless nothing was wrong."""
    from .scenarios import SCENARIOS

    if replay_id is not None:
        try:
            flow, schedule_seed = parse_schedule_id(replay_id)
            schedule = make_schedule(flow, schedule_seed)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--replay") from None
        outcome = run_schedule(schedule)
        click.echo(outcome.summary())
        click.echo("\n".join(f"  note: {note}" for note in outcome.notes))
        click.echo(
            f"1 schedules, {len(outcome.duplicates)} duplicates, {len(outcome.lost)} lost, "
            f"{len(outcome.mismatched)} mismatched"
        )
        sys.exit(0 if outcome.ok else 1)
    unknown = sorted(set(flows) - set(SCENARIOS))
    if unknown:
        raise click.BadParameter(
            f"no chaos scenario for {', '.join(unknown)} (known: {', '.join(sorted(SCENARIOS))})",
            param_hint="--flow",
        )
    chosen = list(flows) or list(SCENARIOS)
    command = (
        " ".join(["ml-connector chaos", *sys.argv[2:]])
        if sys.argv[1:2] == ["chaos"]
        else "ml-connector chaos"
    )
    with progress_bar(desc="chaos", total=count, unit="schedule") as bar:
        problems = {"duplicates": 0, "lost": 0, "mismatched": 0}

        def seen(outcome: ScheduleOutcome) -> None:
            problems["duplicates"] += len(outcome.duplicates)
            problems["lost"] += len(outcome.lost)
            problems["mismatched"] += len(outcome.mismatched)
            bar.update(1)
            bar.set_postfix(problems, refresh=False)
            if not outcome.ok:
                with printing_beside_bars():
                    click.echo(outcome.summary(), err=True)

        report = run_chaos(
            count,
            seed,
            chosen,
            workers=workers,
            kills=kills,
            command=command,
            on_outcome=seen,
            checkpoint=None if report_path is None else lambda so_far: so_far.write(report_path),
        )
    if report_path is not None:
        report.write(report_path)
        click.echo(f"report written to {report_path}", err=True)
    total = report.total()
    click.echo(
        f"{total.secrets} secrets found; {total.kills} kills; "
        f"{sum(total.faults.values())} faults injected; {total.errors} harness errors"
    )
    click.echo(report.final_line())
    sys.exit(0 if report.ok else 1)
