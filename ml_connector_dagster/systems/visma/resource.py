"""``VismaResource``: the Visma.net client as a Dagster resource.

Secrets are plain ``str`` fields meant to be fed by ``dg.EnvVar`` (see :meth:`VismaResource.from_settings`),
so they never reach run config or the launchpad; ``repr=False`` keeps them out of reprs too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import VismaSettings
from ml_connector_dagster.core.http import rate_limiter_for
from ml_connector_dagster.core.shared_budgets import SHARED_BUDGET_HELP, budget_store

from .client import SYSTEM, ApiFlavour, VismaClient

__all__ = ["VismaResource"]


class VismaResource(dg.ConfigurableResource):
    """Visma.net ERP over Visma Connect client credentials (or the legacy company-header API)."""

    base_url: str = Field("https://api.finance.visma.net", description="API root, without /v1.")
    token_url: str = Field("https://connect.visma.com/connect/token", description="Visma Connect token endpoint.")
    api_flavour: ApiFlavour = Field("connect", description="legacy also sends ipp-company-id on every call.")
    scope: str = "vismanet_erp_service_api:read vismanet_erp_service_api:create vismanet_erp_service_api:update"
    page_size: int = Field(500, ge=1, le=1000)
    rate_per_s: float = Field(10.0, gt=0, description="Request budget (see shared_budget).")
    burst: int = Field(10, ge=1)
    shared_budget: bool = Field(False, description=SHARED_BUDGET_HELP)
    timeout_s: float = Field(30.0, gt=0)
    client_id: str = Field(repr=False)
    client_secret: str = Field(repr=False)
    tenant_id: str = Field(repr=False)
    company_id: str | None = Field(None, repr=False, description="Needed by the legacy flavour only.")

    @classmethod
    def from_settings(cls, settings: VismaSettings) -> VismaResource:
        """The resource for connector.yaml's Visma settings, each secret an ``EnvVar`` of its configured name."""
        secrets: dict[str, object] = {
            "client_id": dg.EnvVar(settings.client_id_env),
            "client_secret": dg.EnvVar(settings.client_secret_env),
            "tenant_id": dg.EnvVar(settings.tenant_id_env),
        }
        if settings.api_flavour == "legacy":
            secrets["company_id"] = dg.EnvVar(settings.company_id_env)
        return cls(
            base_url=str(settings.base_url).rstrip("/"),
            token_url=str(settings.token_url),
            api_flavour=settings.api_flavour,
            scope=settings.scope,
            page_size=settings.page_size,
            rate_per_s=settings.rate_per_s,
            shared_budget=settings.share_budget,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            **secrets,
        )

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[VismaClient]:
        """A connected :class:`VismaClient` for the duration of the block (``transport`` for tests)."""
        with VismaClient.build(
            base_url=self.base_url,
            token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            tenant_id=self.tenant_id,
            company_id=self.company_id,
            api_flavour=self.api_flavour,
            scope=self.scope,
            page_size=self.page_size,
            timeout_s=self.timeout_s,
            rate_limiter=rate_limiter_for(SYSTEM, self.rate_per_s, self.burst, store=budget_store(self.shared_budget)),
            transport=transport,
        ) as client:
            yield client
