"""The production deployment, for real: deploy/dagster.yaml on the machine's PostgreSQL, the deploy
workspace, a sensor tick whose run completes, and the Celery scale-out with two worker processes on
the machine's RabbitMQ sharing one run's steps.

A fresh database is created for the session and dropped after. Under CI a missing PostgreSQL or
RabbitMQ fails these tests; elsewhere it skips them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._utils.tags import TagConcurrencyLimitsCounter

from ml_connector_dagster.assets.visma import VISMA_SOURCES
from ml_connector_dagster.config import active_config
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.definitions import build_definitions
from ml_connector_dagster.pools import read_pool_limits
from ml_connector_dagster.run_tags import destination_tag, job_tags
from ml_connector_dagster.sandbox import visma as visma_sandbox
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster_tests.postgres import throwaway_database

pytestmark = pytest.mark.postgres

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BIN = Path(sys.executable).parent
SENSOR = "visma_supplier_invoices_poll"
INVOICES = next(source for source in VISMA_SOURCES if source.name == "supplier_invoices")
DOCUMENTS = [source.key.to_user_string() for source in VISMA_SOURCES if source.partitioned]


def unavailable(what: str, detail: object) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI: {detail}")
    pytest.skip(f"{what} is unreachable: {detail}")


@pytest.fixture(scope="session")
def deploy_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL for Dagster's storage and the ledger; dropped after."""
    with throwaway_database("ml_connector_deploy") as url:
        yield url.rsplit("/", 1)[1]


