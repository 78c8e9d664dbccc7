"""``AcumaticaResource``: the Acumatica client as a Dagster resource, the refresh token in the Vault.

Secrets are plain ``str`` fields meant to be fed by ``dg.EnvVar`` (see :meth:`AcumaticaResource.from_settings`),
so they never reach run config or the launchpad; ``repr=False`` keeps them out of reprs too. The
refresh token lives encrypted in the ledger database's Vault, so every run and sensor tick of every
process refreshes into the one API session instead of taking another licensed API-user slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import AcumaticaSettings, connector_home
from ml_connector_dagster.core.http import RetryPolicy, rate_limiter_for
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.shared_budgets import SHARED_BUDGET_HELP, budget_store
from ml_connector_dagster.core.vault import Vault

from .client import (
    DEFAULT_ENDPOINT,
    DEFAULT_SCOPE,
    DEFAULT_TIMEZONE,
    DEFAULT_VERSION,
    REFRESH_TOKEN_KEY,
    SYSTEM,
    AcumaticaClient,
)

__all__ = ["AcumaticaResource"]


class AcumaticaResource(dg.ConfigurableResource):
    """Acumatica ERP over OAuth 2.0 (password grant, then the refresh token), one pinned endpoint version."""

    base_url: str = Field(description="The instance (site) URL, e.g. https://nordvik.acumatica.com.")
    endpoint_name: str = DEFAULT_ENDPOINT
    endpoint_version: str = Field(DEFAULT_VERSION, description="Pinned in every URL.")
    scope: str = DEFAULT_SCOPE
    sandbox: bool = Field(False, description="Talking to the sandbox simulator (the Vault may use its generated key).")
    page_size: int = Field(100, ge=1, le=1000)
    timezone: str = Field(DEFAULT_TIMEZONE, description="The Acumatica users' time zone: dates are sent as its midnight.")
    rate_per_s: float = Field(10.0, gt=0, description="Request budget (see shared_budget).")
    burst: int = Field(10, ge=1)
    shared_budget: bool = Field(False, description=SHARED_BUDGET_HELP)
    timeout_s: float = Field(30.0, gt=0)
    client_id: str = Field(repr=False)
    client_secret: str = Field(repr=False)
    username: str = Field(repr=False)
    password: str = Field(repr=False)
    db_url: str | None = Field(
        None, repr=False, description="Ledger database holding the Vault (may hold a password: feed it with EnvVar). "
        "Default: Ledger.default_url().",
    )
    vault_key: str = Field(REFRESH_TOKEN_KEY, description="Vault entry of the rotating refresh token.")

    @classmethod
    def from_settings(cls, settings: AcumaticaSettings) -> AcumaticaResource:
        """The resource for connector.yaml's Acumatica settings, each secret an ``EnvVar`` of its configured name."""
        return cls(
            base_url=str(settings.base_url).rstrip("/"),
            endpoint_name=settings.endpoint_name,
            endpoint_version=settings.endpoint_version,
            sandbox=settings.mode == "sandbox",
            page_size=settings.page_size,
            timezone=settings.timezone,
            rate_per_s=settings.rate_per_s,
            shared_budget=settings.share_budget,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            client_id=dg.EnvVar(settings.client_id_env),
            client_secret=dg.EnvVar(settings.client_secret_env),
            username=dg.EnvVar(settings.username_env),
            password=dg.EnvVar(settings.password_env),
        )

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None,
               retry: RetryPolicy | None = None) -> Iterator[AcumaticaClient]:
        """A signed-in :class:`AcumaticaClient` for the duration of the block (``transport`` for tests)."""
        store = budget_store(self.shared_budget, self.db_url)
        ledger = Ledger.open(self.db_url)
        try:
            vault = Vault.from_env(ledger.engine, sandbox=self.sandbox, home=connector_home())
            with AcumaticaClient.build(
                base_url=self.base_url, client_id=self.client_id, client_secret=self.client_secret,
                username=self.username, password=self.password, store=vault, store_key=self.vault_key,
                endpoint=self.endpoint_name, version=self.endpoint_version, scope=self.scope,
                page_size=self.page_size, timezone=self.timezone, timeout_s=self.timeout_s, retry=retry, transport=transport,
                rate_limiter=rate_limiter_for(SYSTEM, self.rate_per_s, self.burst, store=store),
            ) as client:  # fmt: skip
                yield client
        finally:
            ledger.dispose()
