"""Which simulators exist, where their classes live, and their fixed default ports."""

from __future__ import annotations

import importlib
from typing import NamedTuple

from .framework import Simulator


class SimulatorEntry(NamedTuple):
    target: str
    default_port: int


SIMULATORS: dict[str, SimulatorEntry] = {
    "visma": SimulatorEntry("ml_connector_dagster.sandbox.visma:VismaSimulator", 8801),
    "jaggaer": SimulatorEntry("ml_connector_dagster.sandbox.jaggaer:JaggaerSimulator", 8802),
    "acumatica": SimulatorEntry("ml_connector_dagster.sandbox.acumatica:AcumaticaSimulator", 8803),
    "jira": SimulatorEntry("ml_connector_dagster.sandbox.jira:JiraSimulator", 8804),
    "asana": SimulatorEntry("ml_connector_dagster.sandbox.asana:AsanaSimulator", 8805),
    "monday": SimulatorEntry("ml_connector_dagster.sandbox.monday:MondaySimulator", 8806),
}


def simulator_class(name: str) -> type[Simulator]:
    """Import a simulator class by system name (ImportError if that simulator isn't built yet)."""
    module_name, _, attr = SIMULATORS[name].target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def available_simulators() -> list[str]:
    """Names of the simulators whose modules exist in this checkout."""
    names = []
    for name in SIMULATORS:
        try:
            simulator_class(name)
        except ImportError:
            continue
        names.append(name)
    return names
