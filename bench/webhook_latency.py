"""Webhook -> destination latency, measured for real on the embedded instance.

``python -m bench.webhook_latency`` (or ``make bench-latency``) starts the demo stack for one flow
(``--flow``, :mod:`bench.latency_flows`; :mod:`bench.stack`): its simulators, the webhook receiver,
and ``dagster dev`` with the repository's dagster.yaml on a fresh DAGSTER_HOME. It waits until the
initial backfill has settled (no run queued or in progress, for longer than a poll interval), then
makes ``--changes`` changes in the source through its API, ``--spacing`` seconds apart (visma_jira:
supplier invoices created; acumatica_jira: bills put on hold; acumatica_release, that flow's return
path: exception issues resolved in Jira), and times each from just before its request until the
destination shows it in its simulator's ``/_sandbox/state`` (polled every ``--poll-every`` s: the
issue exists; the bill is off hold). Each change's time is then split into stages from the ledger's
inbox, the Dagster runs' events and the destination's own stamp (an issue's ``created``, a bill's
``LastModifiedDateTime``):

- ``deliver``: POST -> the receiver stored the webhook
- ``sensor``: stored -> the inbox sensor enqueued a run
- ``queue``: enqueued -> the run coordinator launched it
- ``start``: launched -> the run worker process started the run (process start, imports)
- ``run``: started -> the destination applied the change (the issue created, the bill released)
- ``observe``: created -> this benchmark saw it

The figures are printed and written to docs/benchmarks.md, section "## Webhook -> destination
latency" (``--no-write`` to skip). Everything started is stopped on exit, failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from .latency_flows import LATENCY_FLOWS, LatencyFlow, Look
from .report import REPORT_PATH, machine, percentile, table, write_section
from .stack import PROJECT_ROOT, Stack, StackSettings, running_stack

# Dagster's beta/preview notices about its own APIs say nothing about the figures.
warnings.filterwarnings("ignore", module="dagster")
warnings.filterwarnings("ignore", message=".*(beta|preview).*")

HEADING = "## Webhook -> destination latency"  # visma_jira's; another flow's adds its name


def heading(flow: LatencyFlow) -> str:
    """The docs section of ``flow``'s runs."""
    return HEADING if flow.name == "visma_jira" else f"{HEADING} ({flow.name})"


TARGETS = {"p50": 5.0, "p95": 15.0}
STAGES = ("deliver", "sensor", "queue", "start", "run", "observe")
HISTORY = "Every run so far (newest last):"
HISTORY_COLUMNS = ("when (UTC)", "run", "p50 s", "p95 s", "max s", "not seen", "load avg before / after",
                   "by inbox / poll run")
MAX_HISTORY = 30


@dataclass
class Change:
    """One change the benchmark made in the source, and when each stage of its journey happened (epoch s)."""

    key: str  # the record's id in the webhook inbox and in the inbox run's config (``ids``)
    external_id: str  # what its issue carries in the flow's id field
    posted_at: float
    seen_at: float | None = None
    stamps: dict[str, float] = field(default_factory=dict)
    path: str = "?"

    @property
    def latency(self) -> float | None:
        return None if self.seen_at is None else self.seen_at - self.posted_at

    def stage_seconds(self) -> dict[str, float]:
        """Durations of the stages whose both ends are known."""
        order = ["posted", "received", "enqueued", "launched", "started", "created", "seen"]
        stamps = {"posted": self.posted_at, **self.stamps}
        if self.seen_at is not None:
            stamps["seen"] = self.seen_at
        return {stage: stamps[end] - stamps[begin] for stage, begin, end in zip(STAGES, order[:-1], order[1:], strict=True)
                if begin in stamps and end in stamps}  # fmt: skip


