"""The sensor of the return path: which Jira issues were resolved, from webhooks and a JQL poll.

Two signals, one request per resolution. Jira webhooks land in the inbox (system ``jira``, record
``{"entity": "issues", "id", "key"}``); an ``issue_updated`` event whose issue carries a resolution
date in one of the flow's projects is a hint, looked for every tick (one query of the ledger); a tick
that finds nothing to request keeps watching the inbox for ``wait_for_events_s`` (as the inbox sensor
does), so a bill is released seconds after its issue is resolved, not a tick later. The guarantee is the poll, every
``poll_interval_seconds``: ``project in (...) AND resolved >= <epoch ms> ORDER BY resolved ASC``,
read ``resolution_overlap_s`` behind its watermark because Jira's index lags behind a resolution.

The cursor is small: the last inbox id read, the watermark, when the poll last ran, and the
resolutions requested within the overlap (pruned as the watermark moves), so each resolution is requested once however many
signals report it. One run of ``acumatica_jira_release`` is requested per tick with the batch's
issue ids (two when some came from webhooks: those take the run queue's fast lane); its run key
is a digest of the batch's resolutions. Resolutions the ledger shows handled
are left out, and an action left in doubt (its intent still pending past ``action_window_s``) is
requested again so that a failed run's doubt is settled.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field, ValidationError

from ml_connector_dagster.config import AcumaticaJiraFlow
from ml_connector_dagster.core.ledger import InboxEvent, Ledger
from ml_connector_dagster.run_tags import webhook_run_tags
from ml_connector_dagster.sensors.inbox import WATCH_INTERVAL_S
from ml_connector_dagster.sensors.poll import poll_due
from ml_connector_dagster.systems.jira.client import JiraClient, jql_datetime, jql_string
from ml_connector_dagster.systems.jira.models import parse_jira_datetime

from .acumatica_jira_issues import projects_of
from .acumatica_jira_release import ACTIONS_FLOW, RESOLUTIONS_FLOW

__all__ = ["ResolutionCursor", "build_resolution_sensor", "release_run_config"]

INBOX_BATCH = 500
_ISSUE_EVENTS = frozenset({"jira:issue_updated", "jira:issue_created"})


class ResolutionCursor(BaseModel):
    """Where the sensor is: inbox id read up to, resolution watermark, resolutions recently requested."""

    inbox: int = 0
    resolved_ms: int | None = None
    polled_at: float | None = Field(None, description="When the JQL poll last ran (epoch s).")
    requested: dict[str, int] = Field(default_factory=dict, description="Issue id -> resolved ms, within the overlap.")

    @classmethod
    def load(cls, raw: str | None) -> ResolutionCursor:
        if not raw:
            return cls()
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return cls()  # unreadable: start again; handled resolutions are left out by the ledger


def release_run_config(op_name: str, issues: Iterable[str]) -> dict[str, Any]:
    """The run config handing ``issues`` to the release op."""
    return {"ops": {op_name: {"config": {"issues": list(issues)}}}}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _polled(client: JiraClient, settings: AcumaticaJiraFlow, since_ms: int) -> Iterator[tuple[str, int]]:
    """(issue id, resolved ms) of issues resolved at or after ``since_ms``, oldest first, bounded per tick."""
    projects = ", ".join(jql_string(key) for key in projects_of(settings))
    since = datetime.fromtimestamp(since_ms / 1000, tz=UTC)
    jql = f"project in ({projects}) AND resolved >= {jql_datetime(since)} ORDER BY resolved ASC"
    for n, raw in enumerate(client.search(jql, ["resolutiondate"], max_results=min(100, settings.resolutions_per_tick))):
        if n >= settings.resolutions_per_tick:
            return
        resolved = parse_jira_datetime((raw.get("fields") or {}).get("resolutiondate"))
        if resolved is not None:
            yield str(raw["id"]), _ms(resolved)


def _hinted(events: Iterable[InboxEvent], settings: AcumaticaJiraFlow) -> Iterator[tuple[str, int]]:
    """(issue id, resolved ms) of the inbox's issue events that show a resolution in one of our projects."""
    prefixes = tuple(f"{key}-" for key in projects_of(settings))
    for event in events:
        issue = event.payload.get("issue")
        if event.payload.get("webhookEvent") not in _ISSUE_EVENTS or not isinstance(issue, dict):
            continue
        fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else {}
        try:
            resolved = parse_jira_datetime(fields.get("resolutiondate"))
        except (TypeError, ValueError):
            continue
        if resolved is not None and str(issue.get("key") or "").startswith(prefixes) and issue.get("id"):
            yield str(issue["id"]), _ms(resolved)


