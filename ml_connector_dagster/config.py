"""``connector.yaml`` -> pydantic models: which systems are real or sandbox, where they live, which
environment variables hold their credentials, and which flows run with which mappings and filters.

The path comes from ``ML_CONNECTOR_CONFIG``; without it the shipped sandbox default is used, so a
fresh checkout needs no configuration at all. A bad file fails at load with a message that names
the offending field (``systems.visma.base_url: ...``). Credentials are never written in the file:
only the *names* of the environment variables that hold them.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

SANDBOX_CONFIG_PATH = Path(__file__).with_name("connector.sandbox.yaml")
Mode = Literal["sandbox", "real"]


class ConfigError(ValueError):
    """connector.yaml is missing, unreadable or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SandboxSettings(_Strict):
    """How the embedded sandbox is seeded and where its simulators listen."""

    host: str = "127.0.0.1"
    seed: int = 0
    size: int = Field(200, ge=1, le=5_000_000, description="Supplier invoices in the Visma simulator.")
    days: int = Field(14, ge=1, le=3650)
    ports: dict[str, int] = Field(default_factory=dict, description="Overrides of the default ports.")
    webhook_receiver_url: str | None = None


class SystemSettings(_Strict):
    """What every system has: a mode, a base URL and a shared rate budget."""

    mode: Mode = "sandbox"
    base_url: HttpUrl
    rate_per_s: float = Field(10.0, gt=0, description="Shared request budget of this system, per process.")
    burst: int = Field(10, ge=1)
    timeout_s: float = Field(30.0, gt=0)


class VismaSettings(SystemSettings):
    """Visma.net ERP: client credentials with tenant id (Visma Connect), or the legacy company header."""

    token_url: HttpUrl
    api_flavour: Literal["connect", "legacy"] = "connect"
    scope: str = "vismanet_erp_service_api:read vismanet_erp_service_api:create vismanet_erp_service_api:update"
    client_id_env: str = "VISMA_CLIENT_ID"
    client_secret_env: str = "VISMA_CLIENT_SECRET"
    tenant_id_env: str = "VISMA_TENANT_ID"
    company_id_env: str = "VISMA_COMPANY_ID"
    webhook_secret_env: str = "VISMA_WEBHOOK_SECRET"
    page_size: int = Field(500, ge=1, le=1000)
    overlap_s: int = Field(300, ge=0, description="Re-read window behind the cursor (late commits, equal timestamps).")
    partitions_start: date = Field(date(2026, 1, 1), description="First daily partition of the Visma source assets.")


class JiraSettings(SystemSettings):
    """Jira Cloud: OAuth 2.0 (3LO) with rotating refresh tokens, or API-token basic auth."""

    auth: Literal["oauth", "api_token"] = "oauth"
    auth_url: HttpUrl | None = Field(None, description="Where 3LO tokens come from (auth.atlassian.com for real).")
    site_url: HttpUrl | None = Field(None, description="For api_token auth: https://<site>.atlassian.net")
    client_id_env: str = "JIRA_CLIENT_ID"
    client_secret_env: str = "JIRA_CLIENT_SECRET"
    refresh_token_env: str = Field("JIRA_REFRESH_TOKEN", description="Seeds the vault once; the vault keeps the rotated ones.")
    email_env: str = "JIRA_EMAIL"
    api_token_env: str = "JIRA_API_TOKEN"
    webhook_secret_env: str = "JIRA_WEBHOOK_SECRET"
    cloud_id: str | None = Field(None, description="Resolved from accessible-resources when not set.")


class Systems(_Strict):
    visma: VismaSettings | None = None
    jira: JiraSettings | None = None


class VismaJiraFilters(_Strict):
    """Which Visma records deserve a Jira issue (per project)."""

    suppliers_include: list[str] = Field(default_factory=list)
    suppliers_exclude: list[str] = Field(default_factory=list)
    min_amount: float | None = None
    po_statuses: list[str] = Field(default_factory=list, description="Only POs in these statuses (empty: all).")
    exclude_internal_orders: bool = False
    internal_suppliers: list[str] = Field(
        default_factory=list, description="Supplier numbers or names of the group's own companies (intercompany)."
    )
    internal_order_types: list[str] = Field(default_factory=list, description="PO order types that are internal.")
    exclude_zero_amounts: bool = True


class JiraWebhookSettings(_Strict):
    """Jira's dynamic webhooks for a flow: registered once, refreshed on a schedule before they expire
    (Jira drops them 30 days after registration or the last refresh). Polling stays on regardless."""

    enabled: bool = True
    receiver_url: HttpUrl = Field(
        HttpUrl("http://127.0.0.1:8800/webhooks/jira"), description="Where Jira delivers: the receiver's public URL."
    )
    events: list[str] = Field(
        default_factory=lambda: ["jira:issue_updated", "jira:issue_deleted", "comment_created", "comment_updated"],
        min_length=1,
    )
    jql_filter: str | None = Field(
        None, min_length=1, description="Which issues notify (Jira refuses unbounded filters). Default: project = <project_key>."
    )
    refresh_ahead_days: int = Field(7, ge=1, le=29, description="The expiry check fails when fewer days are left.")
    refresh_cron: str = Field("0 6 * * *", description="When the registration is refreshed (cron, UTC).")


