"""What the Asana tests share: the simulator in-process, raw and typed clients, a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from ml_connector_dagster.core.http import RateLimiter
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.asana.webhook import AsanaWebhookVerifier
from ml_connector_dagster.webhooks.receiver import build_receiver

IN_PROCESS_URL = "http://asana.test"
RECEIVER_URL = "http://receiver.test"


def unlimited() -> RateLimiter:
    """A rate budget the tests never wait on."""
    return RateLimiter(10_000, 10_000)


def raw_api(transport: httpx.BaseTransport, token: str | None) -> httpx.Client:
    """An httpx client on ``/api/1.0`` with ``token`` as Bearer (None: no Authorization)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(transport=transport, base_url=f"{IN_PROCESS_URL}/api/1.0", headers=headers)


def pat_client(sim: AsanaSimulator, transport: httpx.BaseTransport, **settings: Any) -> AsanaClient:
    """The typed client with the demo PAT, talking to ``sim`` in this process."""
    return AsanaClient.connect_pat(IN_PROCESS_URL, sim.credentials()["pat"], transport=transport,
                                   rate_limiter=settings.pop("rate_limiter", unlimited()), **settings)


@dataclass
class Receiver:
    """The connector's webhook receiver with its ledger and vault, reachable through ``transport``."""

    ledger: Ledger
    vault: Vault
    transport: InProcessTransport

    def inbox(self) -> list[Any]:
        return self.ledger.inbox_after(0, system="asana", unprocessed_only=False)


@contextmanager
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A real receiver (AsanaWebhookVerifier) on a fresh SQLite ledger; closed when the block ends."""
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        vault = Vault(ledger.engine, [Fernet.generate_key().decode()])
        transport = InProcessTransport(build_receiver(ledger, [AsanaWebhookVerifier(ledger, vault)]))
        try:
            yield Receiver(ledger, vault, transport)
        finally:
            transport.close()
