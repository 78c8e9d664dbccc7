"""The limits the benchmarks run under, and the physical bound of a job they imply.

Every figure the scenarios report is a ratio against what these limits allow. The values are the
simulators' (faithful to the vendors': Visma's production budget, Jira's per-endpoint burst
budget, Asana's paid-plan budget with every batch action counted, monday's complexity budget) and
the vendors' bulk sizes.

A budget is what a simulator enforces: at most ``limit`` units in a window of ``window_s``,
refilled whole when the window has passed (Jira's per-second window, Visma's hour, monday's minute)
or a sliding log of the last ``window_s`` (Asana's minute). A job that must spend ``u`` units on a
budget can spend a window's worth at once, so the least time it needs on that budget is::

    t_e      = (ceil(u_e / limit_e) - 1) * window_e      (the last window's units go at its start)
    t_bound  = max_e t_e + (one round trip per stage)     (budgets of different endpoints run in parallel)
    bound    = records / t_bound                          (records per second)

``u_e`` counts the minimum calls the job cannot avoid with the bulk APIs (bulk sizes applied), in
the units the budget counts: calls for Jira and Visma, calls plus every batch action for Asana,
creates for monday (the whole creates a minute's complexity points pay for). This is stricter than dividing by a sustained rate: it grants the
job every burst the simulator would grant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BenchLimits", "Bound", "Budget", "Need", "bound_of"]


class Budget(BaseModel):
    """One rate budget as its simulator enforces it."""

    model_config = ConfigDict(frozen=True)

    limit: float = Field(gt=0, description="Units allowed per window.")
    window_s: float = Field(gt=0)
    unit: str = "calls"

    def seconds_for(self, units: float) -> float:
        """The least time ``units`` need: whole windows, the last one spent at its start."""
        return max(0, math.ceil(units / self.limit) - 1) * self.window_s if units > 0 else 0.0

    def describe(self) -> str:
        window = {1: "s", 60: "min", 3600: "h"}.get(int(self.window_s), f"{self.window_s:g} s")
        return f"{self.limit:,.0f} {self.unit}/{window}"


class Need(BaseModel):
    """What a job cannot avoid on one counted endpoint: its calls, and the units they cost its budget."""

    endpoint: str
    calls: int
    budget: str | None = Field(None, description="None: not rate limited (counted in calls only).")
    units: float = 0.0


class BenchLimits(BaseModel):
    """The simulators' limits and the client budgets configured to match them."""

    model_config = ConfigDict(frozen=True)

    latency_ms: float = Field(30.0, ge=0, description="Added by the FaultPlan to every vendor request.")
    visma_rate_limit_per_hour: int = Field(15_000, description="Visma.net's production budget per company.")
    visma_rate_window_s: float = Field(3600.0, gt=0, description="The Visma budget's window: an hour, as Visma's.")
    visma_page_size: int = Field(1000, description="Visma's maxPageSize.")
    jira_burst_per_s: int = Field(100, description="Jira simulator: requests per second per endpoint and method.")
    jira_bulk_size: int = Field(50, description="Jira bulk create: issueUpdates per request.")
    jira_lookup_batch: int = Field(100, description="External ids per JQL lookup of records the ledger does not link.")
    jira_client_rate_per_s: float = Field(
        95.0, description="The connector's Jira budget per endpoint and method (JiraResource.rate_per_s)."
    )
    jira_client_burst: int = Field(
        5, description="Its burst: a token bucket bursting 100 at a fixed one-second window lets up to twice the "
        "window's 100 through at a window edge (429s); 95/s with a burst of 5 never does.",
    )
    asana_per_minute: int = Field(1_500, description="Asana simulator, paid plan: requests per minute per token, "
                                  "each batch action counted as well as the batch request.")
    asana_batch_size: int = Field(10, description="Asana POST /batch: actions per request.")
    asana_client_rate_per_s: float = Field(
        24.5, description="The connector's Asana budget in counted units (AsanaResource.rate_per_s): with a burst "
        "of one batch (11), at most 24.5 x 60 + 11 = 1,481 in any minute, under the 1,500.",
    )
    asana_client_burst: int = Field(11, description="One batch request of 10 actions.")
    monday_complexity_per_minute: int = Field(10_000_000, description="monday: points per minute per personal token.")
    monday_item_write_cost: int = Field(
        10_001, description="Least points of one create_item: 10,000 plus its id read back (1).")
    monday_per_query_limit: int = Field(5_000_000, description="monday: points per request.")
    monday_board_capacity: int = Field(10_000, description="monday: items per board (ItemsLimitationException).")
    visma_client_rate_per_s: float = Field(20.0, description="The connector's Visma budget (connector.sandbox.yaml).")
    jira_index_delay_s: float = Field(2.0, description="How long a Jira write stays invisible to JQL.")
    acumatica_page_size: int = Field(1000, description="The connector's $top (AcumaticaResource.page_size maximum).")
    acumatica_client_rate_per_s: float = Field(20.0, description="The connector's Acumatica budget (sandbox yaml).")
    jaggaer_per_minute: int = Field(600, description="JAGGAER simulator: requests per minute per client.")
    jaggaer_page_size: int = Field(100, description="J1P's largest page (Spring's max-page-size).")
    jaggaer_client_rate_per_s: float = Field(9.5, description="The connector's JAGGAER budget, under the 600/min.")
    client_timeout_s: float = Field(120.0, description="The connector's read timeout (timeout_s) for every system.")

    @property
    def visma_budget(self) -> Budget:
        return Budget(limit=self.visma_rate_limit_per_hour, window_s=self.visma_rate_window_s)

    @property
    def jaggaer_budget(self) -> Budget:
        return Budget(limit=self.jaggaer_per_minute, window_s=60)

    @property
    def jira_budget(self) -> Budget:
        return Budget(limit=self.jira_burst_per_s, window_s=1)

    @property
    def asana_budget(self) -> Budget:
        return Budget(limit=self.asana_per_minute, window_s=60, unit="counted requests")

    @property
    def monday_creates_per_minute(self) -> int:
        """Whole creates the minute's points pay for (a create is not split across two minutes)."""
        return self.monday_complexity_per_minute // self.monday_item_write_cost

    @property
    def monday_budget(self) -> Budget:
        return Budget(limit=self.monday_creates_per_minute, window_s=60,
                      unit=f"creates ({self.monday_item_write_cost:,} points each)")

    def describe(self) -> list[tuple[str, str]]:
        """(limit, value) rows for the report."""
        return [
            ("latency added to every request (FaultPlan.latency_ms)", f"{self.latency_ms:g} ms"),
            ("Visma budget (VismaSimulator rate_limit_per_hour, one window per hour)",
             f"{self.visma_rate_limit_per_hour:,}/h" if self.visma_rate_window_s == 3600
             else f"{self.visma_rate_limit_per_hour:,} per {self.visma_rate_window_s:g} s"),
            ("Visma page size (maxPageSize)", f"{self.visma_page_size:,}"),
            ("Jira burst budget (JiraSimulator burst_per_s, per endpoint and method, one-second windows)",
             f"{self.jira_burst_per_s}/s"),
            ("Jira bulk create size; external ids per lookup", f"{self.jira_bulk_size}; {self.jira_lookup_batch}"),
            ("Jira search index delay (index_delay_s)", f"{self.jira_index_delay_s:g} s"),
            ("Asana budget (AsanaSimulator premium: per token, every batch action counted, sliding minute)",
             f"{self.asana_per_minute:,}/min"),
            ("Asana batch size", f"{self.asana_batch_size}"),
            ("monday complexity budget (per token, refilled whole a minute after its first spend); per request",
             f"{self.monday_complexity_per_minute:,}/min; {self.monday_per_query_limit:,}"),
            ("monday create_item cost (with its id read back); items per board",
             f"{self.monday_item_write_cost:,}; {self.monday_board_capacity:,}"),
            ("connector budgets (rate_per_s, burst)",
             f"Jira {self.jira_client_rate_per_s:g}/s, {self.jira_client_burst} per endpoint; "
             f"Asana {self.asana_client_rate_per_s:g} units/s, {self.asana_client_burst}; "
             f"Visma {self.visma_client_rate_per_s:g}/s, {int(self.visma_client_rate_per_s)}; monday max_batch "
             f"{min(500, self.monday_per_query_limit // self.monday_item_write_cost)} (the per-query maximum)"),
            ("JAGGAER budget (JaggaerSimulator rate_limit_per_minute, fixed minute windows); page size",
             f"{self.jaggaer_per_minute:,}/min; {self.jaggaer_page_size}"),
            ("Acumatica: no request budget (the licence caps API users and concurrency); connector $top",
             f"{self.acumatica_page_size:,}"),
            ("connector read timeout (timeout_s)", f"{self.client_timeout_s:g} s"),
        ]


