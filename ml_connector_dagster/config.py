"""``connector.yaml`` -> pydantic models: which systems are real or sandbox, where they live, which
environment variables hold their credentials, and which flows run with which mappings and filters.

The path comes from ``ML_CONNECTOR_CONFIG``; without it the shipped sandbox default is used, so a
fresh checkout needs no configuration at all. A bad file fails at load with a message that names
the offending field (``systems.visma.base_url: ...``). Credentials are never written in the file:
only the *names* of the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
import string
from datetime import date, time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

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
    rate_per_s: float = Field(10.0, gt=0, description="Request budget of this system, shared by every run and process "
                              "of the deployment (per process when share_budget is false).")
    burst: int = Field(10, ge=1)
    share_budget: bool = Field(True, description="Keep the budget in the ledger's database, so that runs calling "
                               "this system at once spend it together; false: each process has its own.")
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
    op_retries: int = Field(3, ge=0, le=20, description="Retries of a source asset's step (exponential backoff, jitter).")
    op_retry_delay_s: float = Field(10.0, ge=0, description="First retry delay of a source asset's step.")


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


class JaggaerPaths(_Strict):
    """J1P paths (no public contract: each customer's instance has its own). ``{name}`` placeholders
    are filled from ``path_parameters``; a record is read at ``<path>/<id>``."""

    purchase_orders: str = "/j1p/api/public/ji/v1/purchase-orders"
    invoices: str = "/j1p/api/public/ji/v1/invoices"
    vendors: str = "/j1p/api/public/ji/v1/suppliers"
    gl_accounts: str = "/j1p/api/public/ji/v1/gl-accounts"

    @field_validator("*")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError(f"{value!r} must be an absolute path without a query string")
        return value


class CxmlPartySettings(_Strict):
    """A cXML Credential: the identity and the domain it lives in."""

    domain: str = Field("NetworkID", min_length=1)
    identity: str = Field(min_length=1)


class JaggaerSettings(SystemSettings):
    """JAGGAER: J1P REST with client credentials (Keycloak realm), configured paths; cXML confirmations."""

    token_url: HttpUrl = Field(description="The realm's token endpoint: <host>/auth/realms/<realm>/protocol/openid-connect/token")
    client_id_env: str = "JAGGAER_CLIENT_ID"
    client_secret_env: str = "JAGGAER_CLIENT_SECRET"
    paths: JaggaerPaths = Field(default_factory=JaggaerPaths)
    path_parameters: dict[str, str] = Field(default_factory=dict, description="Values of the paths' {placeholders}.")
    page_size: int = Field(100, ge=1, le=1000)
    read_slices: int = Field(3, ge=1, le=8, description="A long window's read is cut into this many time slices, "
                             "walked at once under the same budget (J1P pages are small: one walk waits on round trips).")
    overlap_s: int = Field(300, ge=0, description="Re-read window behind the cursor (late commits, equal timestamps).")
    partitions_start: date = Field(date(2026, 1, 1), description="First daily partition of the JAGGAER source assets.")
    op_retries: int = Field(3, ge=0, le=20, description="Retries of a source asset's step (exponential backoff, jitter).")
    op_retry_delay_s: float = Field(10.0, ge=0, description="First retry delay of a source asset's step.")
    cxml_url: HttpUrl | None = Field(None, description="The cXML endpoint (unset: no cXML confirmations).")
    cxml_shared_secret_env: str = "JAGGAER_CXML_SHARED_SECRET"
    cxml_from: CxmlPartySettings = Field(default_factory=lambda: CxmlPartySettings(identity="ML-CONNECTOR"))
    cxml_to: CxmlPartySettings = Field(default_factory=lambda: CxmlPartySettings(identity="FJORDLYS-J1P"))
    cxml_sender: CxmlPartySettings = Field(default_factory=lambda: CxmlPartySettings(identity="ML-CONNECTOR"))
    cxml_deployment_mode: Literal["production", "test"] = "production"

    @model_validator(mode="after")
    def _placeholders_have_values(self) -> JaggaerSettings:
        for name, template in self.paths.model_dump().items():
            missing = {field for _, field, _, _ in string.Formatter().parse(template) if field} - self.path_parameters.keys()
            if missing:
                raise ValueError(f"paths.{name}: no value for {', '.join(sorted(missing))} in path_parameters")
        return self


class AcumaticaSettings(SystemSettings):
    """Acumatica: OAuth password grant on the instance's identity server, endpoint version pinned."""

    endpoint_name: str = "Default"
    endpoint_version: str = Field("24.200.001", description="Pinned in every URL; another version answers 404.")
    client_id_env: str = Field("ACUMATICA_CLIENT_ID", description="Holds <GUID>@<Tenant> of the connected application.")
    client_secret_env: str = "ACUMATICA_CLIENT_SECRET"
    username_env: str = "ACUMATICA_USERNAME"
    password_env: str = "ACUMATICA_PASSWORD"
    timezone: str = Field("Europe/Oslo", description="The Acumatica users' time zone: dates are sent as its midnight.")
    page_size: int = Field(100, ge=1, le=1000)
    overlap_s: int = Field(300, ge=0, description="Re-read window behind the cursor (late commits, equal timestamps).")
    partitions_start: date = Field(date(2026, 1, 1), description="First daily partition of the Acumatica source assets.")
    op_retries: int = Field(3, ge=0, le=20, description="Retries of a source asset's step (exponential backoff, jitter).")
    op_retry_delay_s: float = Field(10.0, ge=0, description="First retry delay of a source asset's step.")


class AsanaSettings(SystemSettings):
    """Asana: a personal access token, or OAuth 2.0 with a refresh token that does not rotate.

    OAuth reads the refresh token `ml-connector auth asana` stored in the vault; while the vault has
    none, the one in ``refresh_token_env``.
    """

    base_url: HttpUrl = Field(HttpUrl("https://app.asana.com"), description="App root: /api/1.0 and /-/oauth_token under it.")
    rate_per_s: float = Field(2.0, gt=0, description="150 requests/min per token on free plans (1,500 paid).")
    auth: Literal["pat", "oauth"] = "pat"
    pat_env: str = "ASANA_PAT"
    client_id_env: str = "ASANA_CLIENT_ID"
    client_secret_env: str = "ASANA_CLIENT_SECRET"
    refresh_token_env: str = Field("ASANA_REFRESH_TOKEN", description="Used while the vault holds none (see auth asana).")
    workspace_gid: str | None = Field(None, description="The workspace to work in (None: the token's first).")


class MondaySettings(SystemSettings):
    """monday.com: GraphQL with a token sent raw, pinned to an API version.

    ``auth: api_token``: a personal API token from ``api_token_env``. ``auth: oauth``: the OAuth app's
    access token that `ml-connector auth monday` stored in the vault (it never expires).
    """

    base_url: HttpUrl = Field(HttpUrl("https://api.monday.com"), description="API root; requests go to <base_url>/v2.")
    api_version: Literal["2026-01", "2026-10"] = Field("2026-10", description="Sent as API-Version on every request.")
    auth: Literal["api_token", "oauth"] = "api_token"
    auth_url: HttpUrl | None = Field(
        None, description="OAuth root (/oauth2/authorize, /oauth2/token). Default: https://auth.monday.com; "
        "in the sandbox, base_url (the simulator serves both).",
    )
    api_token_env: str = "MONDAY_API_TOKEN"
    client_id_env: str = "MONDAY_CLIENT_ID"
    client_secret_env: str = "MONDAY_CLIENT_SECRET"
    signing_secret_env: str = Field(
        "MONDAY_SIGNING_SECRET", description="The app's webhook signing secret (seeded in the sandbox; the receiver "
        "reads webhooks.monday.signing_secret_env).",
    )
    complexity_per_minute: int = Field(10_000_000, gt=0, description="Personal tokens 10M/min; app tokens 5M per kind.")
    max_batch: int = Field(25, ge=1, le=500, description="Most aliased writes per request (also capped by the 5M query limit).")

    def oauth_root(self) -> str:
        """Where the OAuth endpoints are: ``auth_url``, else the simulator (sandbox) or auth.monday.com."""
        if self.auth_url is not None:
            return str(self.auth_url).rstrip("/")
        return str(self.base_url).rstrip("/") if self.mode == "sandbox" else "https://auth.monday.com"


class Systems(_Strict):
    visma: VismaSettings | None = None
    jira: JiraSettings | None = None
    acumatica: AcumaticaSettings | None = None
    jaggaer: JaggaerSettings | None = None
    asana: AsanaSettings | None = None
    monday: MondaySettings | None = None


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


class AcumaticaExceptionRule(_Strict):
    """One state of an Acumatica document that needs a person, and where its Jira issue goes.

    A document matches when it is of ``entity`` and its status is one of ``statuses`` or, with
    ``unbalanced``, its control total (``Amount``) differs from its lines plus tax. The first
    matching rule names the exception.
    """

    name: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$", description="Shown on the issue: bill_on_hold ...")
    entity: Literal["bills", "purchase_orders", "payments"]
    statuses: list[str] = Field(default_factory=list, description="Document statuses that count (any of them).")
    unbalanced: bool = Field(False, description="Bills: the control total differs from the lines plus tax.")
    project_key: str | None = Field(None, description="Jira project of its issues (None: the flow's).")
    issue_type: str = "Task"
    act_on_resolve: bool = Field(
        True, description="Resolving the issue releases the bill or payment, or approves the PO, after a status "
        "check; False: the resolution is only acknowledged in a comment.",
    )

    @model_validator(mode="after")
    def _matches_something(self) -> AcumaticaExceptionRule:
        if not self.statuses and not self.unbalanced:
            raise ValueError(f"rule {self.name}: give statuses, unbalanced, or both")
        return self


def _default_exception_rules() -> list[AcumaticaExceptionRule]:
    return [
        AcumaticaExceptionRule(name="bill_unbalanced", entity="bills", unbalanced=True),
        AcumaticaExceptionRule(name="bill_on_hold", entity="bills", statuses=["On Hold"]),
        AcumaticaExceptionRule(name="po_pending_approval", entity="purchase_orders", statuses=["Pending Approval"]),
        AcumaticaExceptionRule(name="po_rejected", entity="purchase_orders", statuses=["Rejected"],
                               act_on_resolve=False),
        AcumaticaExceptionRule(name="payment_on_hold", entity="payments", statuses=["On Hold"]),
    ]


class AcumaticaJiraFlow(_Strict):
    """Acumatica documents that need attention -> Jira issues; their resolution -> Release/Approve."""

    enabled: bool = True
    project_key: str = "ACU"
    external_id_field: str = Field("External ID", description="Jira text field holding the document's Acumatica path.")
    amount_field: str = "Amount"
    currency_field: str | None = "Currency"
    vendor_field: str | None = Field("Vendor", description="Jira text field for the vendor (customer of a payment).")
    rules: list[AcumaticaExceptionRule] = Field(default_factory=_default_exception_rules, min_length=1)
    act_on_resolutions: list[str] = Field(
        default_factory=lambda: ["Done", "Fixed"], description="Jira resolutions that release/approve; any other "
        "(Won't Do, Duplicate ...) is acknowledged in a comment and changes nothing in Acumatica.",
    )
    resolution_overlap_s: int = Field(
        300, ge=0, description="The resolution poll re-reads this far behind its watermark (Jira's index lags).",
    )
    resolutions_per_tick: int = Field(200, ge=1, le=1000, description="Most resolved issues one sensor tick requests.")
    resolution_poll_s: float | None = Field(
        None, ge=0, description="Seconds between the resolution sensor's JQL polls of Jira (None: poll_interval_s); "
        "Jira's webhooks in the inbox are read every tick regardless.",
    )
    action_timeout_s: float = Field(120, gt=0, description="How long a release may run before the step gives up.")
    action_poll_s: float = Field(1.0, gt=0, description="Seconds between polls of a running release.")
    action_window_s: float = Field(
        120, ge=0, description="After a release whose answer was lost, how long a still-unreleased document is "
        "re-read (the release may yet run) before it is released again.",
    )
    consistency_window_s: float = Field(300, ge=0, description="As for visma_jira: Jira's search lag after a create.")
    op_retries: int = Field(3, ge=0, le=20)
    op_retry_delay_s: float = Field(5.0, ge=0)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AcumaticaExceptionRule]) -> list[AcumaticaExceptionRule]:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        return rules