def _watch_for_hints(ledger: Ledger, events: list[InboxEvent], after: int, wait_s: float,
                     settings: AcumaticaJiraFlow) -> dict[str, int]:
    """Read Jira's deliveries past ``after`` until one reports a resolution or ``wait_s`` has passed;
    ``events`` grows by what was read (the cursor moves past it), the hints are returned."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() + WATCH_INTERVAL_S <= deadline:
        time.sleep(WATCH_INTERVAL_S)
        more = ledger.inbox_after(events[-1].id if events else after, INBOX_BATCH, system="jira",
                                  unprocessed_only=False)  # fmt: skip
        events += more
        hinted = dict(_hinted(more, settings))
        if hinted:
            return hinted
    return {}


def _fresh(ledger: Ledger, found: dict[str, int], cursor: ResolutionCursor) -> dict[str, int]:
    """The resolutions found that were neither requested within the overlap nor handled already."""
    handled = ledger.links_for(RESOLUTIONS_FLOW, [f"{i}@{ms}" for i, ms in found.items()])
    return {i: ms for i, ms in found.items() if cursor.requested.get(i) != ms and f"{i}@{ms}" not in handled}


def _stranded(ledger: Ledger, window: timedelta, now: datetime) -> list[tuple[str, str]]:
    """(issue id, run key) of actions whose intent is still pending past the window: a failed run's doubt."""
    stranded = []
    for intent in ledger.pending_links(ACTIONS_FLOW, limit=100):
        if now - intent.updated_at >= window and "@" in intent.source_version:
            issue_id = intent.source_version.split("@", 1)[0]
            stranded.append((issue_id, f"acumatica_jira_release:settle:{intent.source_id}:{_ms(intent.updated_at)}"))
    return stranded


def _batch_key(resolutions: dict[str, int]) -> str:
    digest = hashlib.sha256("|".join(f"{i}@{ms}" for i, ms in sorted(resolutions.items())).encode()).hexdigest()
    return f"acumatica_jira_release:{digest[:20]}"


def build_resolution_sensor(settings: AcumaticaJiraFlow, job: dg.JobDefinition, op_name: str, *,
                            lookback: timedelta, poll_interval_seconds: float, minimum_interval_seconds: int = 1,
                            wait_for_events_s: float = 0.0) -> dg.SensorDefinition:
    """``acumatica_jira_resolutions``: resolved issues (webhook hints every tick, the JQL poll every
    ``poll_interval_seconds``) -> release runs. A tick that finds nothing watches the inbox for
    ``wait_for_events_s`` (keep it under the daemon's interval between ticks)."""
    overlap_ms = settings.resolution_overlap_s * 1000

    @dg.sensor(name="acumatica_jira_resolutions", job=job, minimum_interval_seconds=minimum_interval_seconds,
               required_resource_keys={"jira", "ledger"}, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Requests acumatica_jira_release runs for Jira issues resolved since the last tick "
                           "(webhooks in the inbox every tick, and a JQL poll on the resolution date every "
                           f"{poll_interval_seconds:g} s).")  # fmt: skip
    def resolutions(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = ResolutionCursor.load(context.cursor)
        now = datetime.now(UTC)
        watermark = cursor.resolved_ms if cursor.resolved_ms is not None else _ms(now - lookback)
        poll = poll_due(cursor.polled_at, now, poll_interval_seconds)
        with context.resources.ledger.open() as ledger:
            events = ledger.inbox_after(cursor.inbox, INBOX_BATCH, system="jira", unprocessed_only=False)
            polled: dict[str, int] = {}
            if poll:
                with context.resources.jira.client() as client:
                    polled = dict(_polled(client, settings, max(0, watermark - overlap_ms)))
            hinted = dict(_hinted(events, settings))
            fresh = _fresh(ledger, polled | hinted, cursor)
            stranded = _stranded(ledger, timedelta(seconds=settings.action_window_s), now)
            if not fresh and not stranded and wait_for_events_s > 0:
                hinted |= _watch_for_hints(ledger, events, cursor.inbox, wait_for_events_s, settings)
                fresh = _fresh(ledger, polled | hinted, cursor)
        # Only the poll moves the watermark: a webhook may report a resolution the index does not show yet.
        new_watermark = max([watermark, *polled.values()])
        requested = {i: ms for i, ms in {**cursor.requested, **fresh}.items() if ms >= new_watermark - overlap_ms}
        requests = [dg.RunRequest(run_key=key, run_config=release_run_config(op_name, [issue_id]),
                                  tags={"ml_connector/trigger": "stranded_action"})
                    for issue_id, key in stranded]  # fmt: skip
        # What a webhook reported takes the fast lane, a few issues at a time; what only the poll found
        # (a dropped webhook, a backlog after downtime) waits its turn in the queue.
        by_webhook = {i: ms for i, ms in fresh.items() if hinted.get(i) == ms}
        by_poll = {i: ms for i, ms in fresh.items() if i not in by_webhook}
        for batch, lane in ((by_webhook, webhook_run_tags()), (by_poll, {})):
            if batch:
                requests.append(dg.RunRequest(run_key=_batch_key(batch), run_config=release_run_config(op_name, batch),
                                              tags={"ml_connector/trigger": "jira_resolution", **lane}))
        next_cursor = ResolutionCursor(inbox=events[-1].id if events else cursor.inbox, resolved_ms=new_watermark,
                                       polled_at=now.timestamp() if poll else cursor.polled_at,
                                       requested=requested)  # fmt: skip
        if not requests:
            return dg.SensorResult(skip_reason="no new resolutions", cursor=next_cursor.model_dump_json())
        return dg.SensorResult(run_requests=requests, cursor=next_cursor.model_dump_json())

    return resolutions