class ArrivalWatcher:
    """Polls the destination from a thread (the flow's ``watch``); remembers when each change first arrived.

    A record that had already arrived when the watcher started counts only once it has been seen
    not arrived since (a bill put on hold, then released), so nothing done before the clock counts.
    """

    def __init__(self, look: Look, every_s: float) -> None:
        self.look = look
        self.every_s = every_s
        self.first_seen: dict[str, float] = {}
        self.created: dict[str, float] = {}
        self._before: set[str] = set()
        self._away: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arrival-watcher", daemon=True)

    def __enter__(self) -> ArrivalWatcher:
        with httpx.Client(timeout=10) as client:
            self._before = {key for key, (arrived, _) in self.look(client).items() if arrived}
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self.every_s):
                try:
                    self._note(self.look(client))
                except httpx.HTTPError:
                    continue  # a busy simulator; the next look catches up

    def _note(self, arrivals: dict[str, tuple[bool, float | None]]) -> None:
        now = time.time()
        for key, (arrived, stamped) in arrivals.items():
            if not arrived:
                self._away.add(key)
            elif key not in self.first_seen and (key not in self._before or key in self._away):
                self.first_seen[key] = now
                if stamped is not None:
                    self.created[key] = stamped


# -- settling, creating, timing ------------------------------------------------------------------------


def wait_until_settled(stack: Stack, *, quiet_s: float, timeout_s: float) -> float:
    """Seconds until the initial backfill is done: runs have succeeded and none is pending for ``quiet_s``."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    pending = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
               DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]  # fmt: skip
    started = time.monotonic()
    quiet_since: float | None = None
    with DagsterInstance.get() as instance:
        while True:
            if stack.dagster.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({stack.dagster.returncode}):\n{stack.dagster_log_tail()}")
            now = time.monotonic()
            if now - started > timeout_s:
                raise TimeoutError(f"the initial backfill did not settle in {timeout_s:.0f} s")
            busy = instance.get_runs_count(RunsFilter(statuses=pending))
            done = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
            if busy or not done:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet_s:
                failed = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                print(f"settled after {now - started:.0f} s: {done} run(s) succeeded, {failed} failed")
                return now - started
            time.sleep(1.0)


def wait_for_arrivals(changes: Sequence[Change], watcher: ArrivalWatcher, timeout_s: float) -> None:
    """Until every change has arrived at the destination, or ``timeout_s`` after the last one was made."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(c.external_id in watcher.first_seen for c in changes):
        time.sleep(0.2)
    for change in changes:
        change.seen_at = watcher.first_seen.get(change.external_id)
        if change.external_id in watcher.created:
            change.stamps["created"] = watcher.created[change.external_id]


def trace(changes: Sequence[Change], flow: LatencyFlow) -> None:
    """Fill each change's stage stamps from the ledger's inbox and the inbox runs' events."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    from ml_connector_dagster.core.ledger import Ledger

    by_number = {change.key: change for change in changes}
    with Ledger.open() as ledger:
        for event in ledger.inbox_after(0, 100_000, system=flow.source, unprocessed_only=False):
            number = (event.record_ref or {}).get("id")
            change = by_number.get(number)
            # The record's own webhooks from before the change (an issue's creation) are not its journey.
            if change is not None and "received" not in change.stamps and \
                    event.received_at.timestamp() >= change.posted_at - 1.0:  # fmt: skip
                change.stamps["received"] = event.received_at.timestamp()
    with DagsterInstance.get() as instance:
        for run in reversed(instance.get_runs(RunsFilter(tags={"ml_connector/trigger": flow.run_trigger}))):
            ids = [flow.key_of(str(named)) for named in
                   run.run_config.get("ops", {}).get(flow.run_op, {}).get("config", {}).get(flow.ids_key, [])]
            touched = [by_number[number] for number in ids if number in by_number
                       and "enqueued" not in by_number[number].stamps]  # fmt: skip
            if not touched:
                continue
            record = instance.get_run_record_by_id(run.run_id)
            stamps = {"enqueued": record.create_timestamp.timestamp()} if record else {}
            for entry in instance.all_logs(run.run_id, of_type={DagsterEventType.RUN_STARTING,
                                                                DagsterEventType.RUN_START}):  # fmt: skip
                kind = entry.dagster_event.event_type if entry.dagster_event else None
                stamps["launched" if kind == DagsterEventType.RUN_STARTING else "started"] = entry.timestamp
            ended = record.end_time if record and record.end_time else None
            for change in touched:
                change.stamps.update(stamps)
                created = change.stamps.get("created")
                in_run = created is not None and stamps.get("started", float("inf")) <= created <= (ended or created)
                change.path = "inbox" if in_run else "poll"


# -- reporting -------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.1f}"


def _previous_runs(path: Path, title: str) -> list[str]:
    """The rows of the section's run history, as written by earlier runs."""
    if not path.exists():
        return []
    text = path.read_text()
    start = text.find(title + "\n")
    if start < 0:
        return []
    section = text[start + len(title):]
    following = re.search(r"^## |^<!-- bench:begin", section, re.M)
    section = section[: following.start()] if following else section
    if HISTORY not in section:
        return []
    rows = [line for line in section.split(HISTORY, 1)[1].splitlines() if line.startswith("| ")]
    return [row for row in rows if HISTORY_COLUMNS[0] not in row][-MAX_HISTORY:]


