"""Every vendor resource built from connector.yaml keeps its rate budget in the ledger, shared by all runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, load_config
from ml_connector_dagster.core.quotas import QUOTA_PREFIX
from ml_connector_dagster.core.shared_budgets import KEY_PREFIX, shared_budgets
from ml_connector_dagster.sandbox.framework import Simulator
from ml_connector_dagster.sandbox.monday import MondaySimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.sandbox.visma import VismaSimulator
from ml_connector_dagster.systems.acumatica.resource import AcumaticaResource
from ml_connector_dagster.systems.asana.resource import AsanaResource
from ml_connector_dagster.systems.jaggaer.resource import JaggaerResource
from ml_connector_dagster.systems.jira.resource import JiraResource
from ml_connector_dagster.systems.monday.resource import MondayResource
from ml_connector_dagster.systems.visma.resource import VismaResource
from ml_connector_dagster_tests.visma_sandbox import IN_PROCESS_URL, use_demo_credentials, visma_resource

RESOURCES = {"visma": VismaResource, "jira": JiraResource, "asana": AsanaResource, "monday": MondayResource,
             "acumatica": AcumaticaResource, "jaggaer": JaggaerResource}


@pytest.mark.parametrize("system", sorted(RESOURCES))
def test_a_resource_from_connector_yaml_shares_its_budget(system: str) -> None:
    settings = getattr(load_config(SANDBOX_CONFIG_PATH).systems, system)

    assert RESOURCES[system].from_settings(settings).shared_budget is True
    assert RESOURCES[system].from_settings(settings.model_copy(update={"share_budget": False})).shared_budget is False


@contextmanager
def wired_to(simulator: Simulator) -> Iterator[InProcessTransport]:
    """A transport to ``simulator`` in this process; both closed after the block."""
    transport = InProcessTransport(simulator.app)
    try:
        yield transport
    finally:
        transport.close()
        simulator.close()


def test_a_shared_visma_client_spends_the_budget_kept_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", url)
    use_demo_credentials(monkeypatch)
    resource = VismaResource(**{**visma_resource(IN_PROCESS_URL)._get_non_default_public_field_values(),
                                "shared_budget": True}).process_config_and_initialize()
    with wired_to(VismaSimulator(size=5)) as transport, resource.client(transport=transport) as client:
        client.list_dimension_ids()

    assert set(shared_budgets(url)._ledger.states_under(KEY_PREFIX)) == {f"{KEY_PREFIX}visma"}


def test_a_shared_monday_client_keeps_its_complexity_points_in_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    sim = MondaySimulator()
    resource = MondayResource(base_url="http://monday.test", api_token=sim.api_token, db_url=url,
                              shared_budget=True)  # fmt: skip
    with wired_to(sim) as transport, resource.client(transport=transport) as client:
        client.me()

    [(key, value)] = shared_budgets(url)._ledger.states_under(QUOTA_PREFIX).items()
    assert key.startswith(f"{QUOTA_PREFIX}monday:") and sim.api_token not in key and '"remaining"' in value
