"""A headless sync of every flow against the six served simulators, with faults and auth failures.

:func:`faulty_sync` serves the simulators and the webhook receiver on free loopback ports, builds the
code location from the shipped sandbox config (every flow on, small tenants), and runs
``ml-connector sync``'s :func:`~ml_connector_dagster.sync.run_sync` four times on one temporary
Dagster instance:

1. with transient faults everywhere: 429 bursts, 5xx, connection resets, timeouts, every access
   token expired;
2. clean, completing what the faults left undone (webhook registrations and their handshakes);
3. with refused credentials: Jira's and Acumatica's refresh tokens revoked (``invalid_grant``), a
   wrong Acumatica password, an unknown Asana PAT and monday token;
4. with Jira's token endpoint failing (503 on every refresh).

Everything the runs leave is captured for the secret scan: log records of every logger (DEBUG and
up), the process's stdout/stderr (file descriptors too), the instance's runs and events, the
ledger's tables, the files at rest, the printed reports; and every secret used is collected.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from ml_connector_dagster.config import ConnectorConfig, parse_config
from ml_connector_dagster.core import http
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import SANDBOX_KEY_FILE, Vault
from ml_connector_dagster.definitions import build_definitions, use_sandbox_credentials
from ml_connector_dagster.sandbox.framework import FaultPlan, Simulator
from ml_connector_dagster.sandbox.launch import create_simulator
from ml_connector_dagster.sandbox.serve import ServedApp, ServedSimulator
from ml_connector_dagster.sync import SyncReport, run_sync
from ml_connector_dagster.webhooks.configured import configured_receiver

from .secret_scan import (
    LogCollector,
    Secret,
    file_texts,
    is_secret_name,
    secrets_from_environ,
    secrets_from_sandbox,
    secrets_from_simulator,
    secrets_from_vault,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("visma", "jaggaer", "acumatica", "jira", "asana", "monday")
TENANT = {"seed": 0, "size": 6, "days": 1}
# Four syncs within a minute: quotas sized so that none of them waits out a window (not the point here).
QUOTAS: dict[str, dict[str, Any]] = {
    "monday": {"complexity_per_minute": 1_000_000_000},
    "asana": {"premium": True, "time_scale": 0.1},
}
# Short enough that a hung request costs little, long enough for an honest answer on a busy machine.
SOURCE_TIMEOUT_S = 3.0
HANG_S = 4.0
WRONG = {
    "ACUMATICA_PASSWORD": "wrong-acumatica-password-7d1f0c9e2b",
    "ASANA_PAT": "2/1209100000000011/1209100000009000:0badc0ffee0badc0ffee0badc0ffee00",
    "MONDAY_API_TOKEN": "eyJhbGciOiJIUzI1NiJ9.eyJ0aWQiOjF9.wrong-monday-token-5e8a1c",
}


def _transient_faults(seed: int, *, source: bool) -> FaultPlan:
    # A source's reads are GETs, retried through every fault (a source step that still failed would
    # wait out Dagster's retry delays); a destination meets the faults on every call but the token
    # endpoint, and a push that fails is a failed step whose error the scan reads.
    scope: dict[str, Any] = {"methods": ["GET"]} if source else {"paths": [r"^/(?!oauth/token$)"]}
    return FaultPlan(seed=seed, rate_limit_burst=2, retry_after_s=0, error_rate=0.08, reset_rate=0.04,
                     timeout_before_rate=0.02 if source else 0.0, hang_s=HANG_S, expire_tokens=True,
                     **scope)  # fmt: skip


PHASE_ONE_FAULTS = {name: _transient_faults(seed, source=name in ("visma", "jaggaer", "acumatica"))
                    for seed, name in enumerate(SYSTEMS, start=1)}  # fmt: skip


def sandbox_config(ports: dict[str, int], receiver_url: str) -> ConnectorConfig:
    """The shipped sandbox config on ``ports``: every system and flow, small tenants, no op retries."""
    shipped = yaml.safe_load((PROJECT_ROOT / "ml_connector_dagster" / "connector.sandbox.yaml").read_text())
    for name, system in shipped["systems"].items():
        for key in ("base_url", "token_url", "auth_url", "cxml_url"):
            if key in system:
                path = system[key].split("://", 1)[1].partition("/")[2]
                system[key] = f"http://127.0.0.1:{ports[name]}" + (f"/{path}" if path else "")
        system.update({"rate_per_s": 1000, "burst": 1000})
        if name in ("visma", "jaggaer", "acumatica"):
            system["timeout_s"] = SOURCE_TIMEOUT_S
    shipped["sandbox"].update({**TENANT, "ports": ports})
    flows = shipped["flows"]
    for flow in flows.values():
        flow["op_retries"] = 0  # a failed step fails the run at once (its error is what the scan reads)
    flows["visma_monday"]["webhook_url"] = f"{receiver_url}/webhooks/monday"
    flows["visma_asana"]["return_path"]["receiver_url"] = receiver_url
    flows["visma_jira"]["jira_webhooks"] = {"receiver_url": f"{receiver_url}/webhooks/jira"}
    return parse_config(shipped, "security sandbox config")


def secret_env_names(config: ConnectorConfig) -> list[str]:
    """The variables config names for secrets (client secrets, tokens, passwords, webhook secrets)."""
    names = []
    for system in SYSTEMS:
        settings = getattr(config.systems, system)
        names += [
            getattr(settings, f)
            for f in type(settings).model_fields
            if f.endswith("_env") and is_secret_name(f)
        ]
    webhooks = config.webhooks
    return [*names, webhooks.acumatica.header_value_env, webhooks.monday.signing_secret_env]


@dataclass(frozen=True)
class DailyAudit:
    """One flow's ``reconcile_<flow>`` run of the synced day: did it run, what did its push write, what
    did its reconciled checks say."""

    success: bool
    written: int  # created + updated by the run's destination assets
    reconciled: dict[str, bool]  # asset -> the check passed


def _daily_audits(config: ConnectorConfig, partition: str, instance: dg.DagsterInstance) -> dict[str, DailyAudit]:
    """Every flow's daily audit (``partition_audits``) of ``partition``, as its schedule launches it."""
    defs = build_definitions(config)
    audits = {}
    for job in defs.get_repository_def().get_all_jobs():
        if not job.name.startswith("reconcile_"):
            continue
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
        written = sum(int(value.value) for event in result.get_asset_materialization_events()
                      for name, value in event.step_materialization_data.materialization.metadata.items()
                      if name in ("created", "updated") and isinstance(value.value, int))  # fmt: skip
        reconciled = {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()
                      if e.check_name == "reconciled"}  # fmt: skip
        audits[job.name.removeprefix("reconcile_")] = DailyAudit(result.success, written, reconciled)
    return audits


