"""``MondayResource``: the monday.com client as a Dagster resource.

The API token is a plain ``str`` field fed by ``dg.EnvVar`` (see :meth:`MondayResource.from_settings`),
so it never reaches run config or the launchpad; ``repr=False`` keeps it out of reprs too. Every
client of one token in the process shares one complexity budget (:func:`complexity_budget_for`)
and one request-rate limiter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import httpx
from pydantic import Field

from ml_connector_dagster.config import MondaySettings
from ml_connector_dagster.core.http import DEFAULT_TIMEOUT, rate_limiter_for

from .client import SYSTEM, MondayClient, complexity_budget_for
from .sdl import CURRENT_VERSION, SUPPORTED_VERSIONS

__all__ = ["MondayResource"]


class MondayResource(dg.ConfigurableResource):
    """monday.com's GraphQL API with a personal (or app) API token, pinned to one API version."""

    base_url: str = Field("https://api.monday.com", description="API root; requests go to <base_url>/v2.")
    api_version: str = Field(CURRENT_VERSION, description=f"Sent as API-Version; one of {', '.join(SUPPORTED_VERSIONS)}.")
    complexity_per_minute: int = Field(10_000_000, gt=0, description="The token's budget (app tokens: 5M per kind).")
    max_batch: int = Field(25, ge=1, le=500, description="Most aliased writes per request.")
    rate_per_s: float = Field(10.0, gt=0, description="Shared request budget per process.")
    burst: int = Field(10, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    api_token: str = Field(repr=False)

    @classmethod
    def from_settings(cls, settings: MondaySettings) -> MondayResource:
        """The resource for connector.yaml's monday settings, the token an ``EnvVar`` of its configured name."""
        return cls(
            base_url=str(settings.base_url).rstrip("/"),
            api_version=settings.api_version,
            complexity_per_minute=settings.complexity_per_minute,
            max_batch=settings.max_batch,
            rate_per_s=settings.rate_per_s,
            burst=settings.burst,
            timeout_s=settings.timeout_s,
            api_token=dg.EnvVar(settings.api_token_env),
        )

    @contextmanager
    def client(self, *, transport: httpx.BaseTransport | None = None) -> Iterator[MondayClient]:
        """A connected :class:`MondayClient` for the duration of the block (``transport`` for tests)."""
        if not self.api_token:
            raise ValueError("monday needs an API token (is MONDAY_API_TOKEN set?)")
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, DEFAULT_TIMEOUT.connect or self.timeout_s))
        with MondayClient.connect(
            self.base_url, self.api_token, api_version=self.api_version, transport=transport, timeout=timeout,
            rate_limiter=rate_limiter_for(SYSTEM, self.rate_per_s, self.burst),
            budget=complexity_budget_for(self.api_token, self.complexity_per_minute), max_batch=self.max_batch,
        ) as client:  # fmt: skip
            yield client
