"""Simulators for the benchmarks: each in its own process, served on loopback, counted.

A benchmark must not share a GIL with the servers it measures against, so every simulator runs in
a child process (``python -m bench.sandbox <name> ...``) under uvicorn, with the FaultPlan's
``latency_ms`` on every vendor request and the rate limits of :class:`bench.limits.BenchLimits`.
The child wraps the simulator's app with :class:`CountingApp`, which answers two bench-only routes:

- ``GET /_bench/counts``: requests per ``METHOD endpoint`` and per status since the last reset
  (``DELETE`` resets); this is how a scenario counts API calls without touching the client. A
  GraphQL endpoint (monday's ``POST /v2``) is counted per operation name (``POST /v2 CreateItems``),
  so a report can say which operations a job spent its requests on.
- ``POST /_bench/touch``: ``advance_s`` later (the simulator's clock moves on), a user edits
  ``count`` documents spread over the table: Visma supplier invoices, Acumatica bills, JAGGAER invoices.

These costs of the simulators themselves are cut in the child, because on a shared 2-core machine
they would otherwise be the bottleneck instead of the API limits under test (a real vendor spends
that CPU on its own servers; the contract tests keep checking both):

- (the Jira simulator still validates every ADF document it is sent: compiled, ~35 µs each)
- the request recorder keeps no bodies (it would parse and mask every body a second time) and
  only the last 200 requests;
- what the simulator holds is moved out of the garbage collector's sight every
  :data:`FREEZE_EVERY` requests (``gc.freeze``): a Jira simulator holding 100k issues (several
  GB of Python objects) otherwise stalls for seconds in full collections, long enough to time a
  bulk create out.

The child exits when its stdin closes (its parent ended).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from ml_connector_dagster.core.collector import pace_for_bulk_work
from ml_connector_dagster.sandbox.framework import FaultPlan, Simulator
from ml_connector_dagster.sandbox.serve import ServedApp

__all__ = ["PROJECT_ROOT", "CountingApp", "SimProcess", "connector_home", "cpu_seconds", "endpoint_of", "pinned_start",
           "sandbox_credentials", "serve_simulator", "served_counts"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # children run `python -m bench...` from here

FREEZE_EVERY = 500  # requests between two gc.freeze() in a child

_ID_SEGMENT = re.compile(r"/(?:[A-Z]+-\d+|\d[\w-]*|[0-9a-f]{8}-[0-9a-f-]{27,})(?=/|$)")
_GRAPHQL_PATHS = ("/v2",)  # monday's one endpoint: counted per operation
_OPERATION = re.compile(rb'^\s*(?:query|mutation)\s+([A-Za-z_]\w*)')
_API_ROOT = re.compile(r"^(?:/ex/jira/[^/]+)?(/rest/api/3|/rest/webhooks/1\.0)?")


def endpoint_of(method: str, path: str) -> str:
    """``METHOD /path`` with record ids and the Jira cloud id folded, e.g. ``POST /rest/api/3/issue/{id}/transitions``."""
    root = _API_ROOT.match(path)
    assert root is not None
    return f"{method} {root.group(1) or ''}{_ID_SEGMENT.sub('/{id}', path[root.end():])}"


def operation_of(body: bytes) -> str:
    """The operation name of a GraphQL request body (``operationName``, else the document's first
    ``query Name``/``mutation Name``); ``anonymous`` when it has none."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return "unparsable"
    if not isinstance(payload, dict):
        return "unparsable"
    if isinstance(payload.get("operationName"), str) and payload["operationName"]:
        return payload["operationName"]
    match = _OPERATION.match(str(payload.get("query") or "").encode())
    return match.group(1).decode() if match else "anonymous"


