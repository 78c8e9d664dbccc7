"""Ending a foreground command: SIGINT, SIGTERM and SIGHUP alike, once, with its exit status; and the
process group it started stopped whole."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_connector_dagster.shutdown import StopSignals, stop_process_group


@pytest.mark.parametrize(
    ("sig", "exit_code"), [(signal.SIGINT, 0), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_each_stop_signal_interrupts_and_sets_the_exit_status(sig: signal.Signals, exit_code: int) -> None:
    with StopSignals() as stop, pytest.raises(KeyboardInterrupt):
        signal.raise_signal(sig)
    assert (stop.received, stop.exit_code) == (sig, exit_code)


def test_a_second_signal_during_the_clean_up_is_ignored() -> None:
    with StopSignals() as stop:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(
            signal.SIGTERM
        )  # `make` passing on the SIGTERM `timeout` sent it: no second raise
        signal.raise_signal(signal.SIGINT)
    assert stop.received == signal.SIGTERM


def test_a_signal_in_a_deferred_block_is_raised_once_the_block_is_done() -> None:
    done = []
    with StopSignals() as stop, pytest.raises(KeyboardInterrupt), stop.deferred():
        signal.raise_signal(signal.SIGHUP)
        done.append("the child's handle taken")
    assert done == ["the child's handle taken"]


def test_the_handlers_in_place_before_are_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with StopSignals():
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_stopping_a_process_group_stops_the_children_its_leader_left_behind() -> None:
    # The leader starts a child in its group, then dies of the SIGINT without stopping it.
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while len(_group(leader.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group(leader.pid)) == 2

    stop_process_group(leader, grace_s=5.0, term_s=5.0)

    assert leader.returncode is not None
    assert _group(leader.pid) == []


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split() if stat else []
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members
