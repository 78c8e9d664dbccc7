"""What the Acumatica tests share: clients and resources wired to the simulator, and facts read from it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.config import ConnectorConfig, parse_config
from ml_connector_dagster.core.http import RateLimiter, RetryPolicy
from ml_connector_dagster.core.oauth import MemoryTokenStore, TokenStore
from ml_connector_dagster.sandbox import acumatica as sandbox
from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.acumatica.client import AcumaticaClient
from ml_connector_dagster.systems.acumatica.models import parse_moment
from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource

IN_PROCESS_URL = "http://acumatica.test"
API = "/entity/Default/24.200.001"
CREDENTIAL_ENV = {
    "ACUMATICA_CLIENT_ID": sandbox.DEMO_CLIENT_ID,
    "ACUMATICA_CLIENT_SECRET": sandbox.DEMO_CLIENT_SECRET,
    "ACUMATICA_USERNAME": sandbox.DEMO_USERNAME,
    "ACUMATICA_PASSWORD": sandbox.DEMO_PASSWORD,
}
# Retries that never wait: a test sees the answer after the retries without sleeping through them.
QUICK_RETRY = RetryPolicy(max_attempts=2, base_delay_s=0, jitter=False)


def unlimited() -> RateLimiter:
    """A rate budget the tests never wait on."""
    return RateLimiter(10_000, 10_000)


def in_process_client(sim: AcumaticaSimulator, *, store: TokenStore | None = None, page_size: int = 100,
                      base_url: str = IN_PROCESS_URL, **overrides: Any) -> AcumaticaClient:
    """A client talking to ``sim`` in this process, over the real wire format."""
    settings: dict[str, Any] = {
        "base_url": base_url,
        "client_id": sandbox.DEMO_CLIENT_ID,
        "client_secret": sandbox.DEMO_CLIENT_SECRET,
        "username": sandbox.DEMO_USERNAME,
        "password": sandbox.DEMO_PASSWORD,
        "store": store if store is not None else MemoryTokenStore(),
        "page_size": page_size,
        "rate_limiter": unlimited(),
        "retry": QUICK_RETRY,
        "transport": InProcessTransport(sim.app),
        **overrides,
    }
    return AcumaticaClient.build(**settings)


def raw_http(sim: AcumaticaSimulator) -> httpx.Client:
    """A bare httpx client on the simulator (no auth, no retries): what the wire answers as it is."""
    return httpx.Client(transport=InProcessTransport(sim.app), base_url=IN_PROCESS_URL)


def password_grant(http: httpx.Client, scope: str = "api offline_access", **changes: str) -> httpx.Response:
    form = {"grant_type": "password", "client_id": sandbox.DEMO_CLIENT_ID, "client_secret": sandbox.DEMO_CLIENT_SECRET,
            "username": sandbox.DEMO_USERNAME, "password": sandbox.DEMO_PASSWORD, "scope": scope, **changes}
    return http.post("/identity/connect/token", data=form)


def signed_in(sim: AcumaticaSimulator) -> httpx.Client:
    """A bare client with a fresh session's Bearer token."""
    http = raw_http(sim)
    token = password_grant(http).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def use_demo_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the simulator's demo credentials where the resources' ``EnvVar``s look."""
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)


def acumatica_resource(base_url: str, db_url: str, *, page_size: int = 100) -> AcumaticaResource:
    """The resource as definitions.py builds it: secrets as ``EnvVar``s, only the URL points at the sandbox."""
    return AcumaticaResource(
        base_url=base_url, sandbox=True, page_size=page_size, rate_per_s=10_000, burst=10_000, db_url=db_url,
        client_id=dg.EnvVar("ACUMATICA_CLIENT_ID"), client_secret=dg.EnvVar("ACUMATICA_CLIENT_SECRET"),
        username=dg.EnvVar("ACUMATICA_USERNAME"), password=dg.EnvVar("ACUMATICA_PASSWORD"),
    )


def sandbox_config(base_url: str, **acumatica: Any) -> ConnectorConfig:
    """connector.yaml with Acumatica (sandbox mode) at ``base_url``."""
    settings = {"mode": "sandbox", "base_url": base_url, "rate_per_s": 10_000, "burst": 10_000, **acumatica}
    return parse_config({"systems": {"acumatica": settings}, "poll_interval_s": 30})


def value(record: dict[str, Any], name: str) -> Any:
    """A field of a wire record, unwrapped."""
    return record[name].get("value")


def utc_day(record: dict[str, Any]) -> str:
    """The UTC date of a wire record's last modification: its partition key."""
    return parse_moment(value(record, "LastModifiedDateTime")).strftime("%Y-%m-%d")


def records_per_day(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(utc_day(record) for record in records)
