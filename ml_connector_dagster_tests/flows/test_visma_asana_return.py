"""The return path: what people change on a synced Asana task becomes one line in the Visma note.

Only the people-owned state (done, assignee, review flag) is reported, once per change, into the
document's ``note`` (non-financial). Webhooks are registered through the receiver's ``X-Hook-Secret``
handshake; every request the flow sends is checked against Asana's OpenAPI spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector_dagster.config import AsanaReturnPath, SupplierAssignee, VismaAsanaFlow
from ml_connector_dagster.core.ledger import Link
from ml_connector_dagster.flows.visma_asana_render import NOTES_FLOW, PURCHASE_ORDERS
from ml_connector_dagster.flows.visma_asana_return import (
    RETURN_FILTERS,
    ReturnOutcome,
    changed_tasks,
    ensure_task_webhooks,
    report_changes,
)
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster_tests.asana_sandbox import RECEIVER_URL, Receiver, receiver
from ml_connector_dagster_tests.contracts.test_asana_contract import (
    api_calls,
    as_spec_request,
    batch_actions,
    openapi,
)
from ml_connector_dagster_tests.visma_asana_sandbox import AsanaWorld, _Log, asana_world, land
from ml_connector_dagster_tests.visma_sandbox import in_process_client

SETTINGS = VismaAsanaFlow(supplier_assignees=[SupplierAssignee(supplier="*logistikk*", member="lars.hansen@fjordlys.no")],
                          return_path=AsanaReturnPath(enabled=True, receiver_url=RECEIVER_URL))  # fmt: skip


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[Receiver]:
    with receiver(tmp_path / "receiver") as built:
        yield built


@pytest.fixture
def world(tmp_path: Path, hooks: Receiver) -> Iterator[AsanaWorld]:
    with asana_world(tmp_path, SETTINGS, webhook_transport=hooks.transport, instantiate_delay_s=0) as built:
        built.sync(PURCHASE_ORDERS)
        yield built


def a_task(world: AsanaWorld) -> tuple[str, dict[str, Any]]:
    """The gid of the first PO's task, and the PO."""
    raw = world.visma["purchaseorder"][0]
    (task,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    return task.gid, raw


def report(world: AsanaWorld, *gids: str) -> ReturnOutcome:
    with in_process_client(world.visma_sim) as visma:
        return report_changes(gids, asana=world.client, visma=visma, ledger=world.ledger, context=world.context(),
                              run_id="return-1", log=_Log())


def note(world: AsanaWorld, order: str) -> str:
    with in_process_client(world.visma_sim) as visma:
        return str(visma.get(VismaEntity.PURCHASE_ORDER, order)[0].get("note") or "")


def test_a_task_completed_in_asana_is_noted_on_its_visma_document(world: AsanaWorld) -> None:
    gid, raw = a_task(world)
    world.sim.edit_task(gid, completed=True)

    outcome = report(world, gid)

    assert outcome.written == 1
    (line,) = note(world, raw["orderNbr"]).splitlines()
    assert line.startswith("Asana ") and "completed" in line and line.endswith(f"[asana task {gid} #1]")


def test_a_change_is_noted_once_however_often_it_is_reported(world: AsanaWorld) -> None:
    gid, raw = a_task(world)
    world.sim.edit_task(gid, completed=True)
    report(world, gid)

    again = report(world, gid, gid)

    assert (again.written, again.unchanged) == (0, 1)
    assert len(note(world, raw["orderNbr"]).splitlines()) == 1


def test_a_note_written_by_an_attempt_whose_answer_was_lost_is_not_written_again(world: AsanaWorld) -> None:
    gid, raw = a_task(world)
    before = world.ledger.links_for(NOTES_FLOW, [gid])[gid]
    world.sim.edit_task(gid, completed=True)
    report(world, gid)
    world.ledger.record_links([Link(**before.model_dump(exclude={"state", "created_at", "updated_at"}))])  # as if never recorded

    retried = report(world, gid)

    assert (retried.written, retried.already) == (0, 1)
    assert len(note(world, raw["orderNbr"]).splitlines()) == 1


def test_each_later_change_adds_its_own_line(world: AsanaWorld) -> None:
    gid, raw = a_task(world)
    world.sim.edit_task(gid, completed=True)
    report(world, gid)
    world.sim.edit_task(gid, completed=False, assignee="astrid.lie@fjordlys.no",
                        custom_fields={world.sim.field_gid("Review flag"): world.sim.option_gid("Review flag", "Approved")})

    report(world, gid)

    first, second = note(world, raw["orderNbr"]).splitlines()
    assert second.endswith(f"[asana task {gid} #2]")
    assert "open; assignee Astrid Lie; review flag Approved" in second


def test_the_flows_own_updates_of_a_task_are_not_reported_back(world: AsanaWorld) -> None:
    gid, raw = a_task(world)
    land(world.ledger, "purchaseorder", [{**raw, "orderTotal": raw["orderTotal"] + 1}])
    world.sync(PURCHASE_ORDERS)

    outcome = report(world, gid)

    assert (outcome.written, outcome.unchanged) == (0, 1)
    assert note(world, raw["orderNbr"]) == ""


def test_a_poll_taking_fewer_changes_than_it_found_goes_on_from_the_last_one_taken(world: AsanaWorld) -> None:
    since = world.sim.clock.now()
    gids = sorted(task.gid for tasks in world.tasks("Purchase orders").values() for task in tasks)[:3]
    for gid in reversed(gids):  # the newest change is on the task Asana lists first
        world.sim.clock.advance(60)
        world.sim.edit_task(gid, completed=True)

    taken, watermark = changed_tasks(world.client, world.ledger, world.context(), since, limit=2)
    rest, _ = changed_tasks(world.client, world.ledger, world.context(), watermark or since, limit=2)

    assert [gid for gid, _ in taken] == [gids[2], gids[1]]  # oldest first
    assert gids[0] in [gid for gid, _ in rest]  # not skipped by a watermark moved past it


def test_tasks_that_are_no_visma_documents_are_left_alone(world: AsanaWorld) -> None:
    manual = next(t.gid for t in world.sim.tenant.tasks.values() if t.notes == "Created by hand.")
    world.sim.edit_task(manual, completed=True)

    assert report(world, manual).not_synced == 1


def test_webhooks_are_registered_through_the_handshake_once_per_project(world: AsanaWorld, hooks: Receiver) -> None:
    context = world.context()
    first = ensure_task_webhooks(world.client, context, SETTINGS, hooks.ledger, hooks.vault)
    second = ensure_task_webhooks(world.client, context, SETTINGS, hooks.ledger, hooks.vault)

    assert [w.gid for w in second] == [w.gid for w in first] and len(first) == 2
    assert len(world.sim.tenant.webhooks) == 2
    assert all(hooks.vault.get(f"asana.webhook_secret.{w.hook}") for w in first)  # secrets from the handshake


def test_a_task_change_reaches_the_inbox_through_the_registered_webhook(world: AsanaWorld, hooks: Receiver) -> None:
    ensure_task_webhooks(world.client, world.context(), SETTINGS, hooks.ledger, hooks.vault)
    gid, _ = a_task(world)

    world.sim.edit_task(gid, completed=True)
    world.sim.flush_webhooks()

    assert any((event.record_ref or {}).get("id") == gid for event in hooks.inbox())


def test_the_tasks_the_flow_creates_do_not_come_back_through_the_webhooks(world: AsanaWorld, hooks: Receiver) -> None:
    ensure_task_webhooks(world.client, world.context(), SETTINGS, hooks.ledger, hooks.vault)
    raw = world.visma["purchaseorder"][0]
    land(world.ledger, "purchaseorder", [{**raw, "orderNbr": "PO009999"}])

    world.sync(PURCHASE_ORDERS)  # a task and its line subtasks, created
    world.sim.flush_webhooks()

    assert hooks.inbox() == []


def test_a_webhook_registered_without_the_return_paths_filters_is_replaced(world: AsanaWorld, hooks: Receiver) -> None:
    project = world.sim.project_gid("Purchase orders")
    unfiltered = world.client.register_webhook(project, RECEIVER_URL, hooks.ledger)  # as an older release did

    ensure_task_webhooks(world.client, world.context(), SETTINGS, hooks.ledger, hooks.vault)

    on_project = [w for w in world.sim.tenant.webhooks.values() if w.resource_gid == project]
    assert [w.gid for w in on_project] != [unfiltered.gid] and len(on_project) == 1
    assert on_project[0].filters == [dict(f) for f in RETURN_FILTERS]


@pytest.mark.filterwarnings("ignore:Unsupported scheme type")  # openapi-core cannot check oauth2 itself
def test_every_request_the_flow_sends_matches_the_asana_spec(tmp_path: Path, hooks: Receiver) -> None:
    settings = SETTINGS.model_copy(update={"po_layout": "projects"})
    with asana_world(tmp_path / "contract", settings, webhook_transport=hooks.transport, instantiate_delay_s=0) as world:
        from ml_connector_dagster.flows.visma_asana_reference import landed_reference, sync_options
        from ml_connector_dagster.flows.visma_asana_render import INVOICES

        sync_options(world.client, world.context().fields, landed_reference(world.ledger, settings), _Log())
        for kind in (PURCHASE_ORDERS, INVOICES):
            world.sync(kind)
        gid, raw = a_task(world)
        land(world.ledger, "purchaseorder", [{**raw, "orderTotal": raw["orderTotal"] + 1}])
        world.sync(PURCHASE_ORDERS)
        ensure_task_webhooks(world.client, world.context(), settings, hooks.ledger, hooks.vault)
        world.sim.edit_task(gid, completed=True)
        report(world, gid)
        with httpx.Client(transport=world.transport, base_url="http://asana.test") as inspector:
            recorded = inspector.get("/_sandbox/requests").json()

    failures = []
    requests = [(c["method"], c["path"], as_spec_request(c["method"], c["path"], c["query"], c["body"], c["headers"]))
                for c in api_calls(recorded)]
    requests += [(a["method"], a["relative_path"], request) for a, request in batch_actions(recorded)]
    for method, path, request in requests:
        try:
            openapi().validate_request(request)
        except Exception as error:  # noqa: BLE001 - collected, so one run shows every mismatch
            failures.append(f"{method} {path}: {error} ({error.__cause__})")
    assert len(requests) > 50 and {m for m, _, _ in requests} >= {"GET", "POST", "post", "put"}
    assert failures == []
