"""``ml-connector ping`` and the ``ping`` job: authenticate to every configured system, make one
harmless read, and say what was seen, or what failed and how to fix it.

A system plugs in with ``systems/<vendor>/ping.py`` exposing two functions:

- ``probe(resource) -> str``: authenticate with the system's (initialized) resource, make one cheap
  read, and describe what it could see ("tenant 1234567, 200 supplier invoices");
- ``fix_hint(error, settings) -> str | None``: the vendor-specific advice for an error, or None for
  the generic advice given here (unreachable URL, rate limit, server error, unset variable).

A system without such a module is listed as "no probe" and does not fail the ping. Every line that
leaves this module is redacted with the values of the configured secret variables, on top of the
redaction the clients already apply.
"""

# No `from __future__ import annotations`: Dagster checks the op's context annotation as a type.
import importlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import BaseModel, ConfigDict

from ml_connector_dagster.config import ConnectorConfig, Systems, SystemSettings
from ml_connector_dagster.core.http import (
    ApiError,
    AuthenticationFailed,
    RateLimited,
    ServerError,
    TransportFailure,
    redact,
)

__all__ = [
    "JOB_NAME",
    "PingReport",
    "PingResult",
    "build_ping_job",
    "configured_probes",
    "configured_systems",
    "ping_configured",
    "ping_system",
    "secret_values",
]

JOB_NAME = "ping"
_ERROR_CHARS = 400
# Settings fields naming a variable that holds a secret (identifiers such as a tenant id are shown).
_SECRET_FIELD = re.compile(r"(secret|token|password|pat)_env$")
_UNSET_VARIABLE = re.compile(r'environment variable "?([A-Za-z_][A-Za-z0-9_]*)"? which is not set')


class PingResult(BaseModel):
    """One system's answer: could it authenticate, how fast, what did it see, or what went wrong."""

    model_config = ConfigDict(frozen=True)

    system: str
    mode: str
    ok: bool | None  # None: this system has no probe yet
    latency_ms: int | None = None
    seen: str = ""
    error: str = ""
    hint: str = ""

    @property
    def status(self) -> str:
        return {True: "ok", False: "FAIL", None: "-"}[self.ok]