def summarize(invoices: Sequence[Change], args: argparse.Namespace, settle_s: float, history: Sequence[str],
              flow: LatencyFlow) -> str:
    """The Markdown body of the docs section (and what is printed): this run, then every run so far."""
    latencies = [i.latency for i in invoices if i.latency is not None]
    missing = len(invoices) - len(latencies)
    p50, p95, top = percentile(latencies, 0.5), percentile(latencies, 0.95), max(latencies, default=float("nan"))
    verdict = "met" if p50 <= TARGETS["p50"] and p95 <= TARGETS["p95"] and not missing else "MISSED"
    stages = {stage: [i.stage_seconds()[stage] for i in invoices if stage in i.stage_seconds()] for stage in STAGES}
    stage_rows = [(stage, _fmt(statistics.median(v) if v else None), _fmt(percentile(v, 0.95) if v else None),
                   _fmt(max(v) if v else None)) for stage, v in stages.items()]  # fmt: skip
    paths = {path: sum(1 for i in invoices if i.path == path) for path in ("inbox", "poll", "?")}
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    settings = args.dagster_yaml.resolve()
    instance = ("the repository's dagster.yaml" if settings == (PROJECT_ROOT / "dagster.yaml").resolve()
                else f"`{settings.name}` (`--dagster-yaml`)")  # fmt: skip
    wait = "connector.yaml's default" if args.inbox_wait is None else f"{args.inbox_wait:g} s"
    row = table(HISTORY_COLUMNS, [(when, args.label or "-", _fmt(p50), _fmt(p95), _fmt(top), missing,
                                   f"{args.load_before:.1f} / {args.load_after:.1f}",
                                   f"{paths['inbox']} / {paths['poll']}")]).splitlines()[-1]  # fmt: skip
    return "\n\n".join([
        f"Latest run ({when} UTC{', ' + args.label if args.label else ''}): `python -m bench.webhook_latency "
        f"--flow {flow.name}` made {len(invoices)} changes, {flow.change}, {args.spacing:g} s apart, once the "
        f"initial backfill had settled ({settle_s:.0f} s), and timed each from just before its request until "
        f"{flow.destination} (polled every {args.poll_every:g} s). "
        f"`dagster dev` ran with {instance} on a fresh SQLite DAGSTER_HOME; inbox sensor watch: {wait}.",
        f"Machine: {machine()}; load average {args.load_before:.1f} before the changes, {args.load_after:.1f} "
        f"after. Other work on the machine slows every process start: compare runs at similar load"
        + (f"; `dagster dev` and its run workers ran at autogroup nice {args.priority} (`--priority`), which "
           f"approximates a dedicated machine." if args.priority is not None else "."),
        table([f"webhook -> destination ({flow.name})", "p50 s", "p95 s", "max s", "target"],
              [("latency", _fmt(p50), _fmt(p95), _fmt(top), f"p50 <= {TARGETS['p50']:g} s, p95 <= "
                f"{TARGETS['p95']:g} s: **{verdict}**")]),
        f"Changes not seen within {args.issue_timeout:g} s of the last one: {missing}. Carried by the webhook's "
        f"run: {paths['inbox']}, by another run (poll): {paths['poll']}, unknown: {paths['?']}.",
        "Where the time goes (seconds, from the ledger's inbox, the runs' events and the destination's own stamp, "
        "an issue's `created` or a bill's `LastModifiedDateTime`):",
        table(["stage", "median", "p95", "max"], stage_rows),
        HISTORY,
        "\n".join([*table(HISTORY_COLUMNS, []).splitlines(), *history, row]),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", choices=sorted(LATENCY_FLOWS), default="visma_jira",
                        help="The flow to time (default visma_jira); see bench/latency_flows.py.")
    parser.add_argument("--changes", "--invoices", type=int, default=20, dest="changes",
                        help="How many source changes to make (default 20).")
    parser.add_argument("--spacing", type=float, default=3.0, help="Seconds between two changes (default 3).")
    parser.add_argument("--poll-every", type=float, default=0.2, help="Seconds between looks at Jira (default 0.2).")
    parser.add_argument("--size", type=int, default=None, help="Documents in the source sandbox (default: the flow's).")
    parser.add_argument("--days", type=int, default=1, help="Days of sandbox data (the backfill's lookback).")
    parser.add_argument("--settle-timeout", type=float, default=900.0)
    parser.add_argument("--issue-timeout", type=float, default=120.0, help="Wait after the last create.")
    parser.add_argument("--dagster-yaml", type=Path, default=PROJECT_ROOT / "dagster.yaml",
                        help="The instance settings to measure (default: the repository's dagster.yaml).")
    parser.add_argument("--inbox-wait", type=float, default=None,
                        help="webhooks.inbox_wait_s for this run (default: connector.yaml's default).")
    parser.add_argument("--priority", type=int, default=None, metavar="NICE",
                        help="Run `dagster dev`'s session, and this one (simulators, receiver), at this autogroup "
                             "nice (e.g. -15: approximates a dedicated machine when other work shares it; "
                             "Linux, root; start the benchmark with `setsid` to leave your shell alone).")
    parser.add_argument("--label", default="", help="A note for this run in docs/benchmarks.md.")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    parser.add_argument("--keep", action="store_true", help="Keep the temp folder (logs, instance, ledger).")
    args = parser.parse_args(argv)

    flow = LATENCY_FLOWS[args.flow]
    settings = StackSettings(size=args.size or flow.size, days=args.days, keep=args.keep, dagster_yaml=args.dagster_yaml,
                             inbox_wait_s=args.inbox_wait, priority=args.priority, flow=flow.flow, systems=flow.systems)
    try:
        with running_stack(settings) as stack:
            print(f"stack up in {stack.home}; waiting for the initial backfill to settle ...", flush=True)
            settle_s = wait_until_settled(stack, quiet_s=35.0, timeout_s=args.settle_timeout)
            with ArrivalWatcher(flow.watch(stack), args.poll_every) as watcher:
                args.load_before = os.getloadavg()[0]
                changes = flow.make(stack, args.changes, args.spacing)
                wait_for_arrivals(changes, watcher, args.issue_timeout)
                args.load_after = os.getloadavg()[0]
            trace(changes, flow)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    title = heading(flow)
    body = summarize(changes, args, settle_s, _previous_runs(REPORT_PATH, title), flow)
    print(body)
    if not args.no_write:
        write_section(title, body)
        print(f"written to {REPORT_PATH.relative_to(PROJECT_ROOT)}")
    return 0 if all(c.latency is not None for c in changes) else 1


if __name__ == "__main__":
    sys.exit(main())
