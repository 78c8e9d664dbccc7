"""Specification of Jira's webhook registration: idempotent, refreshed before expiry, loud when it fails.

Over the wire against a served Jira simulator; credentials reach the resource through the same
environment variables as in production, and the ledger is a temporary SQLite file.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.config import ConnectorConfig, JiraWebhookSettings, parse_config
from ml_connector_dagster.core import http
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.resources import LedgerResource
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import DEMO_APP_SECRET, DEMO_CLIENT_ID, JiraSimulator
from ml_connector_dagster.sandbox.serve import ServedSimulator, served
from ml_connector_dagster.sensors.jira_webhooks import (
    CHECK_NAME,
    REGISTRATION_KEY,
    STATE_KEY,
    WebhookRegistrationState,
    build_webhook_registration,
    jira_webhooks_healthy,
    load_registration_state,
    webhook_jql_filter,
)
from ml_connector_dagster.systems.jira.resource import JiraResource

RECEIVER = "http://127.0.0.1:8800/webhooks/jira"
CHECK_KEY = dg.AssetCheckKey(REGISTRATION_KEY, CHECK_NAME)
DAY = timedelta(days=1)


class Sandbox:
    """A served Jira simulator, the ledger URL, and what is needed to run the registration asset."""

    def __init__(self, sim: JiraSimulator, server: ServedSimulator, ledger_url: str) -> None:
        self.sim = sim
        self.server = server
        self.ledger_url = ledger_url
        self.instance = dg.DagsterInstance.ephemeral()

    def config(self, **webhooks: Any) -> ConnectorConfig:
        return parse_config({
            "systems": {"jira": {"mode": "sandbox", "base_url": self.server.base_url, "auth_url": self.server.base_url,
                                 "rate_per_s": 1000, "burst": 1000}},
            "flows": {"visma_jira": {"project_key": "FIN", "jira_webhooks": webhooks}},
        })  # fmt: skip

    def materialize(self, *, restart: bool = False, **webhooks: Any) -> dg.ExecuteInProcessResult:
        """One scheduled refresh; ``restart`` builds everything anew, as a new process would."""
        config = self.config(**webhooks)
        flow, jira = config.flows.visma_jira, config.systems.jira
        assert flow is not None and jira is not None
        if restart:
            self.instance = dg.DagsterInstance.ephemeral()
        asset = build_webhook_registration(flow.jira_webhooks, webhook_jql_filter(flow))
        resources = {"jira": JiraResource.from_settings(jira), "ledger": LedgerResource.from_env()}
        return dg.materialize([asset], resources=resources, instance=self.instance, raise_on_error=False)

    def check_only(self) -> dg.ExecuteInProcessResult:
        config = self.config()
        flow, jira = config.flows.visma_jira, config.systems.jira
        assert flow is not None and jira is not None
        asset = build_webhook_registration(flow.jira_webhooks, webhook_jql_filter(flow))
        resources = {"jira": JiraResource.from_settings(jira), "ledger": LedgerResource.from_env()}
        return dg.materialize(
            [asset],
            resources=resources,
            instance=self.instance,
            raise_on_error=False,
            selection=dg.AssetSelection.checks(CHECK_KEY),
        )

    def webhooks(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.server.base_url}/_sandbox/state", timeout=10).json()["webhooks"]

    def requests(self, method: str, suffix: str) -> list[Any]:
        return [r for r in self.sim.requests if r.method == method and r.path.endswith(suffix)]

    def state(self) -> WebhookRegistrationState | None:
        with Ledger.open(self.ledger_url) as ledger:
            return load_registration_state(ledger)

    def record(self, state: WebhookRegistrationState) -> None:
        with Ledger.open(self.ledger_url) as ledger:
            ledger.set_state(STATE_KEY, state.model_dump_json())


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    sim = JiraSimulator(seed=3, seed_issues=0)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for name, value in {
        "JIRA_CLIENT_ID": DEMO_CLIENT_ID, "JIRA_CLIENT_SECRET": DEMO_APP_SECRET,
        "JIRA_REFRESH_TOKEN": sim.demo_refresh_token, "ML_CONNECTOR_DB_URL": ledger_url,
        "ML_CONNECTOR_HOME": str(tmp_path),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
    monkeypatch.setattr(http, "default_sleep", lambda seconds: None)  # retries without the waits
    try:
        with served(sim) as server:
            yield Sandbox(sim, server, ledger_url)
    finally:
        sim.close()


def check_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_NAME]
    return evaluation


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("jira_webhook_registration")
    return {name: value.value for name, value in materialization.metadata.items()}


def fail_refreshes(sim: JiraSimulator) -> None:
    sim.set_faults(FaultPlan(error_rate=1.0, error_status=503, paths=[r"/webhook/refresh$"], methods=["PUT"]))


# -- idempotent registration ----------------------------------------------------------------------


def test_refreshing_again_and_after_a_restart_leaves_exactly_one_webhook(sandbox: Sandbox) -> None:
    assert sandbox.materialize().success
    assert sandbox.materialize().success
    assert sandbox.materialize(restart=True).success

    [webhook] = sandbox.webhooks()
    assert webhook["url"] == RECEIVER
    assert len(sandbox.requests("POST", "/rest/api/3/webhook")) == 1


def test_the_first_run_registers_and_later_runs_refresh_the_same_webhook(sandbox: Sandbox) -> None:
    sandbox.materialize()
    first = sandbox.state()
    sandbox.materialize(restart=True)
    later = sandbox.state()

    assert first is not None and later is not None
    assert (first.outcome, later.outcome) == ("registered", "refreshed")
    assert later.webhook_id == first.webhook_id == sandbox.webhooks()[0]["id"]


def test_the_materialization_shows_the_webhook_its_expiry_and_the_days_left(sandbox: Sandbox) -> None:
    metadata = materialization_metadata(sandbox.materialize())

    state = sandbox.state()
    assert state is not None and state.expires_at is not None
    assert metadata["webhook_id"] == state.webhook_id
    assert metadata["expires_at"] == pytest.approx(state.expires_at.timestamp())
    assert 29.9 < metadata["days_left"] <= 30
    assert metadata["jql_filter"] == "project = FIN"
    assert "poll" in metadata["fallback"]


def test_a_changed_receiver_url_replaces_the_previous_registration(sandbox: Sandbox) -> None:
    sandbox.materialize()
    sandbox.materialize(receiver_url="https://connector.example.test/webhooks/jira")

    assert [w["url"] for w in sandbox.webhooks()] == ["https://connector.example.test/webhooks/jira"]


# -- refresh before expiry ------------------------------------------------------------------------


def test_a_refresh_25_days_later_extends_the_expiry_by_as_much(sandbox: Sandbox) -> None:
    sandbox.materialize()
    first = sandbox.state()
    sandbox.sim.clock.advance(25 * 86400)

    result = sandbox.materialize()

    later = sandbox.state()
    assert first is not None and first.expires_at is not None
    assert later is not None and later.expires_at is not None
    assert later.expires_at - first.expires_at >= timedelta(days=25)
    assert sandbox.webhooks()[0]["id"] == first.webhook_id
    assert check_evaluation(result).passed


def test_a_webhook_jira_already_dropped_is_registered_again(sandbox: Sandbox) -> None:
    sandbox.materialize()
    sandbox.sim.clock.advance(31 * 86400)  # nobody refreshed: Jira dropped it

    assert sandbox.materialize().success

    state = sandbox.state()
    assert len(sandbox.webhooks()) == 1
    assert state is not None and state.outcome == "registered"


# -- a failed refresh -----------------------------------------------------------------------------


def test_a_failed_refresh_fails_the_run_and_records_refresh_failed(sandbox: Sandbox) -> None:
    sandbox.materialize()
    before = sandbox.state()
    fail_refreshes(sandbox.sim)

    result = sandbox.materialize()

    state = sandbox.state()
    assert not result.success
    assert state is not None and before is not None
    assert state.outcome == "refresh_failed"
    assert "503" in (state.error or "")
    assert (state.webhook_id, state.expires_at) == (
        before.webhook_id,
        before.expires_at,
    )  # may still live until then


def test_a_failed_refresh_fails_the_expiry_check_with_error_severity(sandbox: Sandbox) -> None:
    sandbox.materialize()
    fail_refreshes(sandbox.sim)

    evaluation = check_evaluation(sandbox.materialize())

    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "polling" in (evaluation.description or "")


def test_a_revoked_grant_fails_the_refresh_without_leaking_a_secret(sandbox: Sandbox) -> None:
    sandbox.materialize()
    for token in list(sandbox.sim.tokens.values()):
        if token.kind == "refresh":
            sandbox.sim.revoke_token(token.value)

    result = sandbox.materialize()

    state = sandbox.state()
    assert not result.success
    assert state is not None and state.outcome == "refresh_failed" and state.error
    assert "invalid_grant" in state.error
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    for secret in (DEMO_APP_SECRET, *(token.value for token in sandbox.sim.tokens.values())):
        assert secret not in state.error
        assert secret not in failure.message


def test_the_check_passes_again_after_a_successful_refresh(sandbox: Sandbox) -> None:
    sandbox.materialize()
    fail_refreshes(sandbox.sim)
    sandbox.materialize()
    sandbox.sim.clear_faults()

    result = sandbox.materialize()

    assert result.success
    assert check_evaluation(result).passed
    state = sandbox.state()
    assert state is not None and state.outcome == "refreshed"


# -- the check on its own -------------------------------------------------------------------------


def test_the_check_alone_fails_when_the_expiry_is_within_the_margin_without_calling_jira(
    sandbox: Sandbox,
) -> None:
    now = datetime.now(UTC)
    sandbox.record(
        WebhookRegistrationState(
            outcome="refreshed",
            attempted_at=now - 25 * DAY,
            webhook_id=1,
            expires_at=now + 3 * DAY,
            refreshed_at=now - 25 * DAY,
        )
    )

    evaluation = check_evaluation(sandbox.check_only())

    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert sandbox.sim.requests == []


def test_the_check_alone_fails_when_no_webhook_was_ever_registered(sandbox: Sandbox) -> None:
    assert not check_evaluation(sandbox.check_only()).passed


def test_the_check_alone_passes_after_a_registration(sandbox: Sandbox) -> None:
    sandbox.materialize()

    assert check_evaluation(sandbox.check_only()).passed


# -- health, for sensors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "days_left", "healthy"),
    [
        ("registered", 30, True),
        ("refreshed", 8, True),
        ("refreshed", 6, False),
        ("refresh_failed", 29, False),
    ],
)
def test_webhooks_are_healthy_only_after_a_success_with_more_than_the_margin_left(
    tmp_path: Path, outcome: Any, days_left: int, healthy: bool
) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    state = WebhookRegistrationState(
        outcome=outcome, attempted_at=now, webhook_id=1, expires_at=now + days_left * DAY
    )
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        ledger.set_state(STATE_KEY, state.model_dump_json())

        assert jira_webhooks_healthy(ledger, refresh_ahead=7 * DAY, now=now) is healthy


def test_webhooks_never_registered_are_not_healthy(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        assert not jira_webhooks_healthy(ledger)


# -- configuration and the code location ----------------------------------------------------------


def test_the_default_filter_is_bounded_to_the_flow_project() -> None:
    config = parse_config(
        {
            "systems": {"jira": {"base_url": "http://127.0.0.1:8804"}},
            "flows": {"visma_jira": {"project_key": "AP"}},
        }
    )
    assert config.flows.visma_jira is not None

    assert webhook_jql_filter(config.flows.visma_jira) == "project = AP"


def test_the_refresh_ahead_margin_must_leave_room_before_the_30_day_expiry() -> None:
    with pytest.raises(ValueError, match="refresh_ahead_days"):
        JiraWebhookSettings(refresh_ahead_days=30)


def test_the_code_location_refreshes_daily_with_the_schedule_on_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    config = parse_config(
        {"systems": {"jira": {"base_url": "http://127.0.0.1:8804"}}, "flows": {"visma_jira": {}}}
    )

    defs = build_definitions(config)

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def("jira_webhook_refresh_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "0 6 * * *"
    job = repository.get_job(schedule.job_name)
    assert job.asset_layer.asset_graph.get_all_asset_keys() >= {REGISTRATION_KEY}
    assert CHECK_KEY in job.asset_layer.asset_graph.asset_check_keys


def test_without_the_flow_no_webhook_is_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    config = parse_config({"systems": {"jira": {"base_url": "http://127.0.0.1:8804"}}})

    defs = build_definitions(config)

    assert defs.get_repository_def().schedule_defs == []
    assert not defs.get_repository_def().asset_graph.has(REGISTRATION_KEY)