class PingReport(BaseModel):
    """Every configured system's :class:`PingResult`, in connector.yaml's order."""

    model_config = ConfigDict(frozen=True)

    results: list[PingResult]

    @property
    def ok(self) -> bool:
        """No system failed (systems without a probe do not count)."""
        return all(result.ok is not False for result in self.results)

    @property
    def failed(self) -> list[str]:
        return [result.system for result in self.results if result.ok is False]

    def render(self) -> str:
        """A plain-text table; a failure's error and fix go on their own indented lines."""
        header = ("system", "mode", "auth", "latency", "what it could see")
        rows = [(r.system, r.mode, r.status, "" if r.latency_ms is None else f"{r.latency_ms} ms",
                 r.seen if r.ok is not False else "") for r in self.results]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join([*(cell.ljust(width) for cell, width in zip(cells[:4], widths, strict=True)),
                              cells[4]]).rstrip()

        indent = " " * (sum(widths) + 2 * 4)
        lines = [line(header)]
        for result, row in zip(self.results, rows, strict=True):
            lines.append(line(row))
            if result.ok is False:
                lines.append(f"{indent}error: {result.error}")
                if result.hint:
                    lines.append(f"{indent}fix:   {result.hint}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table in Markdown (run metadata in the Dagster UI)."""
        lines = ["| system | mode | auth | latency ms | seen / error | fix |", "| --- | --- | --- | --- | --- | --- |"]
        for r in self.results:
            detail = r.seen if r.ok is not False else r.error
            cells = [r.system, r.mode, r.status, "" if r.latency_ms is None else str(r.latency_ms), detail, r.hint]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(lines)


def secret_values(config: ConnectorConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """The current values of every variable connector.yaml names as holding a secret."""
    env = os.environ if environ is None else environ
    values: list[str] = []
    for name in Systems.model_fields:
        settings = getattr(config.systems, name)
        if settings is None:
            continue
        for field in type(settings).model_fields:
            if _SECRET_FIELD.search(field) and (value := env.get(getattr(settings, field))):
                values.append(value)
    return values


def probe_module(system: str) -> ModuleType | None:
    """``systems/<system>/ping.py``, or None while that system has none."""
    name = f"ml_connector_dagster.systems.{system}.ping"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in (name, f"ml_connector_dagster.systems.{system}"):
            return None
        raise  # a probe that exists but is broken must say so


def configured_systems(config: ConnectorConfig) -> list[str]:
    """The configured systems, in connector.yaml's order."""
    return [name for name in Systems.model_fields if getattr(config.systems, name) is not None]


def configured_probes(config: ConnectorConfig) -> list[str]:
    """The configured systems that have a probe, in connector.yaml's order."""
    return [name for name in configured_systems(config) if probe_module(name) is not None]


def _generic_hint(system: str, error: BaseException, settings: SystemSettings) -> str:
    if isinstance(error, TransportFailure):
        parts = urlsplit(error.url or str(settings.base_url))
        where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else str(settings.base_url)
        if settings.mode == "sandbox":
            return (f"could not connect to {where}: is the sandbox running (`ml-connector sandbox serve`), "
                    f"and is systems.{system}.base_url its address?")
        return (f"could not connect to {where}: check systems.{system}.base_url (and its other URLs), "
                "that the host name resolves and that the port accepts connections")
    if isinstance(error, RateLimited):
        wait = f" for {error.retry_after_s:.0f} s" if error.retry_after_s else ""
        return f"the API is throttling this client: wait{wait} and ping again"
    if isinstance(error, ServerError):
        return "the API answered with a server error: try again later or check the vendor's status page"
    unset = _UNSET_VARIABLE.findall(str(error))
    if unset:
        return f"set {', '.join(dict.fromkeys(unset))}"
    if isinstance(error, AuthenticationFailed):
        names = [getattr(settings, f) for f in type(settings).model_fields
                 if f.endswith("_env") and not f.startswith(("webhook", "signing", "cxml"))]
        return f"check the credentials in {', '.join(names)}"
    return ""


def _describe(error: BaseException) -> str:
    if isinstance(error, dg.DagsterInvalidConfigError):
        # Only the messages: the error's own text may quote the config it was given.
        return "; ".join(e.message for e in error.errors) or "the resource's configuration is invalid"
    if isinstance(error, ApiError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def ping_system(system: str, settings: SystemSettings, resource: Callable[[], Any],
                secrets: Sequence[str] = ()) -> PingResult:
    """Probe one system with the resource ``resource()`` returns, timed, never raising.

    Building the resource is part of the ping (and of its latency): an unset variable is a failure
    of this system like any other.
    """
    module = probe_module(system)
    if module is None:
        return PingResult(system=system, mode=settings.mode, ok=None, seen="no probe for this system yet")
    started = time.perf_counter()
    try:
        seen = module.probe(resource())
    except Exception as error:  # noqa: BLE001 - every failure becomes a row of the report
        latency = round((time.perf_counter() - started) * 1000)
        hint = module.fix_hint(error, settings) or _generic_hint(system, error, settings)
        return PingResult(system=system, mode=settings.mode, ok=False, latency_ms=latency,
                          error=redact(_describe(error), secrets)[:_ERROR_CHARS], hint=redact(hint, secrets))
    latency = round((time.perf_counter() - started) * 1000)
    return PingResult(system=system, mode=settings.mode, ok=True, latency_ms=latency, seen=redact(seen, secrets))


def ping_configured(config: ConnectorConfig, resources: Mapping[str, Any],
                    on_result: Callable[[PingResult], None] | None = None) -> PingReport:
    """Ping every configured system with its (not yet initialized) resource from the code location.

    Initialization happens inside each ping, so an unset variable fails that system alone.
    ``on_result`` hears each result as it arrives (e.g. to move a progress bar). The systems are
    pinged one after the other: the probes of Jira and Acumatica open the ledger, whose migration
    (alembic's module-global context) must not run in two threads at once.
    """
    secrets = secret_values(config)
    results = []
    for name in configured_systems(config):
        settings = getattr(config.systems, name)
        resource = resources.get(name)
        if resource is None:
            result = PingResult(system=name, mode=settings.mode, ok=None, seen="no resource in the code location")
        else:
            result = ping_system(name, settings, resource.process_config_and_initialize, secrets)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return PingReport(results=results)


def build_ping_job(config: ConnectorConfig, systems: Sequence[str]) -> dg.JobDefinition:
    """The ``ping`` job: one op that probes ``systems`` with the code location's resources."""
    settings = {name: getattr(config.systems, name) for name in systems}

    @dg.op(name="ping_systems", required_resource_keys=set(systems), out=dg.Out(dg.Nothing),
           description="Authenticate to every configured system and make one harmless read.")
    def ping_systems(context: dg.OpExecutionContext) -> None:
        secrets = secret_values(config)
        report = PingReport(results=[
            ping_system(name, settings[name], lambda name=name: getattr(context.resources, name), secrets)
            for name in systems
        ])
        context.log.info("\n" + report.render())
        metadata = {
            "report": dg.MetadataValue.md(report.markdown()),
            **{r.system: dg.MetadataValue.text(f"{r.status} {r.latency_ms} ms: {r.seen or r.error}")
               for r in report.results},
        }
        if not report.ok:
            raise dg.Failure(description=f"ping failed for {', '.join(report.failed)}", metadata=metadata)
        context.add_output_metadata(metadata)

    @dg.job(name=JOB_NAME, description="Authenticate to every configured system and make one harmless read.",
            tags={"ml_connector/job": JOB_NAME})
    def ping() -> None:
        ping_systems()

    return ping