class VismaJiraFlow(_Strict):
    """Visma supplier invoices and POs -> Jira issues."""

    enabled: bool = True
    project_key: str = "FIN"
    invoice_issue_type: str = "Task"
    purchase_order_issue_type: str = "Task"
    external_id_field: str = Field("Visma ID", description="Name of the Jira text custom field holding the Visma id.")
    amount_field: str = "Amount"
    supplier_as: Literal["label", "assignee"] = "label"
    supplier_assignees: dict[str, str] = Field(default_factory=dict, description="Supplier number -> Jira accountId.")
    status_map: dict[str, str] = Field(default_factory=dict, description="Visma status -> Jira status name.")
    audit_comments: bool = True
    filters: VismaJiraFilters = Field(default_factory=VismaJiraFilters)
    po_reference_field: str | None = Field(None, description="Jira text field for the PO reference (None: description only).")
    currency_field: str | None = Field(None, description="Jira text field for the currency (None: description only).")
    initial_status: str = Field("To Do", description="The status new issues start in (no transition needed).")
    consistency_window_s: float = Field(
        300, ge=0, description="How long after an unanswered create Jira's search may still miss the issue; "
        "within it a record is looked up again instead of created again.",
    )
    op_retries: int = Field(3, ge=0, le=20, description="Retries of each plan/push step (exponential backoff, jitter).")
    op_retry_delay_s: float = Field(5.0, ge=0, description="First retry delay of a plan/push step.")
    jira_webhooks: JiraWebhookSettings = Field(default_factory=JiraWebhookSettings)


class Flows(_Strict):
    visma_jira: VismaJiraFlow | None = None


class AcumaticaWebhookSettings(_Strict):
    """Acumatica push notifications: one static header configured on the destination (no HMAC)."""

    header_name: str = Field("X-ML-Connector-Token", min_length=1)
    header_value_env: str = "ACUMATICA_WEBHOOK_TOKEN"
    query_entities: dict[str, str] = Field(
        default_factory=dict, description="Push-notification query name -> entity (default: its snake_case)."
    )


class AsanaWebhookSettings(_Strict):
    """Asana: per-webhook secrets arrive by handshake and live in the vault; only the window is set here."""

    handshake_ttl_s: int = Field(60, ge=5, le=600, description="How long a registration awaits its handshake.")


class MondayWebhookSettings(_Strict):
    """Monday.com app webhooks: a JWT in Authorization signed with the app's signing secret."""

    signing_secret_env: str = "MONDAY_SIGNING_SECRET"


class WebhookSettings(_Strict):
    """The webhook receiver (``ml-connector webhooks serve``). Visma's and Jira's secrets are named
    in their system settings (``webhook_secret_env``); Jira app JWTs are signed with its client secret."""

    host: str = "127.0.0.1"
    port: int = Field(8800, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    timestamp_tolerance_s: int = Field(
        300, ge=1, le=86_400, description="Oldest accepted delivery timestamp / JWT iat, in seconds."
    )
    clock_skew_s: int = Field(30, ge=0, le=600, description="Leeway for JWT exp/iat against our clock.")
    acumatica: AcumaticaWebhookSettings = Field(default_factory=AcumaticaWebhookSettings)
    asana: AsanaWebhookSettings = Field(default_factory=AsanaWebhookSettings)
    monday: MondayWebhookSettings = Field(default_factory=MondayWebhookSettings)


class AlertSettings(_Strict):
    """Where failed runs are reported beyond the Dagster UI: a JSON POST to a webhook (Slack, Teams...)."""

    webhook_url_env: str = Field(
        "ML_CONNECTOR_ALERT_WEBHOOK_URL", description="Env var holding the alert webhook URL (unset: log only)."
    )
    dagster_ui_url: HttpUrl = Field(HttpUrl("http://127.0.0.1:3000"), description="Base of the run links in alerts.")


class ConnectorConfig(_Strict):
    """The whole of connector.yaml."""

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    systems: Systems = Field(default_factory=Systems)
    flows: Flows = Field(default_factory=Flows)
    poll_interval_s: int = Field(60, ge=5, description="Minimum seconds between poll sensor ticks.")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("systems")
    @classmethod
    def _at_least_one_system(cls, systems: Systems) -> Systems:
        if not any(getattr(systems, name) for name in Systems.model_fields):
            raise ValueError("no system is configured")
        return systems

    def system_mode(self, name: str) -> Mode | None:
        settings = getattr(self.systems, name, None)
        return None if settings is None else settings.mode


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source} is invalid:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "connector.yaml") -> ConnectorConfig:
    """Validate an already-parsed mapping; raise :class:`ConfigError` naming every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ConnectorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> ConnectorConfig:
    """Load connector.yaml from ``path``, else ``$ML_CONNECTOR_CONFIG``, else the shipped sandbox default."""
    chosen = Path(path or os.environ.get("ML_CONNECTOR_CONFIG") or SANDBOX_CONFIG_PATH)
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read connector config {chosen}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen} is not valid YAML: {exc}") from None
    return parse_config(data, str(chosen))


@lru_cache(maxsize=1)
def active_config() -> ConnectorConfig:
    """The configuration this process runs with (cached: read once per process)."""
    return load_config()


def connector_home() -> Path:
    """Where the connector keeps local state: ML_CONNECTOR_HOME, else DAGSTER_HOME, else ./.dagster."""
    home = os.environ.get("ML_CONNECTOR_HOME") or os.environ.get("DAGSTER_HOME") or ".dagster"
    path = Path(home).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
