"""``JaggaerResource``: the J1P client and the cXML client as one Dagster resource.

Secrets (client id and secret, the cXML shared secret) are plain ``str`` fields meant to be fed by
``dg.EnvVar`` (see :meth:`JaggaerResource.from_settings`), so they never reach run config or the
launchpad; ``repr=False`` keeps them out of reprs too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import JaggaerSettings
from ml_connector_dagster.core.http import RateLimiter, rate_limiter_for
from ml_connector_dagster.core.shared_budgets import SHARED_BUDGET_HELP, budget_store

from .client import CXML_SYSTEM, SYSTEM, CxmlClient, JaggaerClient
from .cxml import CxmlEnvelope, CxmlParty

__all__ = ["JaggaerResource"]


class JaggaerResource(dg.ConfigurableResource):
    """JAGGAER One Platform: J1P REST reads over client credentials, cXML status confirmations."""

    base_url: str = Field(description="The J1P instance, e.g. https://<customer>.jaggaer.com")
    token_url: str = Field(description="The Keycloak realm's token endpoint.")
    paths: dict[str, str] = Field(description="purchase_orders, invoices, vendors, gl_accounts -> path template.")
    path_parameters: dict[str, str] = Field(default_factory=dict)
    page_size: int = Field(100, ge=1, le=1000)
    read_slices: int = Field(3, ge=1, le=8, description="Time slices of a long bounded read walked at once.")
    rate_per_s: float = Field(10.0, gt=0, description="Request budget (see shared_budget).")
    burst: int = Field(10, ge=1)
    shared_budget: bool = Field(False, description=SHARED_BUDGET_HELP)
    timeout_s: float = Field(30.0, gt=0)
    client_id: str = Field(repr=False)
    client_secret: str = Field(repr=False)
    cxml_url: str | None = None
    cxml_shared_secret: str | None = Field(None, repr=False)
    cxml_from_domain: str = "NetworkID"
    cxml_from_identity: str = "ML-CONNECTOR"
    cxml_to_domain: str = "NetworkID"
    cxml_to_identity: str = "FJORDLYS-J1P"
    cxml_sender_domain: str = "NetworkID"
    cxml_sender_identity: str = "ML-CONNECTOR"
    cxml_deployment_mode: Literal["production", "test"] = "production"

    @classmethod
    def from_settings(cls, settings: JaggaerSettings) -> JaggaerResource:
        """The resource for connector.yaml's JAGGAER settings, each secret an ``EnvVar`` of its configured name."""
        cxml: dict[str, object] = {}
        if settings.cxml_url is not None:
            cxml = {"cxml_url": str(settings.cxml_url), "cxml_shared_secret": dg.EnvVar(settings.cxml_shared_secret_env)}
        return cls(
            base_url=str(settings.base_url).rstrip("/"),
            token_url=str(settings.token_url),
            paths=settings.paths.model_dump(),
            path_parameters=dict(settings.path_parameters),
            page_size=settings.page_size,
            read_slices=settings.read_slices,
            rate_per_s=settings.rate_per_s,
            shared_budget=settings.share_budget,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            client_id=dg.EnvVar(settings.client_id_env),
            client_secret=dg.EnvVar(settings.client_secret_env),
            cxml_from_domain=settings.cxml_from.domain,
            cxml_from_identity=settings.cxml_from.identity,
            cxml_to_domain=settings.cxml_to.domain,
            cxml_to_identity=settings.cxml_to.identity,
            cxml_sender_domain=settings.cxml_sender.domain,
            cxml_sender_identity=settings.cxml_sender.identity,
            cxml_deployment_mode=settings.cxml_deployment_mode,
            **cxml,
        )

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[JaggaerClient]:
        """A connected :class:`JaggaerClient` for the duration of the block (``transport`` for tests)."""
        with JaggaerClient.build(
            base_url=self.base_url,
            token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            paths=self.paths,
            path_parameters=self.path_parameters,
            page_size=self.page_size,
            read_slices=self.read_slices,
            timeout_s=self.timeout_s,
            rate_limiter=self._budget(SYSTEM),
            transport=transport,
        ) as client:
            yield client

    def _budget(self, system: str) -> RateLimiter:
        return rate_limiter_for(system, self.rate_per_s, self.burst, store=budget_store(self.shared_budget))

    def envelope(self) -> CxmlEnvelope:
        """Who our cXML documents are from, to and sent by."""
        return CxmlEnvelope(
            from_party=CxmlParty(domain=self.cxml_from_domain, identity=self.cxml_from_identity),
            to_party=CxmlParty(domain=self.cxml_to_domain, identity=self.cxml_to_identity),
            sender=CxmlParty(domain=self.cxml_sender_domain, identity=self.cxml_sender_identity),
            deployment_mode=self.cxml_deployment_mode,
        )

    @contextmanager
    def cxml(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[CxmlClient]:
        """A :class:`CxmlClient` for the configured endpoint (``ValueError`` when cXML is not configured)."""
        if not self.cxml_url:
            raise ValueError("JAGGAER cXML is not configured: set systems.jaggaer.cxml_url in connector.yaml")
        with CxmlClient.build(
            url=self.cxml_url, envelope=self.envelope(), shared_secret=self.cxml_shared_secret or "",
            timeout_s=self.timeout_s, rate_limiter=self._budget(CXML_SYSTEM),
            transport=transport,
        ) as client:
            yield client