@dataclass
class SandboxRun:
    """What the runs left behind, and the secrets they used."""

    home: Path
    instance_dir: Path
    ledger_url: str
    reports: list[SyncReport]
    logs: list[tuple[str, str]]
    output: list[tuple[str, str]]
    secrets: list[Secret]
    simulators: dict[str, Simulator]
    seconds: list[float] = field(default_factory=list)
    audits: dict[str, DailyAudit] = field(default_factory=dict)  # flow -> its daily audit of the clean day

    def ledger(self) -> Ledger:
        return Ledger.open(self.ledger_url)

    def files_at_rest(self) -> list[tuple[str, str]]:
        """The instance's and the connector home's files, but the key file (where the key belongs)."""
        return [*file_texts(self.instance_dir), *file_texts(self.home, exclude=[SANDBOX_KEY_FILE])]


@contextlib.contextmanager
def _captured_output() -> Iterator[list[tuple[str, str]]]:
    """Python's and the file descriptors' stdout/stderr for the duration of the block."""
    captured: list[tuple[str, str]] = []
    sys.stdout.flush()
    sys.stderr.flush()
    streams = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        files = {1: out, 2: err}
        saved = {fd: os.dup(fd) for fd in files}
        try:
            for fd, file in files.items():
                os.dup2(file.fileno(), fd)
            with contextlib.redirect_stdout(streams["stdout"]), contextlib.redirect_stderr(streams["stderr"]):
                yield captured
        finally:
            for fd, file in files.items():
                os.dup2(saved[fd], fd)
                os.close(saved[fd])
                file.seek(0)
                captured.append((f"fd {fd}", file.read().decode("utf-8", "replace")))
            captured += [(f"python {name}", stream.getvalue()) for name, stream in streams.items()]


