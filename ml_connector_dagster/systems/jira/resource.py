"""``JiraResource``: the Jira client as a Dagster resource, with the refresh token kept in the Vault.

Secrets are plain ``str`` fields meant to be fed by ``dg.EnvVar`` (see :meth:`JiraResource.from_settings`),
so they never reach run config or the launchpad; ``repr=False`` keeps them out of reprs too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import JiraSettings, connector_home
from ml_connector_dagster.core.http import DEFAULT_TIMEOUT
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.oauth import ConsentRequired
from ml_connector_dagster.core.shared_budgets import SHARED_BUDGET_HELP, budget_store
from ml_connector_dagster.core.vault import Vault

from .client import REFRESH_TOKEN_KEY, JiraClient, rate_budget, seed_refresh_token

__all__ = ["JiraResource"]


class JiraResource(dg.ConfigurableResource):
    """Jira Cloud: OAuth 2.0 (3LO) with rotating refresh tokens in the Vault, or API-token basic auth."""

    auth: Literal["oauth", "api_token"] = "oauth"
    sandbox: bool = Field(False, description="Talking to the sandbox simulator (the Vault may use its generated key).")
    base_url: str = Field("https://api.atlassian.com", description="OAuth API gateway (the simulator in the sandbox).")
    auth_url: str = Field("https://auth.atlassian.com", description="Where 3LO tokens are refreshed.")
    site_url: str | None = Field(None, description="https://<site>.atlassian.net: the api_token base, or picks the 3LO site.")
    cloud_id: str | None = Field(None, description="Picks the 3LO site; resolved from accessible-resources when unset.")
    rate_per_s: float = Field(10.0, gt=0, description="Request budget of each endpoint and method "
                              "(Jira's burst limits count per endpoint).")
    burst: int = Field(10, ge=1)
    shared_budget: bool = Field(False, description=SHARED_BUDGET_HELP)
    timeout_s: float = Field(30.0, gt=0)
    client_id: str | None = Field(None, repr=False)
    client_secret: str | None = Field(None, repr=False)
    refresh_token: str | None = Field(None, repr=False, description="Seeds the Vault once; the Vault keeps the rotated ones.")
    email: str | None = Field(None, repr=False)
    api_token: str | None = Field(None, repr=False)
    db_url: str | None = Field(
        None, repr=False, description="Ledger database holding the Vault (may hold a password: feed it with EnvVar). "
        "Default: Ledger.default_url().",
    )
    vault_key: str = Field(REFRESH_TOKEN_KEY, description="Vault entry of the rotating refresh token.")

    @classmethod
    def from_settings(cls, settings: JiraSettings, *, environ: dict[str, str] | None = None) -> JiraResource:
        """The resource for connector.yaml's Jira settings, each secret an ``EnvVar`` of its configured name.

        The refresh-token seed is wired only when its variable is set: after the first run the Vault
        holds the live token and the variable may be removed.
        """
        env = os.environ if environ is None else environ
        secrets: dict[str, object] = {}
        if settings.auth == "oauth":
            secrets = {"client_id": dg.EnvVar(settings.client_id_env), "client_secret": dg.EnvVar(settings.client_secret_env)}
            if env.get(settings.refresh_token_env):
                secrets["refresh_token"] = dg.EnvVar(settings.refresh_token_env)
        else:
            secrets = {"email": dg.EnvVar(settings.email_env), "api_token": dg.EnvVar(settings.api_token_env)}
        return cls(
            auth=settings.auth,
            sandbox=settings.mode == "sandbox",
            base_url=str(settings.base_url).rstrip("/"),
            auth_url=str(settings.auth_url or settings.base_url).rstrip("/"),
            site_url=str(settings.site_url).rstrip("/") if settings.site_url else None,
            cloud_id=settings.cloud_id,
            rate_per_s=settings.rate_per_s,
            shared_budget=settings.share_budget,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            **secrets,
        )

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, DEFAULT_TIMEOUT.connect or self.timeout_s))

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[JiraClient]:
        """A connected :class:`JiraClient` for the duration of the block.

        OAuth: the refresh token lives encrypted in the ledger database's Vault (seeded from
        ``refresh_token`` only while the Vault has none). ``transport`` lets tests talk to an
        in-process simulator.
        """
        limiter = rate_budget(self.rate_per_s, self.burst, store=budget_store(self.shared_budget, self.db_url))
        if self.auth == "api_token":
            if not self.site_url:
                raise ValueError("Jira api_token auth needs site_url (https://<site>.atlassian.net)")
            with JiraClient.connect_api_token(
                self.site_url, self.email or "", self.api_token or "",
                transport=transport, timeout=self._timeout(), rate_limiter=limiter,
            ) as client:  # fmt: skip
                yield client
            return
        if not self.client_id or not self.client_secret:
            raise ValueError("Jira OAuth needs client_id and client_secret (are JIRA_CLIENT_ID / JIRA_CLIENT_SECRET set?)")
        ledger = Ledger.open(self.db_url)
        try:
            vault = Vault.from_env(ledger.engine, sandbox=self.sandbox, home=connector_home())
            seed_refresh_token(vault, self.refresh_token, self.vault_key)
            with JiraClient.connect_oauth(
                self.base_url, self.auth_url, self.client_id, self.client_secret, vault,
                cloud_id=self.cloud_id, site_url=self.site_url, store_key=self.vault_key,
                transport=transport, timeout=self._timeout(), rate_limiter=limiter,
            ) as client:  # fmt: skip
                yield client
        except ConsentRequired as exc:
            # No retry brings a revoked grant back: the step fails at once, and the run's alert says what to do.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        finally:
            ledger.dispose()
