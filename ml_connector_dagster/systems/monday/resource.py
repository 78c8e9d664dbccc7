"""``MondayResource``: the monday.com client as a Dagster resource.

The token is a personal API token in a plain ``str`` field fed by ``dg.EnvVar`` (see
:meth:`MondayResource.from_settings`), so it never reaches run config or the launchpad, and
``repr=False`` keeps it out of reprs; or (``auth="oauth"``) the OAuth access token that
`ml-connector auth monday` stored in the Vault, read when a client is made. Every client of one
token shares one complexity budget (:func:`complexity_budget_for`) and one request-rate limiter:
kept in the ledger's database with ``shared_budget`` (every run of the deployment spends them
together), else in the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import MondaySettings, connector_home
from ml_connector_dagster.core.http import DEFAULT_TIMEOUT, rate_limiter_for
from ml_connector_dagster.core.shared_budgets import SHARED_BUDGET_HELP, budget_store
from ml_connector_dagster.core.vault import opened_vault

from .client import SYSTEM, MondayClient, complexity_budget_for
from .consent import ACCESS_TOKEN_KEY
from .sdl import CURRENT_VERSION, SUPPORTED_VERSIONS

__all__ = ["MondayResource"]


class MondayResource(dg.ConfigurableResource):
    """monday.com's GraphQL API with a personal API token or an OAuth token, pinned to one API version."""

    auth: Literal["api_token", "oauth"] = "api_token"
    sandbox: bool = Field(False, description="Talking to the sandbox simulator (the Vault may use its generated key).")
    base_url: str = Field("https://api.monday.com", description="API root; requests go to <base_url>/v2.")
    api_version: str = Field(CURRENT_VERSION, description=f"Sent as API-Version; one of {', '.join(SUPPORTED_VERSIONS)}.")
    complexity_per_minute: int = Field(10_000_000, gt=0, description="The token's budget (app tokens: 5M per kind).")
    max_batch: int = Field(25, ge=1, le=500, description="Most aliased writes per request.")
    rate_per_s: float = Field(10.0, gt=0, description="Request budget (see shared_budget).")
    burst: int = Field(10, ge=1)
    shared_budget: bool = Field(False, description=SHARED_BUDGET_HELP)
    timeout_s: float = Field(30.0, gt=0)
    api_token: str | None = Field(None, repr=False, description="The personal API token (auth api_token).")
    db_url: str | None = Field(
        None, repr=False, description="Ledger database holding the Vault (may hold a password: feed it with EnvVar). "
        "Default: Ledger.default_url().",
    )
    vault_key: str = Field(ACCESS_TOKEN_KEY, description="Vault entry of the OAuth token `auth monday` stored.")

    @classmethod
    def from_settings(cls, settings: MondaySettings) -> MondayResource:
        """The resource for connector.yaml's monday settings: the API token an ``EnvVar`` of its configured
        name, or (``auth: oauth``) the Vault's token."""
        secrets = {"api_token": dg.EnvVar(settings.api_token_env)} if settings.auth == "api_token" else {}
        return cls(
            auth=settings.auth,
            sandbox=settings.mode == "sandbox",
            base_url=str(settings.base_url).rstrip("/"),
            api_version=settings.api_version,
            complexity_per_minute=settings.complexity_per_minute,
            max_batch=settings.max_batch,
            rate_per_s=settings.rate_per_s,
            shared_budget=settings.share_budget,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            **secrets,
        )

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[MondayClient]:
        """A connected :class:`MondayClient` for the duration of the block (``transport`` for tests)."""
        token = self.token()
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, DEFAULT_TIMEOUT.connect or self.timeout_s))
        store = budget_store(self.shared_budget, self.db_url)  # the request rate and the complexity points
        with MondayClient.connect(
            self.base_url, token, api_version=self.api_version, transport=transport, timeout=timeout,
            rate_limiter=rate_limiter_for(SYSTEM, self.rate_per_s, self.burst, store=store),
            budget=complexity_budget_for(token, self.complexity_per_minute, quotas=store), max_batch=self.max_batch,
        ) as client:  # fmt: skip
            yield client

    def token(self) -> str:
        """The personal API token, or the OAuth token `ml-connector auth monday` stored in the Vault."""
        if self.auth == "api_token":
            if not self.api_token:
                raise ValueError("monday needs an API token (is MONDAY_API_TOKEN set?)")
            return self.api_token
        with opened_vault(self.db_url, sandbox=self.sandbox, home=connector_home()) as vault:
            stored = vault.get(self.vault_key)
        if not stored:
            raise ValueError("monday OAuth has no token yet: run `ml-connector auth monday`")
        return stored
