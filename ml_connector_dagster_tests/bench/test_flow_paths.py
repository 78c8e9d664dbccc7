"""Each flow's per-record path (bench/paths/) runs the product's stages over the records that reach them."""

from __future__ import annotations

import importlib

import pytest

from bench.overhead import FLOWS, STAGES
from bench.paths import FlowPath


def _path(flow: str, count: int = 60) -> FlowPath:
    return importlib.import_module(f"bench.paths.{flow}").path(count)


@pytest.mark.parametrize("flow", FLOWS)
def test_every_stage_of_the_flow_does_some_records_and_validation_no_more_than_it_read(flow: str) -> None:
    flow_path = _path(flow)

    done = {stage.name: stage.work() for stage in flow_path.stages}

    assert flow_path.flow == flow
    assert set(done) <= set(STAGES) and "validate" in done and "render" in done
    assert all(count > 0 for count in done.values()), done
    assert done["validate"] <= len(flow_path.payloads)


@pytest.mark.parametrize("flow", FLOWS)
def test_a_stage_does_the_same_records_every_pass(flow: str) -> None:
    flow_path = _path(flow)

    first = [stage.work() for stage in flow_path.stages]

    assert [stage.work() for stage in flow_path.stages] == first