ReferenceDirection = Literal["jaggaer_to_visma", "visma_to_jaggaer", "off"]
SHIPPED_JAGGAER_GL_TABLE = Path(__file__).with_name("mappings") / "jaggaer_gl_to_visma.csv"


class JaggaerVismaFlow(_Strict):
    """JAGGAER POs and invoices -> Visma AP, vendors and GL accounts mapped; cXML confirmations back."""

    enabled: bool = True
    vendor_table: Path | None = Field(None, description="CSV jaggaer_supplier_id,visma_supplier_number: explicit links.")
    vendor_map: dict[str, str] = Field(default_factory=dict, description="JAGGAER supplier id -> Visma supplier "
                                       "number; wins over the table.")
    vendor_id_attribute: str | None = Field("JAGGAERID", description="Visma supplier attribute holding a JAGGAER id.")
    match_by_name: bool = Field(True, description="Last resort: the normalised name, unless tax ids disagree.")
    gl_table: Path = Field(SHIPPED_JAGGAER_GL_TABLE, description="CSV jaggaer_account,visma_account,department,"
                           "cost_centre (the last two: default dimension values).")
    gl_map: dict[str, str] = Field(default_factory=dict, description="JAGGAER account -> Visma account; wins over the table.")
    vat_codes: dict[str, str] = Field(default_factory=lambda: {"25": "1", "15": "11", "12": "13", "0": "0"},
                                      description="JAGGAER line tax rate (%) -> Visma VAT code id.")
    subaccount_segments: dict[Literal["department", "cost_centre"], int] = Field(
        default_factory=lambda: {"department": 1, "cost_centre": 2}, description="Visma subaccount segment ids.")
    subaccount_dimension: str = "SUBACCOUNT"
    purchase_order_statuses: list[str] = Field(
        default_factory=lambda: ["APPROVED", "DISTRIBUTED", "PARTIALLY_RECEIVED", "RECEIVED", "CLOSED"])
    invoice_statuses: list[str] = Field(default_factory=lambda: ["APPROVED", "PAYABLE", "PAID"])
    reference_directions: dict[Literal["name", "address", "parent", "payment_terms"], ReferenceDirection] = Field(
        default_factory=lambda: {"name": "jaggaer_to_visma", "address": "jaggaer_to_visma",
                                 "parent": "jaggaer_to_visma", "payment_terms": "visma_to_jaggaer"},
        description="Which system is the master of each vendor field.")
    cxml_confirmations: bool = Field(True, description="Confirm invoice receipt and payment to JAGGAER over cXML.")
    op_retries: int = Field(3, ge=0, le=20)
    op_retry_delay_s: float = Field(5.0, ge=0)