def pinned_start() -> datetime:
    """Yesterday 22:00 UTC: a simulator pinned there with ``days < 0.9`` puts every record in yesterday's partition."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(hours=2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc), 0 when unknown."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115 - one small read
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CountingApp:
    """ASGI wrapper: counts vendor requests by endpoint and status, serves the ``/_bench`` routes."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.inner = simulator.app
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/_bench/"):
            await self._bench(scope, receive, send)
            return
        if path.startswith("/_sandbox/"):
            await self.inner(scope, receive, send)
            return
        endpoint = endpoint_of(scope["method"], path)
        self._served += 1
        if self._served % FREEZE_EVERY == 0:
            gc.freeze()  # the tenant only grows: keep full collections from walking all of it
        body: list[bytes] | None = [] if scope["method"] == "POST" and path in _GRAPHQL_PATHS else None

        async def recorded_receive() -> Any:
            message = await receive()
            if body is not None and message.get("type") == "http.request":
                body.append(message.get("body", b""))
            return message

        async def counted_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                label = endpoint if body is None else f"{endpoint} {operation_of(b''.join(body))}"
                with self._lock:
                    self.calls[label] += 1
                    self.statuses[str(message["status"])] += 1
            await send(message)

        await self.inner(scope, recorded_receive, counted_send)

    async def _bench(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer: Any
        if scope["path"] == "/_bench/counts":
            with self._lock:
                answer = {"calls": dict(self.calls), "statuses": dict(self.statuses)}
                if scope["method"] == "DELETE":
                    self.calls.clear()
                    self.statuses.clear()
        elif scope["path"] == "/_bench/touch":
            asked = json.loads(body or b"{}")
            answer = {"touched": self._touch(int(asked.get("count", 0)), float(asked.get("advance_s", 0)))}
        else:
            answer = {"error": "unknown bench route"}
        raw = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})

    def _touch(self, count: int, advance_s: float) -> list[str]:
        """``advance_s`` later, a user edits ``count`` documents of the source spread evenly over its table
        (those generated malformed on purpose left out: an edit would not save); their numbers."""
        sim: Any = self.simulator
        sim.clock.advance(advance_s)
        edit = f"edited for the benchmark at {datetime.now(UTC):%H:%M:%S.%f}"
        collection = {"visma": "supplier_invoices", "acumatica": "bills", "jaggaer": "invoices"}.get(sim.name)
        malformed = {record_id for where, record_id, _ in sim.invalid_records() if where == collection}
        if sim.name == "visma":
            table = sim.tables[collection]
            numbers = _spread([number for seq in range(table.count) if (number := table.number(seq)) not in malformed],
                              count)
            for number in numbers:
                sim.update_supplier_invoice(number, description=edit)
        elif sim.name == "acumatica":
            numbers = _spread([bill["ReferenceNbr"] for record_id, bill in sim.records[collection].items()
                               if record_id not in malformed], count)
            for number in numbers:
                sim.update_bill(number, Description=edit)
        elif sim.name == "jaggaer":
            invoices = sim.records[collection]
            numbers = _spread([record_id for record_id in invoices if record_id not in malformed], count)
            for number in numbers:  # J1P invoices carry no free text: the buyer moves the due date a day
                due = datetime.fromisoformat(invoices[number]["dueDate"]) + timedelta(days=1)
                sim.update("invoices", number, dueDate=due.date().isoformat())
        else:
            raise ValueError(f"no documents to touch in the {sim.name} simulator")
        return numbers


