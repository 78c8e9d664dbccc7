"""One poll sensor per partitioned JAGGAER source: ``lastModifiedFrom >= watermark``, then runs.

J1P is pull-only (push needs JAGGAER professional services), so polling is the only way changes
arrive. The sensor reads ids and modification times only and hands out windows; the runs read,
validate and land. A J1P error (auth, 5xx after retries) fails the tick, visibly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import dagster as dg

from ml_connector_dagster.assets.jaggaer import (
    JAGGAER_SOURCES,
    JaggaerSource,
    JaggaerWindow,
    jaggaer_partitions,
)
from ml_connector_dagster.config import JaggaerSettings
from ml_connector_dagster.systems.jaggaer.models import modified_at

from .poll import Change, PollPolicy, build_poll_sensor, changes_in, window_run_config

__all__ = ["jaggaer_changes", "jaggaer_poll_sensor", "jaggaer_poll_sensors"]


def jaggaer_changes(context: dg.SensorEvaluationContext, source: JaggaerSource, since: datetime) -> Iterator[list[Change]]:
    """Pages of (id, modified) of the records changed since ``since``.

    Records without an id or a readable timestamp cannot be placed in a partition; they are
    counted in the log, and the run of whichever day reads them quarantines them.
    """
    with context.resources.jaggaer.client() as client:
        yield from changes_in(client.iter_changed(source.entity, since), id_of=source.model.raw_id,
                              modified_of=modified_at, asset=source.key.to_user_string(), log=context.log)


def jaggaer_poll_sensor(
    source: JaggaerSource, target: dg.AssetsDefinition, settings: JaggaerSettings, *,
    lookback: timedelta, minimum_interval_seconds: int, policy: PollPolicy | None = None,
) -> dg.SensorDefinition:
    """The poll sensor of one partitioned JAGGAER source asset."""
    return build_poll_sensor(
        name=f"jaggaer_{source.name}_poll",
        target=target,
        partitions_def=jaggaer_partitions(settings.partitions_start),
        probe=lambda context, since: jaggaer_changes(context, source, since),
        run_config_for=window_run_config(source.op_name, JaggaerWindow),
        policy=policy or PollPolicy(lookback=lookback),
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={"jaggaer"},
        description=f"Polls JAGGAER J1P for {source.name.replace('_', ' ')} modified since the cursor and "
                    f"requests a {source.key.to_user_string()} run per affected day.",
        tags={"ml_connector/source": "jaggaer"},
    )


def jaggaer_poll_sensors(
    assets: Sequence[dg.AssetsDefinition], settings: JaggaerSettings, *, lookback: timedelta,
    minimum_interval_seconds: int,
) -> list[dg.SensorDefinition]:
    """A poll sensor for every partitioned source among ``assets``."""
    by_key = {asset.key: asset for asset in assets}
    return [
        jaggaer_poll_sensor(source, by_key[source.key], settings, lookback=lookback,
                            minimum_interval_seconds=minimum_interval_seconds)
        for source in JAGGAER_SOURCES
        if source.partitioned and source.key in by_key
    ]
