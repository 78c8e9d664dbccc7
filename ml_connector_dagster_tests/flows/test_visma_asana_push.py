"""Visma POs and supplier invoices -> Asana tasks: plan and push over the wire, against the simulator.

The simulated workspace is on Asana's free plan (search answers 402), so every test also shows that
nothing relies on search. Each test lands the documents of a one-day Visma simulator in a ledger
and runs the flow's plan and push in-process (no Dagster: test_visma_asana.py covers the assets).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ml_connector_dagster.config import SupplierAssignee, VismaAsanaFlow
from ml_connector_dagster.core import http
from ml_connector_dagster.core.destination_index import destination_index
from ml_connector_dagster.core.landing import landed_records
from ml_connector_dagster.core.ledger import kv_state_table, links_table
from ml_connector_dagster.flows.destination import Reconciliation, replay_copies
from ml_connector_dagster.flows.visma_asana import reconcile
from ml_connector_dagster.flows.visma_asana_plan import (
    Action,
    PlannedTask,
    TaskPlan,
    plan_records,
    restore_tasks,
)
from ml_connector_dagster.flows.visma_asana_push import push_plan
from ml_connector_dagster.flows.visma_asana_render import INVOICES, PURCHASE_ORDERS
from ml_connector_dagster.sandbox.asana.tenant import Task as SimTask
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster_tests.visma_asana_sandbox import PARTITION, AsanaWorld, _Log, asana_world, land

LARS = "lars.hansen@fjordlys.no"
MAPPED = "*logistikk*"


def flow(**overrides: Any) -> VismaAsanaFlow:
    """The flow with one mapping row: suppliers named like *logistikk* go to Lars Hansen."""
    return VismaAsanaFlow(**{"supplier_assignees": [SupplierAssignee(supplier=MAPPED, member=LARS)], **overrides})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[AsanaWorld]:
    with asana_world(tmp_path, flow()) as built:
        yield built


def _recorded(world: AsanaWorld) -> list[dict[str, Any]]:
    with httpx.Client(transport=world.transport, base_url="http://asana.test") as inspector:
        return inspector.get("/_sandbox/requests").json()


def writes(world: AsanaWorld) -> list[dict[str, Any]]:
    return [r for r in _recorded(world) if r["method"] in ("POST", "PUT") and r["path"].startswith("/api/1.0/")]


def po_by_supplier(world: AsanaWorld, pattern: str) -> dict[str, Any]:
    return next(raw for raw in world.visma["purchaseorder"] if pattern in raw["supplier"]["name"])


def custom(world: AsanaWorld, task: Any) -> dict[str, Any]:
    """A simulated task's custom values by field name (enum options by their name)."""
    values = {}
    for gid, value in task.custom.items():
        field = world.sim.tenant.fields[gid]
        values[field.name] = world.option_name(field.name, value) if field.subtype == "enum" else value
    return values


# -- what a task shows --------------------------------------------------------------------------------


def test_each_purchase_order_becomes_one_task_with_its_finance_fields(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)

    tasks = world.tasks("Purchase orders")
    for raw in world.visma["purchaseorder"]:
        (task,) = tasks[f"purchaseorder/{raw['orderNbr']}"]
        values = custom(world, task)
        assert values["Vendor"] == raw["supplier"]["name"]
        assert values["Amount"] == pytest.approx(raw["orderTotal"])
        assert values["Currency"] == raw["currency"]
        assert values["Due date"] == raw["promisedOn"][:10]
        assert values["PO number"] == raw["orderNbr"]
        assert task.name.startswith(f"Purchase order {raw['orderNbr']} – {raw['supplier']['name']} – ")


def test_each_supplier_invoice_becomes_one_task_with_its_invoice_number_and_cost_centre(world: AsanaWorld) -> None:
    world.sync(INVOICES)

    tasks = world.tasks("Supplier invoices")
    invoices = [raw for raw in world.visma["supplierInvoice"] if f"supplierInvoice/{raw['referenceNumber']}" in tasks]
    assert len(invoices) == len(tasks) >= 10
    for raw in invoices:
        (task,) = tasks[f"supplierInvoice/{raw['referenceNumber']}"]
        values = custom(world, task)
        assert values["Invoice number"] == raw["supplierReference"]
        assert values["Amount"] == pytest.approx(raw["amount"])
        centre = raw["invoiceLines"][0]["subaccount"]["segments"][1]["segmentValue"]
        assert values.get("Cost center") is None or values["Cost center"].startswith(f"{centre} ")


