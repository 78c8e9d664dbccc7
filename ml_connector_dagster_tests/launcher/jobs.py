"""Jobs the warm launcher's tests run: small, and steerable through files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dagster import in_process_executor, job, op


@op
def wait_for_release() -> str:
    """Wait until ``$LAUNCHER_TEST_RELEASE`` exists (at most 60 s), so a test can act mid-run."""
    release = Path(os.environ["LAUNCHER_TEST_RELEASE"])
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return str(os.getpid())


@job(executor_def=in_process_executor)
def held_job() -> None:
    wait_for_release()
