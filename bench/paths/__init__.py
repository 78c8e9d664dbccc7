"""Each flow's per-record path, stage by stage, for the per-record overhead scenario.

A :class:`FlowPath` holds a flow's source records as they arrive (wire payloads, through JSON) and
its stages as the product runs them: validate (the source model), map (the flow's view of the
record), render (what the destination is sent and its content hash) and payload (the request body
of the create). Each stage's inputs are made beforehand, so timing one stage times that stage only.
One module per flow builds its path from that flow's simulator and shipped settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FlowPath", "Stage"]


@dataclass(frozen=True)
class Stage:
    """One stage of a flow's path over every record it applies to."""

    name: str  # validate, map, render or payload
    label: str  # what the stage is in this flow: "validate (SupplierInvoice model)"
    work: Callable[[], int]  # runs the stage over its records; returns how many it did


@dataclass(frozen=True)
class FlowPath:
    """A flow's records and the stages each takes from source payload to create request."""

    flow: str  # visma_jira, acumatica_jira, ...
    records: str  # what the records are: "Visma supplier invoices"
    payloads: Sequence[Mapping[str, Any]]
    stages: Sequence[Stage]
    notes: Sequence[str] = ()
