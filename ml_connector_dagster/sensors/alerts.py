"""Run-failure alerts: every failed run of this code location is logged at ERROR and, when an alert
webhook is configured, POSTed there as a small JSON document (Slack- and Teams-friendly ``text``).

The alert carries the run id, the job, a short error summary and a link to the run in the Dagster
UI; never a secret. Every value of a credential variable named in connector.yaml, and the alert URL
itself (Slack's carries a token), is masked by :func:`~ml_connector_dagster.core.http.redact`
before anything leaves the process or reaches the log.
"""

import os
from collections.abc import Sequence

import dagster as dg
import httpx
from pydantic import BaseModel

from ml_connector_dagster.config import AlertSettings, ConnectorConfig
from ml_connector_dagster.core.http import (
    RetryPolicy,
    build_http_client,
    raise_for_api_error,
    redact,
    retry_safe,
)

__all__ = ["RunFailureAlert", "build_run_failure_alert_sensor", "failure_summary", "secret_env_names"]

SYSTEM = "alerts"
SENSOR_NAME = "run_failure_alerts"
_SUMMARY_CHARS = 1500
_STEPS_SHOWN = 3
_TIMEOUT = httpx.Timeout(10.0)
_RETRY = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=5.0)


class RunFailureAlert(BaseModel):
    """The JSON an alert webhook receives."""

    run_id: str
    job: str
    error: str
    url: str
    text: str


def secret_env_names(config: ConnectorConfig) -> list[str]:
    """The names of every environment variable connector.yaml says holds a credential (``*_env`` fields)."""
    names: list[str] = []

    def walk(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value)
            elif name.endswith("_env") and isinstance(value, str):
                names.append(value)

    walk(config)
    return sorted(set(names))


def failure_summary(context: dg.RunFailureSensorContext, secrets: Sequence[str]) -> str:
    """The run's failure message and its first failed steps' errors, redacted and bounded."""
    parts = [context.failure_event.message or "the run failed"]
    for event in context.get_step_failure_events()[:_STEPS_SHOWN]:
        error = getattr(event.step_failure_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause  # Dagster wraps the op's own exception: its message is the useful one
        message = (error.message if error is not None else event.message) or ""
        parts.append(f"{event.step_key}: {message.strip()}")
    return redact("\n".join(parts), secrets)[:_SUMMARY_CHARS]


def _post(url: str, alert: RunFailureAlert, transport: httpx.BaseTransport | None) -> None:
    # The URL is a credential: it is masked in every log line and error of this client.
    with build_http_client(
        SYSTEM, url, transport=transport, timeout=_TIMEOUT, retry=_RETRY, secrets=[url]
    ) as client:
        response = client.post(url, json=alert.model_dump(), extensions=retry_safe())
        raise_for_api_error(response, SYSTEM, [url])


def build_run_failure_alert_sensor(
    settings: AlertSettings,
    secret_env: Sequence[str] = (),
    *,
    transport: httpx.BaseTransport | None = None,
) -> dg.SensorDefinition:
    """``run_failure_alerts``: on for every job of this code location.

    ``secret_env`` names the variables whose values are masked (see :func:`secret_env_names`);
    ``transport`` lets tests receive the POST in-process. A POST that fails fails the tick, so the
    failure is visible on the sensor and the alert is not silently dropped.
    """
    ui = str(settings.dagster_ui_url).rstrip("/")

    @dg.run_failure_sensor(
        name=SENSOR_NAME, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
        description="Logs every failed run at ERROR and POSTs an alert (run, job, error, link) to "
                    f"${settings.webhook_url_env} when it is set.",
    )  # fmt: skip
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        url = os.environ.get(settings.webhook_url_env, "").strip()
        secrets = [value for name in secret_env if (value := os.environ.get(name))]
        secrets += [url] if url else []
        run = context.dagster_run
        summary = failure_summary(context, secrets)
        link = f"{ui}/runs/{run.run_id}"
        context.log.error(f"run {run.run_id} of {run.job_name} failed: {summary} ({link})")
        if not url:
            return
        alert = RunFailureAlert(
            run_id=run.run_id, job=run.job_name, error=summary, url=link,
            text=f"ml-connector: run of {run.job_name} failed. {summary.splitlines()[0]} {link}",
        )  # fmt: skip
        _post(url, alert, transport)
        context.log.info(f"alert for run {run.run_id} sent to ${settings.webhook_url_env}")

    return run_failure_alerts