def test_po_line_items_become_subtasks_with_their_amount_and_gl_account(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)

    raw = world.visma["purchaseorder"][0]
    (parent,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    # /batch runs its actions in no particular order: the names say which line is which.
    subtasks = sorted((world.sim.tenant.tasks[gid] for gid in parent.subtask_gids), key=lambda s: s.name)
    assert [custom(world, s)["Visma ID"] for s in subtasks] == [f"purchaseorder/{raw['orderNbr']}#{line['lineNbr']}"
                                                               for line in raw["lines"]]
    for line, subtask in zip(raw["lines"], subtasks, strict=True):
        values = custom(world, subtask)
        assert values["Amount"] == pytest.approx(line["amount"])
        assert subtask.name == f"Line {line['lineNbr']}: {line['lineDescription']}"
        if values.get("GL account"):
            assert values["GL account"].startswith(f"{line['account']['number']} ")


def test_a_second_sync_of_unchanged_documents_writes_nothing(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    before = len(writes(world))

    plan, outcome = world.sync(PURCHASE_ORDERS)

    assert plan.count(Action.SKIP) == len(plan.records) and outcome.skipped == len(plan.records)
    assert len(writes(world)) == before
    assert plan.looked_up == 0  # the ledger alone decided: nothing was looked up in the project


def test_a_changed_document_updates_its_task_and_its_changed_line(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    raw = world.visma["purchaseorder"][0]
    changed = {**raw, "orderTotal": raw["orderTotal"] + 100,
               "lines": [{**raw["lines"][0], "amount": raw["lines"][0]["amount"] + 100}, *raw["lines"][1:]]}
    land(world.ledger, "purchaseorder", [changed])

    plan, outcome = world.sync(PURCHASE_ORDERS)

    assert (plan.count(Action.UPDATE), outcome.updated, outcome.lines_updated, outcome.lines_created) == (1, 1, 1, 0)
    (task,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    assert custom(world, task)["Amount"] == pytest.approx(raw["orderTotal"] + 100)
    (first,) = world.tasks("Purchase orders", lines=True)[f"purchaseorder/{raw['orderNbr']}#{raw['lines'][0]['lineNbr']}"]
    assert custom(world, first)["Amount"] == pytest.approx(raw["lines"][0]["amount"] + 100)


# -- supplier -> team member ----------------------------------------------------------------------


def test_a_mapped_supplier_assigns_the_member_and_sets_no_review_flag(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)

    raw = po_by_supplier(world, "logistikk")
    (task,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    assert world.sim.tenant.users[task.assignee].email == LARS
    assert "Review flag" not in custom(world, task)


def test_an_unmapped_supplier_keeps_its_name_in_vendor_and_is_flagged_for_review(world: AsanaWorld) -> None:
    _, outcome = world.sync(PURCHASE_ORDERS)

    unmapped = [raw for raw in world.visma["purchaseorder"] if "logistikk" not in raw["supplier"]["name"]]
    assert unmapped and outcome.flagged_for_review == len(unmapped)
    for raw in unmapped:
        (task,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
        assert task.assignee is None
        assert custom(world, task)["Vendor"] == raw["supplier"]["name"]
        assert custom(world, task)["Review flag"] == "Needs review"


def test_a_member_who_is_not_in_the_workspace_leaves_the_task_flagged(tmp_path: Path) -> None:
    settings = flow(supplier_assignees=[SupplierAssignee(supplier="*", member="nobody@fjordlys.no")])
    with asana_world(tmp_path, settings) as world:
        plan, outcome = world.sync(PURCHASE_ORDERS)

        assert all(r.assignment and "not in the workspace" in (r.assignment.reason or "") for r in plan.records)
        assert outcome.flagged_for_review == outcome.created


def test_editing_the_mapping_assigns_new_tasks_and_leaves_existing_ones_alone(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    before = {key: (t.assignee, t.modified_at) for key, (t,) in world.tasks("Purchase orders").items()}
    everyone_to_ingrid = flow(supplier_assignees=[SupplierAssignee(supplier="*", member="Ingrid*")])
    newcomer = {**world.visma["purchaseorder"][0], "orderNbr": "PO009999"}
    land(world.ledger, "purchaseorder", [newcomer])

    plan, outcome = world.sync(PURCHASE_ORDERS, everyone_to_ingrid)

    assert (plan.count(Action.CREATE), plan.count(Action.SKIP), outcome.updated) == (1, len(before), 0)
    after = world.tasks("Purchase orders")
    assert {key: (t.assignee, t.modified_at) for key, (t,) in after.items() if key in before} == before
    (new,) = after["purchaseorder/PO009999"]
    assert world.sim.tenant.users[new.assignee].name == "Ingrid Berg"


def test_an_update_after_a_mapping_edit_keeps_the_assignee_the_task_was_created_with(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    raw = po_by_supplier(world, "logistikk")
    land(world.ledger, "purchaseorder", [{**raw, "description": "Changed in Visma"}])

    _, outcome = world.sync(PURCHASE_ORDERS, flow(supplier_assignees=[SupplierAssignee(supplier="*", member="Ingrid*")]))

    assert outcome.updated == 1
    (task,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    assert world.sim.tenant.users[task.assignee].email == LARS
    assert task.notes.startswith("Changed in Visma")


# -- dedupe without search ------------------------------------------------------------------------


def _lose_the_ledger(world: AsanaWorld) -> None:
    """What a ledger restored from nothing holds: no links, no index of the project."""
    with world.ledger.engine.begin() as connection:
        for table in (links_table, destination_index, kv_state_table):
            connection.execute(sa.delete(table))


def test_a_lost_ledger_is_rebuilt_from_one_listing_without_duplicates(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    gids = {key: t.gid for key, (t,) in world.tasks("Purchase orders", lines=True).items()}
    lines = sum(len(t.subtask_gids) for (t,) in world.tasks("Purchase orders").values())
    _lose_the_ledger(world)
    listings_before = _listings(world)

    plan, outcome = world.sync(PURCHASE_ORDERS)

    assert plan.count(Action.LINK) == len(plan.records) and outcome.created == 0 and outcome.lines_created == 0
    assert _listings(world) == listings_before + 1
    assert {key: [t.gid for t in found] for key, found in world.tasks("Purchase orders", lines=True).items()
            if key in gids} == {key: [gid] for key, gid in gids.items()}  # fmt: skip
    links = world.ledger.links_for(PURCHASE_ORDERS.flow, [raw["orderNbr"] for raw in world.visma["purchaseorder"]])
    assert {f"purchaseorder/{sid}": link.dest_id for sid, link in links.items()} == {
        key: gid for key, gid in gids.items() if "#" not in key}
    assert world.ledger.count_links(PURCHASE_ORDERS.lines_flow) == lines
    assert not any("/search" in r["path"] for r in _recorded(world))


def test_a_new_record_is_looked_up_in_what_changed_since_not_in_a_listing_of_the_whole_project(
        world: AsanaWorld) -> None:  # fmt: skip
    world.sync(PURCHASE_ORDERS)
    listings_before, changes_before = _listings(world), _change_listings(world)
    land(world.ledger, "purchaseorder", [{**world.visma["purchaseorder"][0], "orderNbr": "PO009999"}])

    plan, outcome = world.sync(PURCHASE_ORDERS)

    assert (plan.count(Action.CREATE), plan.looked_up, outcome.created) == (1, 1, 1)
    assert _listings(world) == listings_before
    assert _change_listings(world) == changes_before + 1


def test_a_task_made_in_asana_since_the_last_look_is_adopted_not_duplicated(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    newcomer = {**world.visma["purchaseorder"][0], "orderNbr": "PO009999"}
    made = world.client.create_task({"name": "Made by hand", "projects": [world.sim.project_gid("Purchase orders")],
                                     "custom_fields": {world.sim.field_gid("Visma ID"): "purchaseorder/PO009999"}})
    land(world.ledger, "purchaseorder", [newcomer])

    plan, outcome = world.sync(PURCHASE_ORDERS)

    assert (plan.count(Action.LINK), outcome.created, outcome.linked) == (1, 0, 1)
    assert [t.gid for t in world.tasks("Purchase orders")["purchaseorder/PO009999"]] == [made.gid]


def test_a_task_whose_visma_id_was_changed_in_asana_is_no_longer_found_under_the_old_one(world: AsanaWorld) -> None:
    world.sync(PURCHASE_ORDERS)
    raw = world.visma["purchaseorder"][0]
    (task,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    world.client.update_task(task.gid, {"custom_fields": {world.sim.field_gid("Visma ID"): "purchaseorder/OTHER"}})
    world.ledger.forget_link(PURCHASE_ORDERS.flow, raw["orderNbr"])

    plan, outcome = world.sync(PURCHASE_ORDERS)

    assert (plan.count(Action.CREATE), outcome.created) == (1, 1)
    (new,) = world.tasks("Purchase orders")[f"purchaseorder/{raw['orderNbr']}"]
    assert new.gid != task.gid


def test_a_task_deleted_in_asana_leaves_the_index_and_the_next_run_creates_it_again(world: AsanaWorld) -> None:
    world.sync(INVOICES)
    world.ledger.forget_link(INVOICES.flow, world.visma["supplierInvoice"][-1]["referenceNumber"])
    world.sync(INVOICES)  # looks a record up: the project's index now holds every task
    tasks = world.tasks("Supplier invoices")
    raw = next(raw for raw in world.visma["supplierInvoice"] if f"supplierInvoice/{raw['referenceNumber']}" in tasks)
    key = f"supplierInvoice/{raw['referenceNumber']}"
    (task,) = tasks[key]
    world.client.delete_task(task.gid)
    world.ledger.forget_link(INVOICES.flow, raw["referenceNumber"])  # the link was lost too: the index answers

    plan, outcome = world.sync(INVOICES)

    assert (plan.count(Action.LINK), outcome.failed) == (1, 1)
    (letter,) = world.ledger.open_dead_letters(INVOICES.asset)
    assert "deleted in Asana; the next run creates it" in letter.error

    plan, outcome = world.sync(INVOICES)

    assert (plan.count(Action.CREATE), outcome.created) == (1, 1)
    assert len(world.tasks("Supplier invoices")[key]) == 1
    assert world.ledger.open_dead_letters(INVOICES.asset) == []


# -- the partition audit ----------------------------------------------------------------------------


def _audit(world: AsanaWorld) -> Reconciliation:
    return reconcile(INVOICES, [PARTITION], client=world.client, context=world.context(), ledger=world.ledger)


def _fill(world: AsanaWorld, project: str, tasks: int) -> None:
    """``tasks`` more tasks in the project, none of them the flow's (made as Asana would hold them)."""
    now = world.sim.clock.time()
    home = world.sim.tenant.projects[world.sim.project_gid(project)]
    for n in range(tasks):
        task = SimTask(world.sim.tenant.mint(), f"Someone's task {n}", now, now, "1", project_gids=[home.gid])
        world.sim.tenant.tasks[task.gid] = task
        home.task_gids.append(task.gid)


def _invoice_task(world: AsanaWorld) -> Any:
    tasks = world.tasks("Supplier invoices")
    return next(t for raw in world.visma["supplierInvoice"] for t in tasks.get(f"supplierInvoice/{raw['referenceNumber']}", ()))


def test_the_audit_passes_when_each_record_has_one_task(world: AsanaWorld) -> None:
    world.sync(INVOICES)

    assert _audit(world).passed


def test_the_audit_finds_a_duplicate_made_in_asana_since_the_last_look(world: AsanaWorld) -> None:
    world.sync(INVOICES)
    _audit(world)
    key = _invoice_task(world).custom[world.sim.field_gid("Visma ID")]
    world.client.create_task({"name": "A copy", "projects": [world.sim.project_gid("Supplier invoices")],
                              "custom_fields": {world.sim.field_gid("Visma ID"): key}})

    audit = _audit(world)

    assert list(audit.duplicates.values()) == [2]


def test_the_audit_finds_a_task_deleted_in_asana_missing(world: AsanaWorld) -> None:
    world.sync(INVOICES)
    _audit(world)
    world.client.delete_task(_invoice_task(world).gid)

    audit = _audit(world)

    assert len(audit.missing_in_destination) == 1


def test_the_audit_of_a_large_project_reads_back_the_partitions_tasks_instead_of_listing_the_project(
        world: AsanaWorld) -> None:  # fmt: skip
    _fill(world, "Supplier invoices", 5_000)  # 50 pages to list: more than the partition's tasks to read back
    world.sync(INVOICES)  # its look-ups list the project once: the index holds it
    _ten_minutes_on(world)
    world.client.delete_task(_invoice_task(world).gid)
    before = len(_recorded(world))

    audit = _audit(world)

    assert len(audit.missing_in_destination) == 1
    paths = [r["path"] for r in _recorded(world)[before:]]
    assert f"/api/1.0/projects/{world.sim.project_gid('Supplier invoices')}/tasks" not in paths
    assert "/api/1.0/batch" in paths


def _ten_minutes_on(world: AsanaWorld) -> None:
    """Ten minutes on, someone changes another task, and an audit has looked since: the tasks of
    the sync are older than the index's watermark, so no listing of changes shows them again."""
    world.sim.clock.advance(600)
    world.client.create_task({"name": "Something else", "projects": [world.sim.project_gid("Supplier invoices")]})
    _audit(world)


def test_the_audit_trusts_what_its_listing_of_changes_just_showed_and_reads_nothing_back(world: AsanaWorld) -> None:
    world.sync(INVOICES)
    before = len(_recorded(world))

    assert _audit(world).passed
    reads = [r["path"] for r in _recorded(world)[before:] if "/tasks" in r["path"] or r["path"].endswith("/batch")]
    assert reads == ["/api/1.0/tasks"]  # one listing of changes: the workspace's context aside


def test_the_audit_of_a_small_project_lists_it_whole_when_that_is_cheaper(world: AsanaWorld) -> None:
    world.sync(INVOICES)
    _ten_minutes_on(world)
    before = len(_recorded(world))

    assert _audit(world).passed
    paths = [r["path"] for r in _recorded(world)[before:]]
    assert f"/api/1.0/projects/{world.sim.project_gid('Supplier invoices')}/tasks" in paths
    assert "/api/1.0/batch" not in paths


def _listings(world: AsanaWorld, project: str = "Purchase orders") -> int:
    """Listings of the whole project (first pages)."""
    gid = world.sim.project_gid(project)
    return sum(1 for r in _recorded(world) if r["path"] == f"/api/1.0/projects/{gid}/tasks"
               and "offset" not in r["query"])  # fmt: skip


def _change_listings(world: AsanaWorld) -> int:
    """Listings of the tasks changed since a moment (first pages)."""
    return sum(1 for r in _recorded(world) if r["path"] == "/api/1.0/tasks" and "modified_since" in r["query"]
               and "offset" not in r["query"])  # fmt: skip


# -- failures -------------------------------------------------------------------------------------


def _rendered(world: AsanaWorld, plan: TaskPlan) -> list[PlannedTask]:
    """The plan's records with the tasks a lean plan leaves in the landing store rendered again."""
    return restore_tasks(INVOICES, [*plan.records, *plan.stored_records()], ledger=world.ledger,
                         context=world.context(), settings=world.settings)


def test_a_partition_plan_keeps_no_rendered_task_or_payload_for_its_creates(world: AsanaWorld) -> None:
    plan = world.plan(INVOICES)

    creates = plan.of(Action.CREATE)
    assert creates and all(r.stored and r.task is None and r.payload is None for r in creates)
    assert all(r.assignment is not None for r in creates)  # decided at plan time: the dry run shows it
    assert all(r.task is not None and r.payload for r in _rendered(world, plan) if r.action is Action.CREATE)


def test_a_partition_plan_holds_its_creates_as_tuples_sharing_one_decision_per_supplier(world: AsanaWorld) -> None:
    plan = world.plan(INVOICES)

    assert plan.stored_creates and not any(r.action is Action.CREATE for r in plan.records)
    decisions = [entry[3] for entry in plan.stored_creates]
    assert len({id(d) for d in decisions}) == len(set(decisions)) < len(decisions)  # equal decisions: one object
    assert plan.count(Action.CREATE) == len(plan.stored_creates) == plan.record_count - len(plan.records)


def test_a_create_whose_landed_record_is_gone_by_the_push_is_a_dead_letter(world: AsanaWorld) -> None:
    plan = world.plan(INVOICES)
    gone = plan.of(Action.CREATE)[0]
    with world.ledger.engine.begin() as connection:
        connection.execute(landed_records.delete().where(landed_records.c.record_id == gone.record_id))

    outcome = push_plan(plan, INVOICES, client=world.client, ledger=world.ledger, settings=world.settings,
                        run_id="run-1", log=_Log())

    (letter,) = world.ledger.open_dead_letters(INVOICES.asset)
    assert letter.source_id == gone.record_id and "no longer in the landing store" in letter.error
    assert outcome.created == len(plan.of(Action.CREATE)) - 1


def test_a_refused_create_in_a_batch_is_a_dead_letter_and_its_neighbours_are_created(world: AsanaWorld) -> None:
    plan = world.plan(INVOICES)
    rendered = _rendered(world, plan)
    currencies = {r.task.custom_fields[world.sim.field_gid("Currency")] for r in rendered if r.task}
    refused = sorted(currencies)[0]  # someone disables one currency option between plan and push
    world.sim.tenant.option(refused)[1].enabled = False

    outcome = push_plan(plan, INVOICES, client=world.client, ledger=world.ledger, settings=world.settings,
                        run_id="run-1", log=_Log())

    losers = {r.record_id for r in rendered if r.task and r.task.custom_fields[world.sim.field_gid("Currency")] == refused}
    letters = world.ledger.open_dead_letters(INVOICES.asset)
    assert {letter.source_id for letter in letters} == losers and outcome.failed == len(losers)
    assert all("disabled" in letter.error for letter in letters)
    assert outcome.created == plan.record_count - len(losers)
    assert world.ledger.links_for(INVOICES.flow, losers) == {}


def test_a_replay_after_the_cause_is_fixed_creates_the_dead_letters_once(world: AsanaWorld) -> None:
    plan = world.plan(INVOICES)
    refused = _rendered(world, plan)[0].task.custom_fields[world.sim.field_gid("Currency")]  # type: ignore[union-attr]
    world.sim.tenant.option(refused)[1].enabled = False
    push_plan(plan, INVOICES, client=world.client, ledger=world.ledger, settings=world.settings, run_id="run-1", log=_Log())
    world.sim.tenant.option(refused)[1].enabled = True
    letters = world.ledger.open_dead_letters(INVOICES.asset)

    copies = replay_copies(world.ledger, letters, system="visma", entity=INVOICES.entity.value)
    replay = plan_records(INVOICES, [copies], partition_key=None, client=world.client, ledger=world.ledger,
                          settings=world.settings, context=world.context())
    outcome = push_plan(replay, INVOICES, client=world.client, ledger=world.ledger, settings=world.settings,
                        run_id="replay", log=_Log())

    assert outcome.created == len(letters) and world.ledger.open_dead_letters(INVOICES.asset) == []
    assert all(len(found) == 1 for found in world.tasks("Supplier invoices").values())


def test_creates_answered_500_are_looked_up_in_the_project_and_never_duplicated(world: AsanaWorld) -> None:
    # Half the creates fail before anything is applied, half are applied yet answered 500.
    world.sim.set_faults(FaultPlan(seed=3, error_rate=0.25, timeout_after_rate=0.25, paths=[r"^/tasks$"],
                                   methods=["POST"]))
    plan, outcome = world.sync(INVOICES)

    assert outcome.created == plan.record_count and outcome.deferred == [] and outcome.failed == 0
    assert all(len(found) == 1 for found in world.tasks("Supplier invoices").values())
    assert len(world.tasks("Supplier invoices")) == plan.record_count


def test_a_rate_limit_hit_mid_batch_is_waited_out_and_the_refused_actions_resent(
    world: AsanaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "default_sleep", world.sim.clock.advance)  # Retry-After passes on the sim's clock
    plan = world.plan(INVOICES)
    with httpx.Client(transport=world.transport, base_url="http://asana.test/api/1.0",
                      headers={"Authorization": f"Bearer {world.sim.credentials()['pat']}"}) as raw:
        while raw.get("users/me").status_code != 429:  # spend the free plan's 150 requests/min but a few
            pass
    world.sim.clock.advance(55)  # the window starts to free up, a few actions at a time
    started = world.sim.clock.time()

    outcome = push_plan(plan, INVOICES, client=world.client, ledger=world.ledger, settings=world.settings,
                        run_id="run-1", log=_Log())

    assert outcome.created == plan.record_count and outcome.failed == 0
    assert all(len(found) == 1 for found in world.tasks("Supplier invoices").values())
    assert world.sim.clock.time() > started  # the client waited Retry-After before resending
    batches = [r for r in _recorded(world) if r["path"] == "/api/1.0/batch"]
    assert len(batches) > -(-plan.record_count // 10)  # resends: more requests than a clean push needs


# -- one project per PO ---------------------------------------------------------------------------


def test_po_layout_projects_instantiates_one_project_per_po_from_the_template_once(tmp_path: Path) -> None:
    with asana_world(tmp_path, flow(po_layout="projects"), instantiate_delay_s=0) as world:
        world.sync(PURCHASE_ORDERS)
        world.sync(PURCHASE_ORDERS)

        orders = world.visma["purchaseorder"]
        projects = [p for p in world.sim.tenant.projects.values() if p.template_gid]
        assert sorted(p.name.split(" – ")[0] for p in projects) == sorted(f"PO {raw['orderNbr']}" for raw in orders)
        for project in projects:
            (task,) = [world.sim.tenant.tasks[g] for g in project.task_gids if world.sim.tenant.tasks[g].parent is None
                       and world.sim.field_gid("Visma ID") in world.sim.tenant.tasks[g].custom]
            assert world.sim.project_gid("Purchase orders") in task.project_gids
