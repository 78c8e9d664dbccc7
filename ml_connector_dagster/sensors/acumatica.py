"""One poll sensor per Acumatica source: ``LastModifiedDateTime ge <watermark>``, then runs.

The sensor reads only ids and modification times (``$select=LastModifiedDateTime``; ``id`` always
comes) and hands out windows; the runs read, validate and land. Push notifications are a hint and
reach the same assets through the webhook inbox (:func:`acumatica_inbox_sources`); this poll is
the guarantee. An Acumatica error (auth, licence, 5xx after retries) fails the tick.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import dagster as dg

from ml_connector_dagster.assets.acumatica import (
    ACUMATICA_SOURCES,
    AcumaticaSource,
    AcumaticaWindow,
    acumatica_partitions,
)
from ml_connector_dagster.config import AcumaticaSettings
from ml_connector_dagster.systems.acumatica.client import MODIFIED_FIELD, modified_at

from .poll import Change, PollPolicy, build_poll_sensor, changes_in, window_run_config

__all__ = ["acumatica_changes", "acumatica_inbox_sources", "acumatica_poll_sensor", "acumatica_poll_sensors"]


def acumatica_changes(context: dg.SensorEvaluationContext, source: AcumaticaSource,
                      since: datetime) -> Iterator[list[Change]]:
    """Pages of (id, modified) of the records changed since ``since``.

    A record without an id or a readable timestamp cannot be placed in a partition; it is logged,
    and the run of whichever day reads it quarantines it.
    """
    with context.resources.acumatica.client() as client:
        yield from changes_in(client.iter_changed(source.entity, since, select=(MODIFIED_FIELD,)), id_of=lambda raw: raw.get("id"),
                              modified_of=modified_at, asset=source.key.to_user_string(), log=context.log)


def acumatica_poll_sensor(
    source: AcumaticaSource, target: dg.AssetsDefinition, settings: AcumaticaSettings, *,
    lookback: timedelta, minimum_interval_seconds: int, policy: PollPolicy | None = None,
) -> dg.SensorDefinition:
    """The poll sensor of one Acumatica source asset; its runs also cover the assets it feeds directly."""
    return build_poll_sensor(
        name=f"acumatica_{source.name}_poll",
        target=target,
        partitions_def=acumatica_partitions(settings.partitions_start),
        probe=lambda context, since: acumatica_changes(context, source, since),
        run_config_for=window_run_config(source.op_name, AcumaticaWindow),
        policy=policy or PollPolicy(lookback=lookback),
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={"acumatica"},
        description=f"Polls Acumatica for {source.name.replace('_', ' ')} modified since the cursor and "
                    f"requests a {source.key.to_user_string()} run per affected day.",
        tags={"ml_connector/source": "acumatica"},
    )


def acumatica_poll_sensors(
    assets: Sequence[dg.AssetsDefinition], settings: AcumaticaSettings, *, lookback: timedelta,
    minimum_interval_seconds: int,
) -> list[dg.SensorDefinition]:
    """A poll sensor for every Acumatica source among ``assets``."""
    by_key = {asset.key: asset for asset in assets}
    return [
        acumatica_poll_sensor(source, by_key[source.key], settings, lookback=lookback,
                              minimum_interval_seconds=minimum_interval_seconds)
        for source in ACUMATICA_SOURCES
        if source.key in by_key
    ]


def acumatica_inbox_sources() -> dict[tuple[str, str], dg.AssetKey]:
    """``(system, entity)`` of the webhook inbox -> the source asset that fetches those records by id.

    The simulator's push queries are ``Bills``, ``PurchaseOrders`` and ``Payments`` (the receiver files
    them as ``bills`` ...) and their rows carry ``NoteID``, the record's ``id``.
    """
    return {("acumatica", source.name): source.key for source in ACUMATICA_SOURCES}
