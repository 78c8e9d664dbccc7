"""Jira's dynamic webhooks, kept alive: ``jira/webhook_registration``, its expiry check and schedule.

Jira drops a dynamic webhook 30 days after it was registered or last refreshed. A daily schedule
materializes ``jira/webhook_registration``, whose op calls :meth:`JiraClient.ensure_webhook`: it
lists the app's webhooks and refreshes the matching one, creating it only when none exists, so
restarts and re-runs never register a second one. Every outcome (id, expiry, success or failure)
goes into the ledger, so health is known between runs and to other processes.

A failed refresh records ``refresh_failed``, reports the ``webhook_expiry_ahead`` check as failed
(severity ERROR) and fails the run, which the run-failure alert sensor reports. Nothing is lost
meanwhile: webhooks are a hint, polling is the guarantee. The Visma poll sensors run whatever the
webhooks' state, so they are the fallback that covers every change; :func:`jira_webhooks_healthy`
lets a sensor see whether it is currently the only path.
"""

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import dagster as dg
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from ml_connector_dagster.config import JiraWebhookSettings, VismaJiraFlow
from ml_connector_dagster.core.http import ApiError, redact
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.run_tags import destination_tags
from ml_connector_dagster.systems.jira.client import JiraClient
from ml_connector_dagster.systems.jira.resource import JiraResource

__all__ = [
    "CHECK_NAME",
    "GROUP",
    "REGISTRATION_KEY",
    "STATE_KEY",
    "WebhookRegistrationState",
    "build_webhook_refresh_schedule",
    "build_webhook_registration",
    "jira_webhooks_healthy",
    "load_registration_state",
    "webhook_jql_filter",
]

GROUP = "visma_jira"
POOL = "jira_api"
REGISTRATION_KEY = dg.AssetKey(["jira", "webhook_registration"])
CHECK_NAME = "webhook_expiry_ahead"
CHECK_KEY = dg.AssetCheckKey(REGISTRATION_KEY, CHECK_NAME)
STATE_KEY = "jira.webhook_registration"
DEFAULT_REFRESH_AHEAD = timedelta(days=7)
FALLBACK = "Visma poll sensors (lastModifiedDateTime): they always run, so polling covers every change"
_ERROR_CHARS = 500

Outcome = Literal["registered", "refreshed", "refresh_failed"]


class WebhookRegistrationState(BaseModel):
    """What the ledger remembers of the last registration attempt (``STATE_KEY``).

    On a failure ``webhook_id`` and ``expires_at`` keep the last known good values: the webhook
    may still live until then.
    """

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    attempted_at: AwareDatetime
    webhook_id: int | None = None
    expires_at: AwareDatetime | None = None
    refreshed_at: AwareDatetime | None = None
    error: str | None = None

    def days_left(self, now: datetime) -> float | None:
        """Days until Jira drops the webhook (negative once past), or None when never registered."""
        if self.expires_at is None:
            return None
        return round((self.expires_at - now).total_seconds() / 86400, 2)

    def healthy(self, refresh_ahead: timedelta, now: datetime) -> bool:
        """The last attempt succeeded and the webhook outlives ``refresh_ahead``."""
        return (
            self.outcome != "refresh_failed"
            and self.expires_at is not None
            and self.expires_at - now > refresh_ahead
        )


def load_registration_state(ledger: Ledger) -> WebhookRegistrationState | None:
    """The recorded registration, or None when there is none (or it is unreadable)."""
    raw = ledger.get_state(STATE_KEY)
    if raw is None:
        return None
    try:
        return WebhookRegistrationState.model_validate_json(raw)
    except ValidationError:
        return None  # written by an incompatible version: the next refresh rewrites it


def jira_webhooks_healthy(
    ledger: Ledger, *, refresh_ahead: timedelta = DEFAULT_REFRESH_AHEAD, now: datetime | None = None
) -> bool:
    """Whether Jira's webhook is registered, was last refreshed successfully, and outlives ``refresh_ahead``.

    When False, Jira's notifications may stop at any moment and polling is the only path.
    """
    state = load_registration_state(ledger)
    return state is not None and state.healthy(refresh_ahead, now or datetime.now(UTC))


