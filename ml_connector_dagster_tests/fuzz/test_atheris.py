"""Coverage-guided fuzzing (atheris) of the receiver's body parsing, cXML replies and connector.yaml.

Each target (``atheris_targets.py``) runs in its own process, since libFuzzer ends the process it
runs in, for a bounded number of inputs from a corpus seeded with valid ones; a crash is an input
that raised anything but the parser's own refusal, saved under ``tmp_path`` and shown here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNS = {"webhooks": 20_000, "cxml": 50_000, "config": 1_500}


@pytest.fixture(scope="module", autouse=True)
def atheris_installed() -> None:
    # Not imported here: atheris instruments what is imported under it, and this process is pytest's.
    if importlib.util.find_spec("atheris") is None:
        reason = "atheris is not installed (the test extra installs it on Linux x86_64)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.parametrize("target", sorted(RUNS))
def test_the_fuzzer_finds_no_input_that_crashes_the_parser(target: str, tmp_path: Path) -> None:
    corpus, artifacts = tmp_path / "corpus", tmp_path / "crashes"
    corpus.mkdir()
    artifacts.mkdir()
    command = [sys.executable, "-m", "ml_connector_dagster_tests.fuzz.atheris_targets", target,
               f"-runs={RUNS[target]}", "-max_total_time=20", "-seed=1", "-max_len=8192",
               f"-artifact_prefix={artifacts}/", str(corpus)]  # fmt: skip
    finished = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})  # fmt: skip
    crashes = sorted(artifacts.iterdir())
    assert finished.returncode == 0 and not crashes, (
        f"{target}: exit {finished.returncode}, crash inputs {[c.read_bytes()[:200] for c in crashes]}\n"
        + finished.stderr[-3000:]
    )
    assert "DONE" in finished.stderr