MondayMappingMode = Literal["title", "position", "table"]
VismaMondayEntity = Literal["supplier_invoices", "purchase_orders", "customer_invoices", "gl_accounts", "dimensions"]


class MondayBoardMapping(_Strict):
    """One Visma entity's monday board, and how its Visma fields find the board's columns.

    ``title``: the column titled like the field (``Amount`` -> "Total", see the flow's field list);
    ``position``: the n-th field to the n-th column (the name and the received column left out);
    ``table``: only ``table``'s pairs. In every mode ``table`` wins: Visma field -> column id or title.
    """

    board_id: str = Field(min_length=1, pattern=r"^\d+$")
    mode: MondayMappingMode = "title"
    table: dict[str, str] = Field(default_factory=dict, description="Visma field -> column id or title.")
    group_id: str | None = Field(None, description="Group new items go to (None: the board's top group).")
    received_column: str | None = Field(
        None, description="Status column (id or title) whose received label flows back to Visma; the flow never writes it.",
    )

    @field_validator("board_id", mode="before")
    @classmethod
    def _board_id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class VismaMondayFlow(_Strict):
    """Visma documents and reference data -> items on customer-configured monday boards; receipts back."""

    enabled: bool = True
    boards: dict[VismaMondayEntity, MondayBoardMapping] = Field(default_factory=dict, description="Entity -> its board.")
    received_label: str = Field("Received", min_length=1, description="The status label that means 'received'.")
    return_path: bool = Field(True, description="A received item writes a receipt note on its Visma document.")
    create_labels_if_missing: bool = Field(True, description="Status/dropdown labels Visma needs are added to the column.")
    consistency_window_s: float = Field(
        60, ge=0, description="After an unanswered create, how long an item may stay unfound before it is created again.",
    )
    receipt_overlap_s: int = Field(300, ge=0, description="The receipt poll re-reads this far behind its watermark.")
    receipt_poll_s: float | None = Field(
        None, ge=0, description="Seconds between the receipt sensor's polls of the boards (None: poll_interval_s); "
        "monday's webhooks in the inbox are read every tick regardless.",
    )
    webhook_url: HttpUrl | None = Field(
        None, description="The receiver's public /webhooks/monday URL: the visma_monday_webhooks job subscribes the "
        "received columns to it (None: the receipt poll alone).",
    )
    receipts_per_tick: int = Field(200, ge=1, le=1000, description="Most received items one sensor tick requests.")
    op_retries: int = Field(3, ge=0, le=20)
    op_retry_delay_s: float = Field(5.0, ge=0)

    @model_validator(mode="after")
    def _receipts_only_for_documents_received(self) -> VismaMondayFlow:
        for entity, board in self.boards.items():
            if board.received_column and entity not in ("supplier_invoices", "purchase_orders"):
                raise ValueError(f"boards.{entity}.received_column: only supplier invoices and POs are received")
        return self