@contextlib.contextmanager
def _all_logs() -> Iterator[LogCollector]:
    collector = LogCollector()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(level)


def _revoke_refresh_tokens(simulator: Simulator) -> None:
    with simulator.lock:
        refresh = [token.value for token in simulator.tokens.values() if token.kind == "refresh"]
    for value in refresh:
        simulator.revoke_token(value)


def _fast_http_backoff(self: http.RetryPolicy, attempt: int, rng: Any = None) -> float:
    # The HTTP retries still honour Retry-After and the rate budget; only the exponential pause shrinks.
    return 0.01


@contextlib.contextmanager
def faulty_sync(root: Path) -> Iterator[SandboxRun]:
    """Serve, run the four syncs, capture; yield what was left (servers are stopped on exit)."""
    home = root / "home"
    home.mkdir()
    instance_dir = root / "dagster"
    ledger_url = f"sqlite:///{home / 'ledger.db'}"
    simulators = {name: create_simulator(name, **TENANT, **QUOTAS.get(name, {})) for name in SYSTEMS}
    # One invoice malformed on purpose, so that a dead letter (which keeps the record as Visma sent it)
    # is always among the ledger rows scanned, whatever the random faults leave undone.
    visma = simulators["visma"]
    visma.update_supplier_invoice(visma.tables["supplier_invoices"].number(0), amount="not a number")  # type: ignore[attr-defined]
    servers: list[ServedApp] = []
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"ML_CONNECTOR_HOME": str(home), "DAGSTER_HOME": str(instance_dir),
                            "ML_CONNECTOR_DB_URL": ledger_url}.items():  # fmt: skip
            patch.setenv(name, value)
        patch.delenv("ML_CONNECTOR_SECRET_KEY", raising=False)
        patch.setattr(http.RetryPolicy, "backoff_s", _fast_http_backoff)
        ledger = Ledger.open(ledger_url)
        try:
            for simulator in simulators.values():
                servers.append(ServedSimulator(simulator).start())
            ports = {
                server.simulator.name: server.port
                for server in servers
                if isinstance(server, ServedSimulator)
            }
            receiver_port = _free_port()
            receiver_url = f"http://127.0.0.1:{receiver_port}"
            config = sandbox_config(ports, receiver_url)
            environ: dict[str, str] = {}
            use_sandbox_credentials(config, environ)
            environ[config.webhooks.acumatica.header_value_env] = simulators["acumatica"].credentials()[
                "push_header_value"
            ]
            for name, value in environ.items():
                patch.setenv(name, value)
            servers.append(ServedApp(configured_receiver(config, ledger), "webhook receiver",
                                     port=receiver_port).start())  # fmt: skip
            for name, simulator in simulators.items():
                simulator.webhook_url = f"{receiver_url}/webhooks/{name}"
            simulators["jira"].site_url = f"http://127.0.0.1:{ports['jira']}"
            yield _run_phases(home, instance_dir, ledger_url, config, simulators, ports, patch)
        finally:
            for server in reversed(servers):
                server.stop()
            for simulator in simulators.values():
                simulator.close()
            ledger.dispose()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_phases(
    home: Path,
    instance_dir: Path,
    ledger_url: str,
    config: ConnectorConfig,
    simulators: dict[str, Simulator],
    ports: dict[str, int],
    patch: pytest.MonkeyPatch,
) -> SandboxRun:
    partition = datetime.now(UTC).date().isoformat()
    reports: list[SyncReport] = []
    seconds: list[float] = []
    secrets: list[Secret] = []

    def faulty() -> None:
        for name, plan in PHASE_ONE_FAULTS.items():
            simulators[name].set_faults(plan)

    def clean() -> None:
        for simulator in simulators.values():
            simulator.clear_faults()

    def refused() -> None:
        clean()
        for name in ("jira", "acumatica"):
            _revoke_refresh_tokens(simulators[name])
            simulators[name].set_faults(FaultPlan(expire_tokens=True))
        for name, value in WRONG.items():
            patch.setenv(name, value)

    def token_endpoint_down() -> None:
        simulators["jira"].set_faults(FaultPlan(paths=["^/oauth/token$"], error_rate=1.0, expire_tokens=True))

    audits: dict[str, DailyAudit] = {}
    instance_dir.mkdir()
    with _all_logs() as logs, _captured_output() as output, dg.DagsterInstance.get() as instance:
        # The faulty sync creates under fire; the clean one completes what it left (webhook
        # registrations and their handshakes); then credentials are refused, then a token endpoint fails.
        for phase in (faulty, clean, refused, token_endpoint_down):
            phase()
            reports.append(
                _timed(run_sync, seconds, partition, defs=build_definitions(config), instance=instance)
            )
            if phase is clean:
                # The day just synced, audited as each flow's daily schedule would (its logs are scanned too).
                audits = _daily_audits(config, partition, instance)
                _a_person_completes_a_synced_task(simulators["asana"])
            for simulator in simulators.values():
                flush = getattr(simulator, "flush_webhooks", None)  # JAGGAER sends none
                if flush is not None:
                    flush(10)
            secrets += _secrets_in_use(config, simulators, ports, home, ledger_url)
        clean()
    for number, report in enumerate(reports, start=1):
        print(report.render())  # noqa: T201 - what `ml-connector sync` prints is scanned too
        output.append((f"sync report {number}", report.render()))
    return SandboxRun(home=home, instance_dir=instance_dir, ledger_url=ledger_url, reports=reports,
                      logs=logs.texts, output=output, secrets=sorted(set(secrets), key=lambda s: s.name),
                      simulators=simulators, seconds=seconds, audits=audits)  # fmt: skip


