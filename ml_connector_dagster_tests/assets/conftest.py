"""Fixtures of the source-asset tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """A SQLite ledger of the test's own."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"
