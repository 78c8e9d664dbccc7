"""Pool limits per vendor API (``deploy/pools.yaml``), written into the Dagster instance.

Every op that calls a vendor declares ``pool="<vendor>_api"``; the instance lets at most the pool's
limit of such ops run at once across every run, however many runs the queue launches (the request
rate is held apart: every run spends one budget per system kept in the ledger, ``core.shared_budgets``). Dagster keeps per-pool limits in its database, not in dagster.yaml, so they are
applied with ``ml-connector deploy pools`` once per deployment and again when the file changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import yaml

__all__ = ["apply_pool_limits", "read_pool_limits"]


def read_pool_limits(path: str | os.PathLike[str]) -> dict[str, int]:
    """``pools:`` of the file: pool name -> ops of that pool allowed to run at once (>= 0)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    limits = data.get("pools") if isinstance(data, dict) else None
    if not isinstance(limits, dict) or not all(
        isinstance(name, str) and isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0
        for name, limit in limits.items()
    ):
        raise ValueError(f"{path}: expected `pools:` mapping pool names to limits (integers >= 0)")
    return dict(limits)


def apply_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int]) -> None:
    """Set each pool's slot count in ``instance`` (what ``dagster instance concurrency set`` does)."""
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