def _a_person_completes_a_synced_task(asana: Any) -> None:
    """The return path's webhooks carry a person's changes only (not the flow's own creates): make one."""
    visma_id = asana.field_gid("Visma ID")
    synced = next(gid for gid, task in asana.tenant.tasks.items() if task.custom.get(visma_id) and not task.completed)
    asana.edit_task(synced, completed=True)


def _timed(function: Any, seconds: list[float], *args: Any, **kwargs: Any) -> Any:
    started = time.monotonic()
    try:
        return function(*args, **kwargs)
    finally:
        seconds.append(time.monotonic() - started)


def _secrets_in_use(
    config: ConnectorConfig,
    simulators: dict[str, Simulator],
    ports: dict[str, int],
    home: Path,
    ledger_url: str,
) -> list[Secret]:
    found: list[Secret] = []
    for name, simulator in simulators.items():
        found += secrets_from_sandbox(name, f"http://127.0.0.1:{ports[name]}")
        found += secrets_from_simulator(simulator)
    found += secrets_from_environ(os.environ, secret_env_names(config))
    key = (home / SANDBOX_KEY_FILE).read_text().strip()
    found.append(Secret("vault key", key))
    with Ledger.open(ledger_url) as ledger:
        found += secrets_from_vault(Vault(ledger.engine, [key]))
    return found
