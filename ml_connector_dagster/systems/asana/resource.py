"""``AsanaResource``: the Asana client as a Dagster resource (PAT or OAuth).

Secrets are plain ``str`` fields meant to be fed by ``dg.EnvVar`` (see :meth:`AsanaResource.from_settings`),
so they never reach run config or the launchpad; ``repr=False`` keeps them out of reprs too. Asana
refresh tokens do not rotate: the one `ml-connector auth asana` stored in the Vault stays the live
one; while the Vault has none, the environment's is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import AsanaSettings, connector_home
from ml_connector_dagster.core.http import DEFAULT_TIMEOUT, rate_limiter_for
from ml_connector_dagster.core.shared_budgets import SHARED_BUDGET_HELP, budget_store
from ml_connector_dagster.core.vault import VaultKeyMissing, opened_vault

from .client import SYSTEM, AsanaClient
from .consent import REFRESH_TOKEN_KEY

__all__ = ["AsanaResource"]


class AsanaResource(dg.ConfigurableResource):
    """Asana: a personal access token, or OAuth 2.0 with a (non-rotating) refresh token."""

    auth: Literal["pat", "oauth"] = "pat"
    sandbox: bool = Field(False, description="Talking to the sandbox simulator (the Vault may use its generated key).")
    base_url: str = Field("https://app.asana.com", description="App root: the API is under /api/1.0, OAuth under /-/.")
    workspace_gid: str | None = Field(None, description="The workspace the connector works in (None: the token's first).")
    rate_per_s: float = Field(2.0, gt=0, description="Request budget, in requests as Asana "
                              "counts them: a batch is 1 + its actions (150/min on free plans, 1,500 paid).")
    burst: int = Field(10, ge=1)
    shared_budget: bool = Field(False, description=SHARED_BUDGET_HELP)
    timeout_s: float = Field(30.0, gt=0)
    pat: str | None = Field(None, repr=False)
    client_id: str | None = Field(None, repr=False)
    client_secret: str | None = Field(None, repr=False)
    refresh_token: str | None = Field(None, repr=False, description="Used while the Vault holds none.")
    db_url: str | None = Field(
        None, repr=False, description="Ledger database holding the Vault (may hold a password: feed it with EnvVar). "
        "Default: Ledger.default_url().",
    )
    vault_key: str = Field(REFRESH_TOKEN_KEY, description="Vault entry of the refresh token `auth asana` stored.")

    @classmethod
    def from_settings(cls, settings: AsanaSettings, *, environ: dict[str, str] | None = None) -> AsanaResource:
        """The resource for connector.yaml's Asana settings, each secret an ``EnvVar`` of its configured name.

        The environment's refresh token is wired only when its variable is set: after `auth asana`
        the Vault holds the token and the variable may be removed.
        """
        env = os.environ if environ is None else environ
        secrets: dict[str, object]
        if settings.auth == "pat":
            secrets = {"pat": dg.EnvVar(settings.pat_env)}
        else:
            secrets = {"client_id": dg.EnvVar(settings.client_id_env),
                       "client_secret": dg.EnvVar(settings.client_secret_env)}
            if env.get(settings.refresh_token_env):
                secrets["refresh_token"] = dg.EnvVar(settings.refresh_token_env)
        return cls(
            auth=settings.auth,
            sandbox=settings.mode == "sandbox",
            base_url=str(settings.base_url).rstrip("/"),
            workspace_gid=settings.workspace_gid,
            rate_per_s=settings.rate_per_s,
            shared_budget=settings.share_budget,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            **secrets,
        )

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, DEFAULT_TIMEOUT.connect or self.timeout_s))

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[AsanaClient]:
        """A connected :class:`AsanaClient` for the duration of the block (``transport`` for tests)."""
        limiter = rate_limiter_for(SYSTEM, self.rate_per_s, self.burst, store=budget_store(self.shared_budget, self.db_url))
        if self.auth == "pat":
            client = AsanaClient.connect_pat(self.base_url, self.pat or "", transport=transport,
                                             timeout=self._timeout(), rate_limiter=limiter)
        else:
            client = AsanaClient.connect_oauth(self.base_url, self.client_id or "", self.client_secret or "",
                                               self.oauth_refresh_token(), transport=transport,
                                               timeout=self._timeout(), rate_limiter=limiter)
        with client:
            yield client

    def oauth_refresh_token(self) -> str:
        """The refresh token `ml-connector auth asana` stored in the Vault, else the environment's."""
        try:
            with opened_vault(self.db_url, sandbox=self.sandbox, home=connector_home()) as vault:
                stored = vault.get(self.vault_key)
        except VaultKeyMissing:
            if self.refresh_token:  # a deployment that keeps the token in its environment needs no Vault key
                return self.refresh_token
            raise
        token = stored or self.refresh_token
        if not token:
            raise ValueError("Asana OAuth has no refresh token: run `ml-connector auth asana` (or set ASANA_REFRESH_TOKEN)")
        return token
