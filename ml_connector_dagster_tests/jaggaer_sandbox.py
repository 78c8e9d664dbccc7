"""What the JAGGAER tests share: clients and resources wired to the simulator, and facts read from it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_connector_dagster.config import ConnectorConfig, parse_config
from ml_connector_dagster.core.http import RateLimiter
from ml_connector_dagster.sandbox import jaggaer as sandbox
from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jaggaer.client import CxmlClient, JaggaerClient
from ml_connector_dagster.systems.jaggaer.cxml import CxmlEnvelope, CxmlParty
from ml_connector_dagster.systems.jaggaer.models import parse_timestamp
from ml_connector_dagster.systems.jaggaer.resource import JaggaerResource

IN_PROCESS_URL = "http://jaggaer.test"
CREDENTIAL_ENV = {
    "JAGGAER_CLIENT_ID": sandbox.DEMO_CLIENT_ID,
    "JAGGAER_CLIENT_SECRET": sandbox.DEMO_CLIENT_SECRET,
    "JAGGAER_CXML_SHARED_SECRET": sandbox.DEMO_CXML_SHARED_SECRET,
}
ENVELOPE = CxmlEnvelope(
    from_party=CxmlParty(identity=sandbox.DEMO_SENDER[1]),
    to_party=CxmlParty(identity=sandbox.DEMO_BUYER[1]),
    sender=CxmlParty(identity=sandbox.DEMO_SENDER[1]),
)


def unlimited() -> RateLimiter:
    """A rate budget the tests never wait on."""
    return RateLimiter(10_000, 10_000)


def in_process_client(sim: JaggaerSimulator, *, page_size: int = 50, paths: dict[str, str] | None = None,
                      transport: httpx.BaseTransport | None = None, **overrides: Any) -> JaggaerClient:
    """A J1P client talking to ``sim`` in this process, over the real wire format."""
    settings: dict[str, Any] = {
        "base_url": IN_PROCESS_URL,
        "token_url": IN_PROCESS_URL + sim.token_path,
        "client_id": sandbox.DEMO_CLIENT_ID,
        "client_secret": sandbox.DEMO_CLIENT_SECRET,
        "paths": paths or sim.paths,
        "page_size": page_size,
        "rate_limiter": unlimited(),
        "transport": transport or InProcessTransport(sim.app),
        **overrides,
    }
    return JaggaerClient.build(**settings)


def in_process_cxml(sim: JaggaerSimulator, *, shared_secret: str = sandbox.DEMO_CXML_SHARED_SECRET,
                    transport: httpx.BaseTransport | None = None) -> CxmlClient:
    """A cXML client posting to ``sim``'s cXML endpoint in this process."""
    return CxmlClient.build(url=IN_PROCESS_URL + sim.cxml_path, envelope=ENVELOPE, shared_secret=shared_secret,
                            rate_limiter=unlimited(), transport=transport or InProcessTransport(sim.app))


def use_demo_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the simulator's demo credentials where the resources' ``EnvVar``s look."""
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)


def jaggaer_resource(base_url: str, *, page_size: int = 40) -> JaggaerResource:
    """The resource as definitions.py builds it: secrets as ``EnvVar``s, only the URLs point at the sandbox."""
    return JaggaerResource(
        base_url=base_url, token_url=base_url + sandbox.DEFAULT_TOKEN_PATH, paths=dict(sandbox.DEFAULT_PATHS),
        page_size=page_size, rate_per_s=10_000, burst=10_000,
        client_id=dg.EnvVar("JAGGAER_CLIENT_ID"), client_secret=dg.EnvVar("JAGGAER_CLIENT_SECRET"),
        cxml_url=base_url + sandbox.DEFAULT_CXML_PATH, cxml_shared_secret=dg.EnvVar("JAGGAER_CXML_SHARED_SECRET"),
    )


def sandbox_config(base_url: str, **jaggaer: Any) -> ConnectorConfig:
    """connector.yaml with JAGGAER (sandbox mode) at ``base_url``."""
    settings = {"mode": "sandbox", "base_url": base_url, "token_url": base_url + sandbox.DEFAULT_TOKEN_PATH,
                "cxml_url": base_url + sandbox.DEFAULT_CXML_PATH, "rate_per_s": 10_000, "burst": 10_000,
                "page_size": 40, **jaggaer}
    return parse_config({"systems": {"jaggaer": settings}, "poll_interval_s": 30})


def state(sim_or_url: JaggaerSimulator | str, collection: str) -> list[dict[str, Any]]:
    """A collection as the simulator's ``/_sandbox/state`` shows it."""
    if isinstance(sim_or_url, str):
        return httpx.get(f"{sim_or_url}/_sandbox/state", timeout=10).json()[collection]
    with httpx.Client(transport=InProcessTransport(sim_or_url.app), base_url=IN_PROCESS_URL) as http:
        return http.get("/_sandbox/state").json()[collection]


def utc_day(record: dict[str, Any]) -> str:
    """The UTC date of a record's last modification: its partition key."""
    return parse_timestamp(record["lastModifiedDate"]).strftime("%Y-%m-%d")


def records_per_day(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(utc_day(record) for record in records)
