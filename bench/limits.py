"""The limits the benchmarks run under, and the physical bound of a job they imply.

Every figure the scenarios report is a ratio against what these limits allow. The values are
realistic (Visma's production budget, the Jira simulator's per-endpoint burst budget, Jira's and
Visma's bulk sizes) and benchmark-friendly (a 100k backfill finishes in minutes, not hours).

The bound of a job is the time its busiest rate budget needs for the calls the job cannot avoid::

    calls_e  = the minimum calls the job makes against budget e (bulk sizes applied)
    t_e      = calls_e / rate_e                       (rate_e: calls per second budget e allows)
    t_bound  = max_e t_e + (one round trip per stage)  (budgets of different endpoints run in parallel)
    bound    = records / t_bound                       (records per second)

Visma's budget is hourly (15,000 calls per hour per company); its sustained rate is 15000/3600
calls/s. Jira's burst budget is per endpoint and method (100 calls/s each in the simulator), so a
bulk create and a transition draw on different budgets and may run side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BenchLimits", "Bound", "bound_of"]


class BenchLimits(BaseModel):
    """The simulators' limits and the client budgets configured to match them."""

    model_config = ConfigDict(frozen=True)

    latency_ms: float = Field(30.0, ge=0, description="Added by the FaultPlan to every vendor request.")
    visma_rate_limit_per_hour: int = Field(15_000, description="Visma.net's production budget per company.")
    visma_page_size: int = Field(1000, description="Visma's maxPageSize.")
    jira_burst_per_s: int = Field(100, description="Jira simulator: requests per second per endpoint and method.")
    jira_bulk_size: int = Field(50, description="Jira bulk create: issueUpdates per request.")
    jira_client_rate_per_s: float = Field(95.0, description="The connector's shared Jira budget (JiraResource.rate_per_s).")
    jira_client_burst: int = Field(
        5, description="Its burst: a token bucket bursting 100 at a fixed one-second window lets up to twice the "
        "window's 100 through at a window edge (429s); 95/s with a burst of 5 never does.",
    )
    visma_client_rate_per_s: float = Field(20.0, description="The connector's Visma budget (connector.sandbox.yaml).")
    jira_index_delay_s: float = Field(2.0, description="How long a Jira write stays invisible to JQL.")
    client_timeout_s: float = Field(120.0, description="The connector's read timeout (timeout_s) for both systems.")

    @property
    def visma_rate_per_s(self) -> float:
        """Visma's sustained call rate under its hourly budget."""
        return self.visma_rate_limit_per_hour / 3600

    def describe(self) -> list[tuple[str, str]]:
        """(limit, value) rows for the report."""
        return [
            ("latency added to every request (FaultPlan.latency_ms)", f"{self.latency_ms:g} ms"),
            ("Visma budget (VismaSimulator rate_limit_per_hour)",
             f"{self.visma_rate_limit_per_hour:,}/h = {self.visma_rate_per_s:.2f}/s sustained"),
            ("Visma page size (maxPageSize)", f"{self.visma_page_size:,}"),
            ("Jira burst budget (JiraSimulator burst_per_s, per endpoint and method)", f"{self.jira_burst_per_s}/s"),
            ("Jira bulk create size", f"{self.jira_bulk_size}"),
            ("Jira search index delay (index_delay_s)", f"{self.jira_index_delay_s:g} s"),
            ("connector budgets (rate_per_s, burst)",
             f"Jira {self.jira_client_rate_per_s:g}/s, {self.jira_client_burst}; "
             f"Visma {self.visma_client_rate_per_s:g}/s, {int(self.visma_client_rate_per_s)}"),
            ("connector read timeout (timeout_s)", f"{self.client_timeout_s:g} s"),
        ]


class Bound(BaseModel):
    """The physical limit of one job: its minimum calls per budget and the time they need."""

    records: int
    calls: dict[str, int]
    seconds: dict[str, float]
    round_trips: int
    latency_s: float

    @property
    def minimum_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def bottleneck(self) -> str:
        return max(self.seconds, key=lambda budget: self.seconds[budget])

    @property
    def total_seconds(self) -> float:
        return max(self.seconds.values(), default=0.0) + self.round_trips * self.latency_s

    @property
    def records_per_s(self) -> float:
        return self.records / self.total_seconds if self.total_seconds else math.inf


def bound_of(records: int, calls: Mapping[str, int], rates: Mapping[str, float], *, round_trips: int,
             latency_s: float) -> Bound:
    """The bound of a job making ``calls[budget]`` calls against budgets of ``rates[budget]`` calls/s."""
    return Bound(records=records, calls=dict(calls), seconds={b: calls[b] / rates[b] for b in calls},
                 round_trips=round_trips, latency_s=latency_s)