def webhook_jql_filter(flow: VismaJiraFlow) -> str:
    """The configured JQL filter, else the flow's project (Jira refuses unbounded webhook filters)."""
    return flow.jira_webhooks.jql_filter or f"project = {flow.project_key}"


def _expiry_check(
    state: WebhookRegistrationState | None, refresh_ahead: timedelta, now: datetime
) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"refresh_ahead_days": refresh_ahead.days, "fallback": FALLBACK}
    if state is None:
        description = "No Jira webhook is registered yet; polling covers every change until one is."
        return dg.AssetCheckResult(
            check_name=CHECK_NAME, asset_key=REGISTRATION_KEY, passed=False,
            severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=metadata,
        )  # fmt: skip
    metadata["outcome"] = state.outcome
    metadata["attempted_at"] = dg.MetadataValue.timestamp(state.attempted_at)
    if state.webhook_id is not None:
        metadata["webhook_id"] = state.webhook_id
    if state.expires_at is not None:
        metadata["expires_at"] = dg.MetadataValue.timestamp(state.expires_at)
        metadata["days_left"] = state.days_left(now)
    if state.error:
        metadata["error"] = state.error
    passed = state.healthy(refresh_ahead, now)
    if passed:
        description = f"Jira webhook {state.webhook_id} lives {state.days_left(now)} more days."
    elif state.outcome == "refresh_failed":
        description = (
            f"The Jira webhook refresh failed ({state.error}); "
            "it may lapse, and polling is covering every change meanwhile."
        )
    else:
        description = (
            f"The Jira webhook expires in {state.days_left(now)} days, within the "
            f"{refresh_ahead.days}-day margin; polling is covering every change."
        )
    return dg.AssetCheckResult(
        check_name=CHECK_NAME, asset_key=REGISTRATION_KEY, passed=passed,
        severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=metadata,
    )  # fmt: skip


def _error_summary(exc: BaseException, jira: JiraResource) -> str:
    secrets = [s for s in (jira.client_secret, jira.refresh_token, jira.api_token, jira.db_url) if s]
    return redact(f"{type(exc).__name__}: {exc}", secrets)[:_ERROR_CHARS]


def _forget_replaced(
    context: dg.AssetExecutionContext, client: JiraClient, previous: int | None, current: int
) -> None:
    """Delete our previous registration when the configuration moved to another one (Jira allows 5 per app)."""
    if previous is None or previous == current:
        return
    try:
        client.delete_webhooks([previous])
        context.log.info(f"jira: the configuration changed; deleted the previous webhook {previous}")
    except ApiError as exc:  # gone already (expired), or Jira refuses: harmless either way
        context.log.warning(f"jira: could not delete the previous webhook {previous}: {exc}")


