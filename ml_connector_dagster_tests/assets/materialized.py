"""What the source-asset tests share: a served simulator's request log, and an asset materialized with
its own checks on an ephemeral instance, read back as metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
import httpx

__all__ = ["forget_requests", "materialize_with_checks", "metadata_of", "recorded_gets"]


def recorded_gets(base_url: str, path: str) -> list[dict[str, Any]]:
    """The GETs of ``path`` the simulator at ``base_url`` has recorded (``/_sandbox/requests``)."""
    recorded = httpx.get(f"{base_url}/_sandbox/requests", timeout=10).json()
    return [r for r in recorded if r["path"] == path and r["method"] == "GET"]


def forget_requests(base_url: str) -> None:
    """Empty the simulator's request log."""
    httpx.delete(f"{base_url}/_sandbox/requests", timeout=10)


def materialize_with_checks(asset: dg.AssetsDefinition, checks: Sequence[dg.AssetChecksDefinition],
                            resources: dict[str, Any], partition_key: str | None = None,
                            **options: Any) -> dg.ExecuteInProcessResult:
    """``asset`` and those of ``checks`` that check it, materialized on an ephemeral instance."""
    own = [check for check in checks if any(k.asset_key == asset.key for k in check.check_keys)]
    return dg.materialize([asset, *own], partition_key=partition_key, resources=resources,
                          instance=dg.DagsterInstance.ephemeral(), **options)


def metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's (first) asset materialization, as plain values."""
    event = result.get_asset_materialization_events()[0]
    return {key: entry.value for key, entry in event.materialization.metadata.items()}
