"""A run worker that has done its imports before it is given a run.

``python -m ml_connector_dagster.launcher.worker MODULE...`` imports Dagster's run entry point and
the code location's modules, loads their definitions, then waits for one line on stdin: the
serialized ``ExecuteRunArgs`` that ``dagster api execute_run`` would take as its argument. It runs
that one run exactly as ``dagster api execute_run`` does and exits. End of input before a line
(the launcher discarded it, or died) exits quietly.

The point is latency: a fresh process spends seconds importing Dagster, pandas, SQLAlchemy and the
connector before it can execute a step; a webhook's run should not wait for that.
"""

from __future__ import annotations

import importlib
import sys

from dagster import Definitions


def preload(modules: list[str]) -> None:
    """Import ``modules`` and resolve any ``Definitions`` they hold, so the run finds them built."""
    for name in modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Definitions):
                value.get_repository_def()


def main(argv: list[str]) -> int:
    """Preload ``argv``'s modules, then execute the run whose arguments arrive on stdin."""
    from dagster._cli.api import execute_run_command

    preload(argv)
    try:
        line = sys.stdin.readline()
    except KeyboardInterrupt:
        return 0
    if not line.strip():
        return 0
    # The same body as `dagster api execute_run <args>`, so a run behaves identically either way.
    execute_run_command.callback(input_json=line.strip(), compressed_input_json=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
