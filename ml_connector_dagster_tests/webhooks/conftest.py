"""A temp SQLite ledger and its vault, fresh for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


@pytest.fixture
def vault(ledger: Ledger) -> Vault:
    return Vault(ledger.engine, [Fernet.generate_key().decode()])