class AsanaFieldNames(_Strict):
    """Names of the Asana custom fields the visma_asana flow writes (None: leave that one out)."""

    visma_id: str = Field("Visma ID", description="Text field holding the Visma id: the key of deduplication.")
    vendor: str = Field("Vendor", description="Text field: the supplier's name (where unmapped suppliers are reviewed).")
    amount: str = "Amount"
    currency: str | None = "Currency"
    due_date: str | None = "Due date"
    po_number: str | None = "PO number"
    invoice_number: str | None = "Invoice number"
    gl_account: str | None = Field("GL account", description="Enum field whose options are Visma's GL accounts.")
    cost_center: str | None = Field("Cost center", description="Enum field whose options are Visma's cost centres.")
    status: str | None = Field("Visma status", description="Enum field: the document's Visma status, where an option matches.")
    review_flag: str | None = Field("Review flag", description="Enum field set on new tasks of unmapped suppliers.")


class SupplierAssignee(_Strict):
    """One row of the supplier -> team member table: the first row whose pattern matches assigns the task."""

    supplier: str = Field(min_length=1, description="Supplier number, or a name pattern (* and ?, case-insensitive).")
    member: str = Field(min_length=1, description="The Asana team member: e-mail address, or name pattern.")


class AsanaReturnPath(_Strict):
    """Asana task updates -> a line in the Visma document's note (non-financial), once per change."""

    enabled: bool = False
    webhooks: bool = Field(True, description="Register Asana webhooks on the projects (the poll stays on regardless).")
    receiver_url: HttpUrl = Field(HttpUrl("http://127.0.0.1:8800"), description="The webhook receiver's public root.")
    overlap_s: int = Field(300, ge=0, description="The poll re-reads this far behind its watermark.")
    tasks_per_tick: int = Field(200, ge=1, le=1000, description="Most changed tasks one sensor tick requests.")
    poll_s: float | None = Field(
        None, ge=0, description="Seconds between the return sensor's polls of the projects (None: poll_interval_s); "
        "Asana's webhooks in the inbox are read every tick regardless.",
    )