def _spread(numbers: list[str], count: int) -> list[str]:
    """``count`` of ``numbers``, evenly spaced from the first."""
    return numbers[::max(1, len(numbers) // max(count, 1))][:count]


def _build(name: str, settings: dict[str, Any]) -> Simulator:
    if name == "visma":
        from ml_connector_dagster.sandbox.visma import VismaSimulator

        return VismaSimulator(size=settings["size"], days=settings["days"],
                              start=datetime.fromisoformat(settings["start"]),
                              rate_limit_per_hour=settings["rate_limit_per_hour"],
                              rate_window_s=settings.get("rate_window_s", 3600.0))
    if name == "acumatica":
        from ml_connector_dagster.sandbox.acumatica import AcumaticaSimulator
        from ml_connector_dagster.sandbox.acumatica.identity import TRIAL, Licence

        return AcumaticaSimulator(size=settings["size"], days=settings["days"],
                                  start=datetime.fromisoformat(settings["start"]),
                                  licence=Licence(api_users=settings["api_users"]) if "api_users" in settings else TRIAL)
    if name == "jaggaer":
        from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator

        return JaggaerSimulator(size=settings["size"], days=settings["days"],
                                start=datetime.fromisoformat(settings["start"]),
                                rate_limit_per_minute=settings["rate_limit_per_minute"])
    if name == "jira":
        from ml_connector_dagster.sandbox.jira import JiraSimulator

        return JiraSimulator(burst_per_s=settings["burst_per_s"], index_delay_s=settings["index_delay_s"])
    if name == "asana":
        from ml_connector_dagster.sandbox.asana import AsanaSimulator
        from ml_connector_dagster.sandbox.asana.tenant import add_synced_history

        asana = AsanaSimulator(premium=settings.get("premium", True))
        add_synced_history(asana.tenant, "Supplier invoices", settings.get("history_tasks", 0))
        return asana
    if name == "monday":
        from ml_connector_dagster.sandbox.monday import MondaySimulator

        return MondaySimulator(complexity_per_minute=settings["complexity_per_minute"])
    raise SystemExit(f"no benchmark simulator called {name!r}")


def _lighten_simulators() -> None:
    """Cut the simulators' own CPU costs in this child (see the module doc)."""
    from ml_connector_dagster.sandbox import framework

    framework.parse_body = lambda raw, content_type: None  # type: ignore[assignment]


def serve_simulator(name: str, settings: dict[str, Any]) -> None:
    """The child's body: build, serve, print the URL as one JSON line, serve until stdin closes."""
    _lighten_simulators()
    pace_for_bulk_work()
    simulator = _build(name, settings)
    simulator.requests = collections.deque(maxlen=200)  # type: ignore[assignment]
    simulator.set_faults(FaultPlan(latency_ms=settings["latency_ms"], seed=1))
    simulator.served = True
    gc.freeze()
    server = ServedApp(CountingApp(simulator), f"bench {name}").start(timeout_s=60)
    if hasattr(simulator, "site_url"):
        simulator.site_url = server.base_url  # type: ignore[attr-defined]
    print(json.dumps({"url": server.base_url, "credentials": simulator.credentials()}), flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    server.stop()
    simulator.close()


def served_counts(url: str, *, reset: bool = False) -> dict[str, Any]:
    """Requests by endpoint and status the simulator served at ``url`` counted since the last reset
    (``reset``: and start counting again)."""
    response = httpx.request("DELETE" if reset else "GET", f"{url}/_bench/counts", timeout=30)
    response.raise_for_status()
    return response.json()


@dataclass
class SimProcess:
    """A simulator child process, seen from the benchmark."""

    name: str
    url: str
    credentials: dict[str, Any]
    process: subprocess.Popen[str]

    def counts(self, *, reset: bool = False) -> dict[str, Any]:
        """Requests by endpoint and status since the last reset."""
        return served_counts(self.url, reset=reset)

    def touch(self, count: int, advance_s: float = 0.0) -> list[str]:
        """``advance_s`` later on the simulator's clock, a user edits ``count`` documents of the source
        (Visma supplier invoices, Acumatica bills, JAGGAER invoices)."""
        answer = httpx.post(f"{self.url}/_bench/touch", json={"count": count, "advance_s": advance_s}, timeout=120)
        return answer.json()["touched"]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@contextmanager
def connector_home(path: str) -> Iterator[None]:
    """ML_CONNECTOR_HOME at ``path`` for the block (the sandbox Vault key lives there)."""
    before = os.environ.get("ML_CONNECTOR_HOME")
    os.environ["ML_CONNECTOR_HOME"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ML_CONNECTOR_HOME", None)
        else:
            os.environ["ML_CONNECTOR_HOME"] = before


@contextmanager
def sandbox_credentials(config: Any) -> Iterator[None]:
    """The sandbox systems' demo credentials in the environment for the block (resources read them
    through ``EnvVar``, as in production); the variables it set are removed after."""
    from ml_connector_dagster.definitions import use_sandbox_credentials

    added: dict[str, str] = {}
    use_sandbox_credentials(config, added)
    fresh = {name: value for name, value in added.items() if name not in os.environ}
    os.environ.update(fresh)
    try:
        yield
    finally:
        for name in fresh:
            os.environ.pop(name, None)


@contextmanager
def simulator_process(name: str, **settings: Any) -> Iterator[SimProcess]:
    """Run simulator ``name`` in a child process for the block; yields its URL and demo credentials."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sandbox", name, json.dumps(settings, default=str)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {name} simulator process did not start (exit code {process.wait()})")
        started = json.loads(line)
        sim = SimProcess(name, started["url"], started["credentials"], process)
    except BaseException:
        process.kill()
        process.wait(timeout=5)
        raise
    try:
        yield sim
    finally:
        sim.stop()


def _main() -> None:
    parser = argparse.ArgumentParser(description="Serve one simulator for the benchmarks (used by the scenarios).")
    parser.add_argument("name", choices=["visma", "jira", "asana", "monday", "acumatica", "jaggaer"])
    parser.add_argument("settings", help="JSON object of simulator settings")
    arguments = parser.parse_args()
    serve_simulator(arguments.name, json.loads(arguments.settings))


if __name__ == "__main__":
    _main()
