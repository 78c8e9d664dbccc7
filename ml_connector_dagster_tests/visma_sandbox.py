"""What the Visma tests share: clients and resources wired to the simulator, and facts read from it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.config import ConnectorConfig, parse_config
from ml_connector_dagster.core.http import RateLimiter
from ml_connector_dagster.sandbox import visma as sandbox
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.visma.client import VismaClient
from ml_connector_dagster.systems.visma.models import parse_utc
from ml_connector_dagster.systems.visma.resource import VismaResource

IN_PROCESS_URL = "http://visma.test"
CREDENTIAL_ENV = {
    "VISMA_CLIENT_ID": sandbox.DEMO_CLIENT_ID,
    "VISMA_CLIENT_SECRET": sandbox.DEMO_CLIENT_SECRET,
    "VISMA_TENANT_ID": sandbox.DEMO_TENANT_ID,
    "VISMA_COMPANY_ID": sandbox.DEMO_COMPANY_ID,
}


def unlimited() -> RateLimiter:
    """A rate budget the tests never wait on."""
    return RateLimiter(10_000, 10_000)


def in_process_client(sim: VismaSimulator, *, page_size: int = 100, flavour: str = "connect",
                      base_path: str = "", **overrides: Any) -> VismaClient:
    """A client talking to ``sim`` in this process, over the real wire format."""
    transport = InProcessTransport(sim.app)
    settings: dict[str, Any] = {
        "base_url": IN_PROCESS_URL + base_path,
        "token_url": f"{IN_PROCESS_URL}/connect/token",
        "client_id": sandbox.DEMO_CLIENT_ID,
        "client_secret": sandbox.DEMO_CLIENT_SECRET,
        "tenant_id": sandbox.DEMO_TENANT_ID,
        "company_id": sandbox.DEMO_COMPANY_ID,
        "api_flavour": flavour,
        "scope": sandbox.DEMO_SCOPE,
        "page_size": page_size,
        "rate_limiter": unlimited(),
        "transport": transport,
        **overrides,
    }
    return VismaClient.build(**settings)


def use_demo_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the simulator's demo credentials where the resources' ``EnvVar``s look."""
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)


def visma_resource(base_url: str, *, page_size: int = 100) -> VismaResource:
    """The resource as definitions.py builds it: secrets as ``EnvVar``s, only the URLs point at the sandbox."""
    return VismaResource(
        base_url=base_url, token_url=f"{base_url}/connect/token", page_size=page_size,
        rate_per_s=10_000, burst=10_000,
        client_id=dg.EnvVar("VISMA_CLIENT_ID"), client_secret=dg.EnvVar("VISMA_CLIENT_SECRET"),
        tenant_id=dg.EnvVar("VISMA_TENANT_ID"),
    )


def sandbox_config(base_url: str, **visma: Any) -> ConnectorConfig:
    """connector.yaml with Visma (sandbox mode) at ``base_url``."""
    settings = {"mode": "sandbox", "base_url": base_url, "token_url": f"{base_url}/connect/token",
                "rate_per_s": 10_000, "burst": 10_000, "page_size": 100, **visma}
    return parse_config({"systems": {"visma": settings}, "poll_interval_s": 30})


def state(base_url: str, collection: str) -> list[dict[str, Any]]:
    """A collection as the simulator's ``/_sandbox/state`` shows it."""
    return httpx.get(f"{base_url}/_sandbox/state", timeout=10).json()[collection]


def utc_day(record: dict[str, Any]) -> str:
    """The UTC date of a record's last modification: its partition key."""
    return parse_utc(record["lastModifiedDateTime"]).strftime("%Y-%m-%d")


def records_per_day(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(utc_day(record) for record in records)


def ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)
