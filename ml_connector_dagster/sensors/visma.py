"""One poll sensor per partitioned Visma source: ``lastModifiedDateTime >= watermark``, then runs.

The sensor only reads ids and modification times and hands out windows; the runs do the reading,
validating and landing. A Visma error (auth, 5xx after retries) fails the tick.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import dagster as dg

from ml_connector_dagster.assets.visma import VISMA_SOURCES, VismaSource, VismaWindow, visma_partitions
from ml_connector_dagster.config import VismaSettings
from ml_connector_dagster.systems.visma.client import modified_at

from .poll import Change, PollPolicy, build_poll_sensor, changes_in, window_run_config

__all__ = ["visma_changes", "visma_poll_sensor", "visma_poll_sensors"]


def visma_changes(context: dg.SensorEvaluationContext, source: VismaSource, since: datetime) -> Iterator[list[Change]]:
    """Pages of (id, modified) of the records changed since ``since``.

    Records without an id or a readable timestamp cannot be placed in a partition; they are
    counted in the log, and the run of whichever day reads them quarantines them.
    """
    with context.resources.visma.client() as client:
        yield from changes_in(client.iter_changed(source.entity, since), id_of=source.model.raw_id,
                              modified_of=modified_at, asset=source.key.to_user_string(), log=context.log)


def visma_poll_sensor(
    source: VismaSource, target: dg.AssetsDefinition, settings: VismaSettings, *,
    lookback: timedelta, minimum_interval_seconds: int, policy: PollPolicy | None = None,
) -> dg.SensorDefinition:
    """The poll sensor of one partitioned Visma source asset (its runs include the direct destinations)."""
    return build_poll_sensor(
        name=f"visma_{source.name}_poll",
        target=target,
        partitions_def=visma_partitions(settings.partitions_start),
        probe=lambda context, since: visma_changes(context, source, since),
        run_config_for=window_run_config(source.op_name, VismaWindow),
        policy=policy or PollPolicy(lookback=lookback),
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={"visma"},
        description=f"Polls Visma for {source.name.replace('_', ' ')} modified since the cursor and "
                    f"requests a {source.key.to_user_string()} run per affected day.",
        tags={"ml_connector/source": "visma"},
    )


def visma_poll_sensors(
    assets: Sequence[dg.AssetsDefinition], settings: VismaSettings, *, lookback: timedelta, minimum_interval_seconds: int,
) -> list[dg.SensorDefinition]:
    """A poll sensor for every partitioned source among ``assets``."""
    by_key = {asset.key: asset for asset in assets}
    return [
        visma_poll_sensor(source, by_key[source.key], settings, lookback=lookback,
                          minimum_interval_seconds=minimum_interval_seconds)
        for source in VISMA_SOURCES
        if source.partitioned and source.key in by_key
    ]


# Visma entities its webhooks announce that the source assets can fetch one by one (GET by number).
WEBHOOK_FETCHABLE = ("supplier_invoices", "purchase_orders", "customer_invoices", "supplier_payments")


def visma_inbox_sources() -> dict[tuple[str, str], dg.AssetKey]:
    """``(system, entity)`` of the webhook inbox -> the Visma source asset that fetches those records by id."""
    return {("visma", source.name): source.key for source in VISMA_SOURCES if source.name in WEBHOOK_FETCHABLE}
