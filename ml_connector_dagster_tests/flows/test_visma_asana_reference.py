"""Visma's GL accounts and cost centres as Asana enum options: added, renamed, disabled, enabled again.

Options are matched to Visma by the code they are named for, and never deleted: a disabled option
stays on the tasks that hold it. Runs over the wire against the simulated (free-plan) workspace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.flows.visma_asana_reference import (
    Desired,
    OptionChange,
    landed_reference,
    plan_options,
    sync_options,
)
from ml_connector_dagster.flows.visma_asana_render import INVOICES
from ml_connector_dagster.systems.asana.models import CustomField, EnumOption
from ml_connector_dagster_tests.visma_asana_sandbox import AsanaWorld, _Log, asana_world, land


@pytest.fixture
def world(tmp_path: Path) -> Iterator[AsanaWorld]:
    with asana_world(tmp_path, VismaAsanaFlow()) as built:
        yield built


def sync(world: AsanaWorld) -> Counter[str]:
    made = sync_options(world.client, world.context().fields, landed_reference(world.ledger, world.settings), _Log())
    return Counter(f"{field}: {change.action}" for field, change in made)


def options(world: AsanaWorld, field: str) -> dict[str, tuple[str, bool]]:
    """Option gid -> (name, enabled) of a simulated field."""
    return {o.gid: (o.name, o.enabled) for o in world.sim.tenant.fields[world.sim.field_gid(field)].options}


def account(world: AsanaWorld, number: str) -> dict[str, Any]:
    return next(raw for raw in world.visma["account"] if raw["accountCD"] == number)


def invoice_task_holding_an_account(world: AsanaWorld) -> tuple[Any, str]:
    """An invoice task and the GL option it holds, after a sync."""
    world.sync(INVOICES)
    gl = world.sim.field_gid("GL account")
    task = next(t for (t,) in world.tasks("Supplier invoices").values() if t.custom.get(gl))
    return task, task.custom[gl]


def test_every_expense_account_and_cost_centre_becomes_an_enabled_option(world: AsanaWorld) -> None:
    sync(world)

    gl = {name for name, enabled in options(world, "GL account").values() if enabled}
    expected = {f"{raw['accountCD']} {raw['description']}" for raw in world.visma["account"] if raw["type"] == "Expense"}
    assert expected <= gl
    centres = {name.split(" ", 1)[0] for name, enabled in options(world, "Cost center").values() if enabled}
    assert centres == {"000", "110", "120", "130", "210", "220", "230"}


def test_a_second_reference_sync_changes_nothing(world: AsanaWorld) -> None:
    sync(world)

    assert sync(world) == Counter()


def test_an_account_renamed_in_visma_renames_its_option_and_the_tasks_holding_it_show_the_new_name(
    world: AsanaWorld,
) -> None:
    sync(world)
    task, option = invoice_task_holding_an_account(world)
    number = world.option_name("GL account", option).split(" ", 1)[0]  # type: ignore[union-attr]
    land(world.ledger, "account", [{**account(world, number), "description": "Renamed in Visma"}])

    assert sync(world) == Counter({"GL account: rename": 1})
    assert options(world, "GL account")[option] == (f"{number} Renamed in Visma", True)
    shown = world.client.get_task(task.gid).custom(world.sim.field_gid("GL account"))
    assert shown is not None and shown.enum_value is not None and shown.enum_value.name == f"{number} Renamed in Visma"


def test_an_account_made_inactive_disables_its_option_and_the_tasks_holding_it_keep_it(world: AsanaWorld) -> None:
    sync(world)
    task, option = invoice_task_holding_an_account(world)
    before = len(options(world, "GL account"))
    number = world.option_name("GL account", option).split(" ", 1)[0]  # type: ignore[union-attr]
    land(world.ledger, "account", [{**account(world, number), "active": False}])

    assert sync(world) == Counter({"GL account: disable": 1})
    assert options(world, "GL account")[option][1] is False
    assert len(options(world, "GL account")) == before  # never deleted
    assert world.sim.tenant.tasks[task.gid].custom[world.sim.field_gid("GL account")] == option


def test_a_task_rendered_while_its_account_is_disabled_leaves_the_gl_account_empty_and_says_why(
    world: AsanaWorld,
) -> None:
    sync(world)
    _, option = invoice_task_holding_an_account(world)
    number = world.option_name("GL account", option).split(" ", 1)[0]  # type: ignore[union-attr]
    land(world.ledger, "account", [{**account(world, number), "active": False}])
    sync(world)

    plan = world.plan(INVOICES)

    held = [r.task for r in plan.records if r.task and any(f"'{number}'" in u for u in r.task.unresolved)]
    assert held and all(t.custom_fields[world.sim.field_gid("GL account")] is None for t in held)


def test_an_account_active_again_enables_its_option(world: AsanaWorld) -> None:
    sync(world)
    _, option = invoice_task_holding_an_account(world)
    number = world.option_name("GL account", option).split(" ", 1)[0]  # type: ignore[union-attr]
    land(world.ledger, "account", [{**account(world, number), "active": False}])
    sync(world)
    land(world.ledger, "account", [account(world, number)])

    assert sync(world) == Counter({"GL account: enable": 1})
    assert options(world, "GL account")[option][1] is True


def test_reference_data_never_landed_leaves_the_options_alone(world: AsanaWorld) -> None:
    before = options(world, "GL account")

    made = sync_options(world.client, world.context().fields, {"gl_account": {}, "cost_center": {}}, _Log())

    assert made == [] and options(world, "GL account") == before


# -- the planning rule, for any options and any Visma data ----------------------------------------

codes = st.sampled_from(["4000", "4300", "6100", "6790", "7140"])


@given(
    existing=st.lists(st.tuples(codes, st.sampled_from(["a", "b"]), st.booleans()), max_size=6),
    wanted=st.dictionaries(codes, st.tuples(st.sampled_from(["a", "b"]), st.booleans()), max_size=5),
)
def test_applying_the_planned_changes_makes_the_options_say_what_visma_says(
    existing: list[tuple[str, str, bool]], wanted: dict[str, tuple[str, bool]]
) -> None:
    field = CustomField(gid="1", name="GL account", resource_subtype="enum", enum_options=[
        EnumOption(gid=str(n), name=f"{code} {text}", enabled=enabled) for n, (code, text, enabled) in enumerate(existing)])
    desired = {code: Desired(f"{code} {text}", active) for code, (text, active) in wanted.items()}

    changes = plan_options(field, desired)

    after = _applied(field, changes)
    assert plan_options(after, desired) == []  # a second run has nothing to do
    assert len(after.enum_options) >= len(field.enum_options)  # nothing is ever deleted


def _applied(field: CustomField, changes: list[OptionChange]) -> CustomField:
    options_ = {o.gid: o for o in field.enum_options}
    for n, change in enumerate(changes):
        if change.action == "add":
            options_[f"new{n}"] = EnumOption(gid=f"new{n}", name=change.name, enabled=True)
        else:
            current = options_[change.option_gid or ""]
            update = {"rename": {"name": change.name}, "disable": {"enabled": False}, "enable": {"enabled": True}}
            options_[current.gid] = current.model_copy(update=update[change.action])
    return field.model_copy(update={"enum_options": list(options_.values())})
