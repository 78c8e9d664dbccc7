"""Valid vendor records to break: what each simulator serves, read once per process."""

from __future__ import annotations

from functools import cache
from typing import Any

from ml_connector_dagster.sandbox.launch import create_simulator

__all__ = ["records"]


@cache
def _collections(system: str) -> dict[str, Any]:
    simulator = create_simulator(system, seed=0, size=8, days=2)
    try:
        return simulator.collections()
    finally:
        simulator.close()


def records(system: str, collection: str) -> list[dict[str, Any]]:
    """The records of one collection of ``system``'s demo tenant, as its API returns them."""
    found = _collections(system)[collection]
    assert found, f"the {system} simulator holds no {collection}"
    return list(found)
