"""The scale-out code location: the project's definitions, with the Celery executor.

``ml_connector_dagster.definitions:defs`` runs each run's steps in one process (the embedded
default, and production on Kubernetes where every run gets its own pod). This module is the same
code location for a deployment that spreads the *steps* of a run (a backfill's partitions, several
source assets) over Celery workers:

    dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml -q dagster -n worker-1

Workers import this module to rebuild a step's job, so they need the code location's environment
(``ML_CONNECTOR_CONFIG``, credentials, ``ML_CONNECTOR_DB_URL``, ``DAGSTER_PG_*``). The broker URL is
read from ``DAGSTER_CELERY_BROKER_URL`` at run time (an ``env`` source: a broker password never
lands in a job snapshot); the queue from ``DAGSTER_CELERY_QUEUE`` when the module is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg
from dagster_celery import celery_executor

from ml_connector_dagster.config import ConnectorConfig, active_config
from ml_connector_dagster.definitions import build_definitions

__all__ = [
    "BROKER_ENV",
    "QUEUE_ENV",
    "build_celery_definitions",
    "celery_executor_from_env",
    "defs",
]

BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
QUEUE_ENV = "DAGSTER_CELERY_QUEUE"
DEFAULT_QUEUE = "dagster"


def celery_executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """dagster-celery's executor: broker from ``$DAGSTER_CELERY_BROKER_URL``, results over ``rpc://``,
    steps to ``$DAGSTER_CELERY_QUEUE`` (default ``dagster``), one prefetched task per worker process."""
    env = os.environ if environ is None else environ
    return celery_executor.configured(
        {
            "broker": {"env": BROKER_ENV},
            "backend": "rpc://",
            "config_source": {
                "task_default_queue": env.get(QUEUE_ENV, DEFAULT_QUEUE),
                # A step runs for seconds to minutes: hoarding tasks would idle the other workers.
                "worker_prefetch_multiplier": 1,
                "task_acks_late": True,
                # The rpc:// reply queue of a finished run goes away after an hour (default: a day).
                "result_expires": 3600,
            },
        },
        name="celery",
    )


def build_celery_definitions(config: ConnectorConfig, environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """Every asset, check, sensor, schedule, job and resource of ``build_definitions(config)``, run by Celery."""
    base = build_definitions(config)
    return dg.Definitions(
        assets=base.assets, asset_checks=base.asset_checks, sensors=base.sensors, schedules=base.schedules,
        jobs=base.jobs, resources=base.resources, loggers=base.loggers, metadata=base.metadata,
        executor=celery_executor_from_env(environ),
    )


defs = build_celery_definitions(active_config())