class Bound(BaseModel):
    """The physical limit of one job: its minimum calls, the units they cost each budget, the time they need."""

    records: int
    calls: dict[str, int] = Field(description="Minimum calls per counted endpoint (rate limited or not).")
    units: dict[str, float] = Field(description="Units per budget those calls cost.")
    seconds: dict[str, float]
    budgets: dict[str, Budget]
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

    def describe_bottleneck(self) -> str:
        """``budget: units (limit) = seconds`` of the busiest budget."""
        name = self.bottleneck
        budget = self.budgets[name]
        return f"{name}: {self.units[name]:,.0f} {budget.unit} at {budget.describe()} = {self.seconds[name]:.1f} s"


def bound_of(records: int, needs: list[Need], budgets: Mapping[str, Budget], *, round_trips: int,
             latency_s: float) -> Bound:
    """The bound of a job that cannot avoid ``needs``, against ``budgets``."""
    calls: dict[str, int] = {}
    units: dict[str, float] = {}
    for need in needs:
        calls[need.endpoint] = calls.get(need.endpoint, 0) + need.calls
        if need.budget is not None:
            units[need.budget] = units.get(need.budget, 0.0) + need.units
    used = {name: budgets[name] for name in units}
    return Bound(records=records, calls=calls, units=units, seconds={b: used[b].seconds_for(u) for b, u in units.items()},
                 budgets=used, round_trips=round_trips, latency_s=latency_s)
