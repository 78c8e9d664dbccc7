"""One chaos scenario per flow, by flow name."""

from __future__ import annotations

from ..scenario import Scenario
from .acumatica_jira import AcumaticaJiraScenario
from .jaggaer_visma import JaggaerVismaScenario
from .visma_asana import VismaAsanaScenario
from .visma_jira import VismaJiraScenario
from .visma_monday import VismaMondayScenario

__all__ = ["SCENARIOS"]

SCENARIOS: dict[str, type[Scenario]] = {
    scenario.flow: scenario
    for scenario in (
        VismaJiraScenario,
        AcumaticaJiraScenario,
        VismaAsanaScenario,
        VismaMondayScenario,
        JaggaerVismaScenario,
    )
}
