"""A process of the code location for a kill schedule to SIGKILL: a run worker, or the sensor daemon's tick.

``python -m ml_connector_dagster.chaos.worker run SPEC`` executes one run, as a run worker does;
``... tick SPEC`` evaluates one sensor tick and writes its run requests and cursor to ``SPEC["result"]``
(what the daemon would commit). ``SPEC`` is a JSON file; the environment (connector.yaml in
``ML_CONNECTOR_CONFIG``, the ledger, the demo credentials) is the schedule's. The chaos harness kills
the process at a moment of its choosing; a run or tick that was not killed ends normally.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _definitions() -> Any:
    from ml_connector_dagster.config import load_config
    from ml_connector_dagster.definitions import build_definitions

    return build_definitions(load_config())


def _run(spec: dict[str, Any]) -> int:
    import dagster as dg

    defs = _definitions()
    repository = defs.get_repository_def()
    name = spec["job_name"]
    job = defs.resolve_implicit_global_asset_job_def() if name == "__ASSET_JOB" else repository.get_job(name)
    selection = (
        [dg.AssetKey(path) for path in spec["asset_selection"]] if spec.get("asset_selection") else None
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            run_config=spec["run_config"], partition_key=spec.get("partition_key"), instance=instance,
            asset_selection=selection, tags=spec.get("tags") or {}, raise_on_error=False,
        )  # fmt: skip
    return 0 if result.success else 1


def _tick(spec: dict[str, Any]) -> int:
    import dagster as dg
    from dagster._serdes import serialize_value

    defs = _definitions()
    sensor = defs.get_repository_def().get_sensor_def(spec["sensor"])
    with dg.DagsterInstance.ephemeral() as instance, dg.build_sensor_context(
        instance=instance, cursor=spec.get("cursor"), definitions=defs, resources=defs.resources,
    ) as context:  # fmt: skip
        data = sensor.evaluate_tick(context)
    result = {"run_requests": serialize_value(list(data.run_requests or [])), "cursor": data.cursor}
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    """``run SPEC`` or ``tick SPEC``."""
    warnings.filterwarnings("ignore")
    if len(argv) != 2 or argv[0] not in ("run", "tick"):
        print("usage: python -m ml_connector_dagster.chaos.worker run|tick SPEC", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    return _run(spec) if argv[0] == "run" else _tick(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