def build_webhook_registration(settings: JiraWebhookSettings, jql_filter: str) -> dg.AssetsDefinition:
    """``jira/webhook_registration`` with its ``webhook_expiry_ahead`` check.

    Materializing it registers or refreshes the webhook; selecting only the check re-evaluates the
    recorded expiry without calling Jira.
    """
    url = str(settings.receiver_url)
    events = list(settings.events)
    refresh_ahead = timedelta(days=settings.refresh_ahead_days)
    check_spec = dg.AssetCheckSpec(
        CHECK_NAME, asset=REGISTRATION_KEY, blocking=False,
        description=f"Jira's webhook exists and expires more than {settings.refresh_ahead_days} days ahead, "
                    "and its last refresh succeeded. When it fails, polling is the only path for changes.",
    )  # fmt: skip
    spec = dg.AssetSpec(
        REGISTRATION_KEY, group_name=GROUP, kinds={"jira"},
        description=f"The dynamic Jira webhook delivering {', '.join(events)} for `{jql_filter}` to {url}: "
                    "registered once (never twice, whatever the restarts), refreshed before Jira's 30-day "
                    f"expiry. A failed refresh fails the run and raises an alert; meanwhile the {FALLBACK}.",
    )  # fmt: skip

    @dg.multi_asset(
        specs=[spec], check_specs=[check_spec], can_subset=True, pool=POOL, name="jira_webhook_registration"
    )
    def jira_webhook_registration(
        context: dg.AssetExecutionContext, jira: JiraResource, ledger: LedgerResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with ledger.open() as opened:
            if REGISTRATION_KEY not in context.selected_asset_keys:
                yield _expiry_check(load_registration_state(opened), refresh_ahead, datetime.now(UTC))
                return
            previous = load_registration_state(opened)
            attempted_at = datetime.now(UTC)
            try:
                with jira.client() as client:
                    webhook_id, expires_at = client.ensure_webhook(url, events, jql_filter)
                    _forget_replaced(context, client, previous.webhook_id if previous else None, webhook_id)
            except Exception as exc:
                error = _error_summary(exc, jira)
                failed = WebhookRegistrationState(
                    outcome="refresh_failed", attempted_at=attempted_at, error=error,
                    webhook_id=previous.webhook_id if previous else None,
                    expires_at=previous.expires_at if previous else None,
                    refreshed_at=previous.refreshed_at if previous else None,
                )  # fmt: skip
                opened.set_state(STATE_KEY, failed.model_dump_json())
                context.log.error(
                    f"jira: the webhook refresh failed ({error}); polling covers every change meanwhile"
                )
                if CHECK_KEY in context.selected_asset_check_keys:
                    yield _expiry_check(failed, refresh_ahead, attempted_at)
                raise dg.Failure(
                    description=f"Jira webhook refresh failed: {error}",
                    metadata=_metadata(failed, attempted_at, url, jql_filter),
                ) from exc
            outcome: Outcome = "refreshed" if previous and previous.webhook_id == webhook_id else "registered"
            state = WebhookRegistrationState(
                outcome=outcome, attempted_at=attempted_at, webhook_id=webhook_id,
                expires_at=expires_at, refreshed_at=attempted_at,
            )  # fmt: skip
            opened.set_state(STATE_KEY, state.model_dump_json())
        context.log.info(f"jira: webhook {webhook_id} {outcome}, expires {expires_at.isoformat()}")
        yield dg.MaterializeResult(
            asset_key=REGISTRATION_KEY, metadata=_metadata(state, attempted_at, url, jql_filter)
        )
        if CHECK_KEY in context.selected_asset_check_keys:
            yield _expiry_check(state, refresh_ahead, attempted_at)

    return jira_webhook_registration


def _metadata(state: WebhookRegistrationState, now: datetime, url: str, jql_filter: str) -> Mapping[str, Any]:
    metadata: dict[str, Any] = {
        "outcome": state.outcome, "receiver_url": dg.MetadataValue.url(url), "jql_filter": jql_filter,
        "fallback": FALLBACK,
    }  # fmt: skip
    if state.webhook_id is not None:
        metadata["webhook_id"] = state.webhook_id
    if state.expires_at is not None:
        metadata["expires_at"] = dg.MetadataValue.timestamp(state.expires_at)
        metadata["days_left"] = state.days_left(now)
    return metadata


def build_webhook_refresh_schedule(settings: JiraWebhookSettings) -> dg.ScheduleDefinition:
    """``jira_webhook_refresh_schedule``: materializes the registration (and its check), on by default."""
    job = dg.define_asset_job(
        "jira_webhook_refresh", selection=dg.AssetSelection.assets(REGISTRATION_KEY),
        description="Registers or refreshes Jira's dynamic webhook and checks its expiry.",
        tags=destination_tags(["jira"]),
    )  # fmt: skip
    return dg.ScheduleDefinition(
        name="jira_webhook_refresh_schedule", job=job, cron_schedule=settings.refresh_cron,
        execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Refreshes Jira's webhook well before its 30-day expiry; a failure fails the run (and alerts).",
    )  # fmt: skip