class VismaAsanaFlow(_Strict):
    """Visma POs and supplier invoices -> Asana tasks with finance custom fields; notes back, if enabled."""

    enabled: bool = True
    purchase_orders_project: str = "Purchase orders"
    invoices_project: str = "Supplier invoices"
    po_layout: Literal["subtasks", "projects"] = Field(
        "subtasks", description="subtasks: a PO task with its lines as subtasks; projects: the same, and each new PO "
        "also gets its own project instantiated from po_template.",
    )
    po_template: str = Field("PO project template", description="The project template of po_layout: projects.")
    fields: AsanaFieldNames = Field(default_factory=AsanaFieldNames)
    gl_account_types: list[str] = Field(default_factory=lambda: ["Expense"],
                                        description="Visma account types offered as GL options (empty: all).")
    cost_center_dimension: str = "SUBACCOUNT"
    cost_center_segment: int = Field(2, ge=1, description="The segment of the dimension that is the cost centre.")
    supplier_assignees: list[SupplierAssignee] = Field(default_factory=list)
    supplier_table: Path | None = Field(None, description="CSV supplier,member: more rows, after supplier_assignees.")
    review_option: str = Field("Needs review", min_length=1, description="Review flag option of unmapped suppliers.")
    context_ttl_s: float = Field(
        300.0, ge=0, description="How long the workspace's projects, custom fields and users, once read, serve the "
        "runs that follow (kept in the ledger; 0: every step reads them again).",
    )
    return_path: AsanaReturnPath = Field(default_factory=AsanaReturnPath)
    op_retries: int = Field(3, ge=0, le=20)
    op_retry_delay_s: float = Field(5.0, ge=0)


