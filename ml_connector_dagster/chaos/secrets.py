"""The fourth figure: no secret a schedule used may show up in what its runs left behind.

The scanner, the collectors and the forms a leak takes (whole, URL-encoded, JSON-escaped, base64,
truncated) are the security suite's (``ml_connector_dagster_tests/security/secret_scan.py``); this
module only says what a chaos schedule scans: its simulators' credentials and every token they issued,
the demo credentials in its environment, against its runs (config, tags, every event: metadata, errors
with stacks, log lines), the Python log records it captured and the errors the harness saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_connector_dagster_tests.security.secret_scan import (
    LogCollector,
    Secret,
    SecretScanner,
    secrets_from_environ,
    secrets_from_simulator,
)

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["LogCollector", "SecretCheck", "run_texts"]


def run_texts(instance: Any, run_ids: Iterable[str]) -> Iterator[tuple[str, str]]:
    """The runs' config and tags and every event of their logs, serialized whole, as stored."""
    import json

    from dagster._serdes import serialize_value

    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None:
            continue
        yield f"run {run_id} config", json.dumps(run.run_config, sort_keys=True, default=str)
        yield f"run {run_id} tags", json.dumps(dict(run.tags), sort_keys=True, default=str)
        for event in instance.all_logs(run_id):
            yield (
                f"run {run_id} event {event.dagster_event_type or 'log'} ({event.step_key or '-'})",
                serialize_value(event),
            )


@dataclass
class SecretCheck:
    """The secrets of one schedule, and where to look for them."""

    scanner: SecretScanner

    @classmethod
    def of(cls, simulators: Iterable[Any], environ: Mapping[str, str]) -> SecretCheck:
        """Every secret the simulators know or issued, and the secret-named variables of the schedule."""
        secrets: list[Secret] = []
        for simulator in simulators:
            secrets += secrets_from_simulator(simulator)
        secrets += secrets_from_environ(environ)
        return cls(SecretScanner(secrets))

    def findings(
        self, daemon: Daemon, logs: Iterable[tuple[str, str]], extra: Iterable[tuple[str, str]] = ()
    ) -> list[str]:
        """Each secret found, by name and place (never its value)."""
        texts = [
            *run_texts(daemon.instance, daemon.run_ids),
            *logs,
            *((f"harness error {n}", error) for n, error in enumerate(daemon.errors)),
            *((f"sensor tick log {n}", text) for n, text in enumerate(daemon.tick_logs)),
            *extra,
        ]
        return [str(finding) for finding in self.scanner.scan_all(texts)]
