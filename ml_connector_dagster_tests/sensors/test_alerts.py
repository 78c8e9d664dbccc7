"""Specification of the run-failure alerts: every failed run is reported, and no secret goes with it."""

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.config import AlertSettings, parse_config
from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import ApiError
from ml_connector_dagster.sensors.alerts import build_run_failure_alert_sensor, secret_env_names

ALERT_URL_ENV = "ML_CONNECTOR_ALERT_WEBHOOK_URL"
ALERT_URL = "https://hooks.example.test/services/T0001/B0002/alert-url-token-4f9c2e"
CLIENT_SECRET = "jira-client-secret-9b1e77d3"
UI = "http://dagster.example.test:3000"


@dg.op
def push_to_jira() -> None:
    # A careless error message: it quotes a credential. The alert must not.
    raise RuntimeError(f"Jira refused client_secret {CLIENT_SECRET} for the bulk create")


@dg.job
def visma_jira_push() -> None:
    push_to_jira()


class Receiver:
    """An alert webhook, in process: records what it is sent and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json={"ok": self.status < 400})

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIRA_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setattr(http, "default_sleep", lambda seconds: None)


def failed_run_context(instance: dg.DagsterInstance) -> dg.RunFailureSensorContext:
    result = visma_jira_push.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=run,
    ).for_run_failure()  # fmt: skip


def alert_sensor(receiver: Receiver) -> dg.SensorDefinition:
    settings = AlertSettings(dagster_ui_url=UI)
    return build_run_failure_alert_sensor(
        settings, ["JIRA_CLIENT_SECRET", ALERT_URL_ENV], transport=receiver.transport
    )


def test_a_failed_run_is_posted_with_its_id_job_error_and_ui_link(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALERT_URL_ENV, ALERT_URL)
    receiver = Receiver()
    context = failed_run_context(instance)

    alert_sensor(receiver)(context)

    [body] = receiver.bodies()
    run_id = context.dagster_run.run_id
    assert str(receiver.requests[0].url) == ALERT_URL
    assert (body["run_id"], body["job"], body["url"]) == (run_id, "visma_jira_push", f"{UI}/runs/{run_id}")
    assert "push_to_jira" in body["error"] and "bulk create" in body["error"]
    assert body["url"] in body["text"]


def test_the_alert_carries_no_secret(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALERT_URL_ENV, ALERT_URL)
    receiver = Receiver()

    alert_sensor(receiver)(failed_run_context(instance))

    sent = receiver.requests[0].content.decode()
    assert CLIENT_SECRET not in sent
    assert ALERT_URL not in sent
    assert "***" in json.loads(sent)["error"]


def test_without_an_alert_url_the_failure_is_only_logged(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALERT_URL_ENV, raising=False)
    receiver = Receiver()

    alert_sensor(receiver)(failed_run_context(instance))

    assert receiver.requests == []


def test_an_alert_the_webhook_refuses_fails_the_tick_without_naming_the_url(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALERT_URL_ENV, ALERT_URL)
    receiver = Receiver(status=500)

    with pytest.raises(ApiError) as raised:
        alert_sensor(receiver)(failed_run_context(instance))

    assert len(receiver.requests) == 3  # retried: a duplicate alert beats a lost one
    assert ALERT_URL not in str(raised.value)


def test_every_credential_variable_of_the_config_is_masked() -> None:
    config = parse_config({"systems": {"jira": {"base_url": "http://127.0.0.1:8804"}}})

    names = secret_env_names(config)

    assert {"JIRA_CLIENT_SECRET", "JIRA_REFRESH_TOKEN", "JIRA_API_TOKEN", ALERT_URL_ENV} <= set(names)


def test_the_sensor_watches_the_code_location_and_is_on_by_default() -> None:
    sensor = build_run_failure_alert_sensor(AlertSettings())

    assert sensor.name == "run_failure_alerts"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