class Flows(_Strict):
    visma_jira: VismaJiraFlow | None = None
    jaggaer_visma: JaggaerVismaFlow | None = None
    acumatica_jira: AcumaticaJiraFlow | None = None
    visma_monday: VismaMondayFlow | None = None
    visma_asana: VismaAsanaFlow | None = None


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
    inbox_wait_s: float = Field(
        4.5, ge=0, le=30, description="How long a tick of a sensor reading the inbox (the inbox sensor, "
        "acumatica_jira's resolutions) that finds nothing keeps watching it (Dagster starts sensor ticks at most "
        "every 5 s; watching in between starts a webhook's run at once).",
    )
    acumatica: AcumaticaWebhookSettings = Field(default_factory=AcumaticaWebhookSettings)
    asana: AsanaWebhookSettings = Field(default_factory=AsanaWebhookSettings)
    monday: MondayWebhookSettings = Field(default_factory=MondayWebhookSettings)


class AlertSettings(_Strict):
    """Where failed runs are reported beyond the Dagster UI: a JSON POST to a webhook (Slack, Teams...)."""

    webhook_url_env: str = Field(
        "ML_CONNECTOR_ALERT_WEBHOOK_URL", description="Env var holding the alert webhook URL (unset: log only)."
    )
    dagster_ui_url: HttpUrl = Field(HttpUrl("http://127.0.0.1:3000"), description="Base of the run links in alerts.")


_TIME_OF_DAY = re.compile(r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::00)?")  # as a dump writes it too: 01:15:00


class ConnectorConfig(_Strict):
    """The whole of connector.yaml."""

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    systems: Systems = Field(default_factory=Systems)
    flows: Flows = Field(default_factory=Flows)
    poll_interval_s: int = Field(60, ge=5, description="Minimum seconds between poll sensor ticks.")
    audit_at_utc: time = Field(time(1, 15), description="When each flow's daily audit (reconcile_<flow>) "
                               "checks the day before against the destination, UTC, as HH:MM.")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("audit_at_utc", mode="before")
    @classmethod
    def _time_as_text(cls, value: object) -> object:
        if isinstance(value, time):
            return value
        # YAML reads an unquoted 1:15 as the number 75 (base 60); a number here is never meant.
        if not isinstance(value, str):
            raise ValueError(f"expected a time of day as text, HH:MM (quote it: '01:15'), got {value!r}")
        found = _TIME_OF_DAY.fullmatch(value.strip())
        if found is None or int(found["hour"]) > 23 or int(found["minute"]) > 59:
            raise ValueError(f"expected a time of day HH:MM, 00:00 to 23:59, got {value!r}")
        return time(int(found["hour"]), int(found["minute"]))

    @field_serializer("audit_at_utc")
    def _time_as_hh_mm(self, value: time) -> str:
        return value.strftime("%H:%M")

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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{chosen} is not UTF-8 text: byte {exc.start} is {exc.object[exc.start]:#04x}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{chosen} is nested too deeply to be a connector config") from None
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
