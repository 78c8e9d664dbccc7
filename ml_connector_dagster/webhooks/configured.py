"""The receiver as ``connector.yaml`` describes it: every system's verifier with its secrets.

Secrets come from the environment variables the config names (never from the file). A system
whose secret is not set still gets its route, and refuses every delivery as ``not_configured``
(visible in ``/webhooks/_stats``), since polling covers it anyway; a warning at start names the
variable. Visma secrets may be comma-separated, to rotate without dropping deliveries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta

from starlette.applications import Starlette

from ml_connector_dagster.config import ConnectorConfig, connector_home
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.systems.acumatica.webhook import AcumaticaWebhookVerifier
from ml_connector_dagster.systems.asana.webhook import AsanaWebhookVerifier
from ml_connector_dagster.systems.jira.webhook import JiraWebhookVerifier
from ml_connector_dagster.systems.monday.webhook import MondayWebhookVerifier
from ml_connector_dagster.systems.visma.webhook import VismaWebhookVerifier

from .contract import WebhookVerifier
from .receiver import build_receiver

__all__ = ["configured_receiver", "configured_verifiers"]

logger = logging.getLogger("ml_connector.webhooks")

# Defaults of VismaSettings / JiraSettings, for a config that does not declare the system at all.
_VISMA_SECRET_ENV = "VISMA_WEBHOOK_SECRET"
_JIRA_SECRET_ENV = "JIRA_WEBHOOK_SECRET"
_JIRA_CLIENT_SECRET_ENV = "JIRA_CLIENT_SECRET"


def _secret(environ: Mapping[str, str], name: str, system: str) -> str | None:
    value = environ.get(name, "").strip()
    if not value:
        logger.warning("webhooks: %s is not set, so %s deliveries will be refused", name, system)
    return value or None


def configured_verifiers(
    config: ConnectorConfig, ledger: Ledger, vault: Vault, environ: Mapping[str, str] | None = None
) -> list[WebhookVerifier]:
    """One verifier per system, with secrets read from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    settings = config.webhooks
    tolerance = timedelta(seconds=settings.timestamp_tolerance_s)
    leeway = timedelta(seconds=settings.clock_skew_s)
    visma, jira = config.systems.visma, config.systems.jira
    visma_secrets = _secret(env, visma.webhook_secret_env if visma else _VISMA_SECRET_ENV, "visma") or ""
    jira_secret_env = jira.webhook_secret_env if jira else _JIRA_SECRET_ENV
    jira_client_env = jira.client_secret_env if jira else _JIRA_CLIENT_SECRET_ENV
    jira_hub, jira_client = env.get(jira_secret_env, "").strip(), env.get(jira_client_env, "").strip()
    if not jira_hub and not jira_client:
        logger.warning("webhooks: neither %s nor %s is set, so jira deliveries will be refused",
                       jira_secret_env, jira_client_env)  # fmt: skip
    return [
        VismaWebhookVerifier([part.strip() for part in visma_secrets.split(",")], tolerance=tolerance),
        AcumaticaWebhookVerifier(
            _secret(env, settings.acumatica.header_value_env, "acumatica"),
            header_name=settings.acumatica.header_name,
            query_entities=settings.acumatica.query_entities,
        ),
        JiraWebhookVerifier(
            client_secret=jira_client or None, webhook_secret=jira_hub or None, max_age=tolerance, leeway=leeway
        ),
        AsanaWebhookVerifier(ledger, vault),
        MondayWebhookVerifier(
            _secret(env, settings.monday.signing_secret_env, "monday"), max_age=tolerance, leeway=leeway
        ),
    ]


def configured_receiver(
    config: ConnectorConfig, ledger: Ledger, *, vault: Vault | None = None, environ: Mapping[str, str] | None = None
) -> Starlette:
    """The receiver app for ``config``; the vault defaults to the ledger's, keyed from the environment."""
    if vault is None:
        sandbox = all(getattr(config.systems, name).mode == "sandbox"
                      for name in type(config.systems).model_fields if getattr(config.systems, name))  # fmt: skip
        vault = Vault.from_env(ledger.engine, sandbox=sandbox, home=connector_home(), environ=environ)
    verifiers = configured_verifiers(config, ledger, vault, environ)
    return build_receiver(ledger, verifiers, max_body_bytes=config.webhooks.max_body_bytes)