@dataclass
class Deployment:
    env: dict[str, str]
    database: str
    home: Path

    @property
    def db_url(self) -> str:
        return f"{POSTGRES}/{self.database}"

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command of the deployment (a dagster or ml-connector CLI) in its own process and environment."""
        return subprocess.run([str(BIN / command[0]), *command[1:]], env=self.env, cwd=PROJECT, text=True,
                              capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def deployment(deploy_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """DAGSTER_HOME holding deploy/dagster.yaml, its env vars on the fresh database, Visma served."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    with served(VismaSimulator(size=200)) as visma, pytest.MonkeyPatch.context() as patch:
        connector = home / "connector.yaml"
        connector.write_text(yaml.safe_dump({"systems": {"visma": {
            "mode": "sandbox", "base_url": visma.base_url, "token_url": f"{visma.base_url}/connect/token",
            "rate_per_s": 1000, "burst": 1000,
        }}}))
        env = {
            "DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
            "DAGSTER_PG_USERNAME": "postgres", "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": deploy_database,
            "ML_CONNECTOR_CONFIG": str(connector), "ML_CONNECTOR_HOME": str(home),
            "ML_CONNECTOR_DB_URL": f"{POSTGRES}/{deploy_database}",
            "VISMA_CLIENT_ID": visma_sandbox.DEMO_CLIENT_ID, "VISMA_CLIENT_SECRET": visma_sandbox.DEMO_CLIENT_SECRET,
            "VISMA_TENANT_ID": visma_sandbox.DEMO_TENANT_ID, "VISMA_WEBHOOK_SECRET": visma_sandbox.DEMO_WEBHOOK_SECRET,
        }
        for name, value in env.items():
            patch.setenv(name, value)
        active_config.cache_clear()
        yield Deployment({**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
                         deploy_database, home)
    active_config.cache_clear()


def test_the_deploy_instance_is_postgres_with_a_run_queue(deployment: Deployment) -> None:
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert {"key": destination_tag("jira"), "limit": 2} in queue.tag_concurrency_limits


def test_the_deploy_queue_is_dequeued_every_second_in_threads(deployment: Deployment) -> None:
    with dg.DagsterInstance.get() as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        assert (coordinator.dequeue_interval_seconds, coordinator.dequeue_use_threads,
                coordinator.dequeue_num_workers) == (1, True, 4)  # fmt: skip
        assert instance.get_concurrency_config().pool_config.pool_granularity.value == "op"


def test_a_run_writing_to_a_busy_destination_waits_in_the_deploy_queue(deployment: Deployment) -> None:
    """Two Jira-writing runs in progress: a third waits (a poll run writing Jira and monday too); a
    run writing monday only goes. Dagster's own counter, fed the deploy instance's limits."""

    def run(writes: list[str], status: dg.DagsterRunStatus) -> dg.DagsterRun:
        return dg.DagsterRun(job_name="any", run_id=secrets.token_hex(8), status=status,
                             tags=job_tags("visma_jira", writes=writes))

    with dg.DagsterInstance.get() as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        limits = list(queue.tag_concurrency_limits)
    started = [run(["jira"], dg.DagsterRunStatus.STARTED) for _ in range(2)]
    counter = TagConcurrencyLimitsCounter(limits, started)
    assert counter.is_blocked(run(["jira"], dg.DagsterRunStatus.NOT_STARTED))
    assert counter.is_blocked(run(["jira", "monday", "asana"], dg.DagsterRunStatus.NOT_STARTED))
    assert not counter.is_blocked(run(["monday"], dg.DagsterRunStatus.NOT_STARTED))
    asana_busy = TagConcurrencyLimitsCounter(limits, [run(["asana"], dg.DagsterRunStatus.STARTED)])
    assert asana_busy.is_blocked(run(["asana"], dg.DagsterRunStatus.NOT_STARTED))  # 150 requests/min: one at a time


def test_the_pool_limits_are_written_into_the_instance(deployment: Deployment) -> None:
    done = deployment.run("ml-connector", "deploy", "pools", str(DEPLOY / "pools.yaml"))
    assert done.returncode == 0, done.stderr[-2000:]
    limits = read_pool_limits(DEPLOY / "pools.yaml")
    assert set(limits) == {f"{vendor}_api" for vendor in ("jira", "visma", "asana", "monday", "acumatica", "jaggaer")}
    with dg.DagsterInstance.get() as instance:
        assert {pool: instance.event_log_storage.get_concurrency_info(pool).slot_count for pool in limits} == limits


def test_the_deploy_workspace_loads_the_code_location(deployment: Deployment) -> None:
    done = deployment.run("dagster", "definitions", "validate", "-w", str(DEPLOY / "workspace.yaml"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful for code location ml_connector" in done.stdout + done.stderr


def test_a_sensor_tick_requests_a_run_that_completes_on_postgres(deployment: Deployment) -> None:
    defs = build_definitions(active_config())
    sensor = next(s for s in defs.sensors if s.name == SENSOR)
    with dg.DagsterInstance.get() as instance, dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        request = sensor.evaluate_tick(context).run_requests[-1]
    # The run happens where a deployment runs it: another process, reading the same dagster.yaml.
    done = deployment.run(
        "dagster", "asset", "materialize", "-m", "ml_connector_dagster.definitions", "-a", "defs",
        "--select", INVOICES.key.to_user_string(), "--partition", str(request.partition_key),
        "--config-json", json.dumps(request.run_config),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(INVOICES.key)
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.partition == request.partition_key
        inserted = event.asset_materialization.metadata["inserted"].value
        run = instance.get_run_by_id(event.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    with Ledger.open(deployment.db_url) as ledger:
        assert LandingStore(ledger).count_partition("visma", "supplierInvoice", str(request.partition_key)) == inserted > 0


# -- the scale-out path: two Celery workers on the machine's RabbitMQ --------------------------------


def broker_reachable() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=3).close()
    except OSError as exc:
        unavailable(f"RabbitMQ at {BROKER}", exc)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def ready(self) -> bool:
        return f"{self.name}@" in (text := self.log.read_text(errors="replace")) and " ready." in text

    def stop(self) -> None:
        """SIGTERM the worker's process group (the CLI, celery and its pool), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def celery_workers(deployment: Deployment, tmp_path: Path) -> Iterator[tuple[str, list[Worker]]]:
    """Two `dagster-celery worker start` processes on a queue of their own; stopped whatever happens."""
    broker_reachable()
    queue = f"ml_connector_test_{secrets.token_hex(4)}"
    deployment.env.update({"DAGSTER_CELERY_BROKER_URL": BROKER, "DAGSTER_CELERY_QUEUE": queue})
    workers: list[Worker] = []
    try:
        for letter in ("a", "b"):
            name = f"{queue}-{letter}"
            log = tmp_path / f"worker-{letter}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(DEPLOY / "celery.yaml"), "-q", queue, "-n", name,
                     "--", "-c", "1", "--without-mingle", "--without-gossip"],
                    env=deployment.env, cwd=PROJECT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            workers.append(Worker(name, process, log))
        deadline = time.monotonic() + 60
        while not all(worker.ready() for worker in workers):
            for worker in workers:
                assert worker.process.poll() is None, worker.log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the Celery workers did not get ready within 60 s"
            time.sleep(0.3)
        yield queue, workers
    finally:
        for worker in workers:
            worker.stop()
        _delete_queue(queue)


def _delete_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(BROKER, connect_timeout=3) as connection:
        connection.default_channel.queue_delete(queue)


def test_two_celery_workers_share_the_steps_of_a_run(
    deployment: Deployment, celery_workers: tuple[str, list[Worker]]
) -> None:
    queue, workers = celery_workers
    partition = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    with dg.DagsterInstance.get() as instance:
        before = {run.run_id for run in instance.get_runs()}
    done = deployment.run(
        "dagster", "asset", "materialize", "-m", "ml_connector_dagster.deploy", "-a", "defs",
        "--select", ",".join(DOCUMENTS), "--partition", partition,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with dg.DagsterInstance.get() as instance:
        [run] = [run for run in instance.get_runs() if run.run_id not in before]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        ran_on: dict[str, str] = {}
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = record.dagster_event.engine_event_data if record.dagster_event else None
            if data is not None and "Celery worker" in data.metadata:
                ran_on[str(record.dagster_event.step_key)] = str(data.metadata["Celery worker"].value)
        materialized = {key.to_user_string() for key in instance.get_asset_keys()
                        if instance.get_latest_materialization_event(key) is not None}
    assert {step for step in ran_on if not step.endswith("_dead_letters")} == {
        "__".join(dg.AssetKey.from_user_string(key).path) for key in DOCUMENTS
    }
    assert {host.split("@")[0] for host in ran_on.values()} == {worker.name for worker in workers}
    assert set(DOCUMENTS) <= materialized
    assert f'to queue "{queue}"' in done.stdout + done.stderr


def test_only_the_deploy_location_uses_celery(deployment: Deployment) -> None:
    from ml_connector_dagster.deploy import build_celery_definitions

    assert build_definitions(active_config()).executor is dg.in_process_executor
    assert build_celery_definitions(active_config()).executor.name == "celery"
