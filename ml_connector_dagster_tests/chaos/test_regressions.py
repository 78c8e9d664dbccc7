"""Every product bug the chaos harness found, pinned by the schedule that caught it.

Each test replays one schedule (``<flow>:<seed>``, as ``ml-connector chaos --replay`` does) and requires
that it leaves nothing duplicated, lost or mismatched, and no secret in what its runs left. Where the
bug is small enough, a specification of the fix on its own follows its schedule. Some of these bugs
hang on timing (which request a fault hits, when a worker dies): their schedule caught them when they
were found, and keeps their path exercised.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from ml_connector_dagster.chaos.runner import make_schedule, parse_schedule_id
from ml_connector_dagster.chaos.schedule import run_schedule
from ml_connector_dagster.core.http import ClientError, ServerError
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.flows.jira_destination.records import (
    RECHECK,
    Action,
    PlannedIssueBase,
    RenderedIssueBase,
)
from ml_connector_dagster.flows.jira_destination.workflow import TransitionMenu, move_to_status
from ml_connector_dagster.flows.jira_destination.writer import IssueWriter
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import DEMO_APP_SECRET, DEMO_CLIENT_ID, JiraSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import StatusUnreachable
from ml_connector_dagster.systems.jira.models import Comment, Transition
from ml_connector_dagster.systems.jira.resource import JiraResource

# The FIN project's workflow on the simulated site: status -> (transition id, status it leads to).
FINANCE_WORKFLOW = {
    "To Do": (("11", "In Review"), ("51", "Done")),
    "In Review": (("21", "Approved"), ("31", "Disputed")),
    "Approved": (("31", "Disputed"), ("51", "Done")),
    "Disputed": (("41", "In Review"),),
    "Done": (("61", "To Do"),),
}


def assert_converges(schedule_id: str) -> None:
    outcome = run_schedule(make_schedule(*parse_schedule_id(schedule_id)))
    assert outcome.ok, outcome.summary()


class FinanceIssue:
    """One issue on a workflow, as much of the Jira client as a walk uses."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.calls: list[str] = []
        self.history = [status]

    def transitions(self, key: str) -> list[Transition]:
        self.calls.append(f"offered from {self.status}")
        return [Transition.model_validate({"id": tid, "name": tid, "to": {"name": to}})
                for tid, to in FINANCE_WORKFLOW[self.status]]  # fmt: skip

    def transition(self, key: str, transition_id: str) -> None:
        for tid, to in FINANCE_WORKFLOW[self.status]:
            if tid == transition_id:
                self.status = to
                self.history.append(to)
                return
        raise ClientError(
            system="jira",
            status_code=400,
            method="POST",
            url="http://jira.test",
            detail=f"Transition id '{transition_id}' is not valid for this issue.",
        )

    def get_issue(self, key: str, fields: object = None) -> object:
        self.calls.append(f"read {self.status}")
        return type("Issue", (), {"status_name": self.status})()


class CommentedIssue(FinanceIssue):
    """An issue that takes comments, and refuses its first transition with a 500 (applying nothing)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.bodies: list[dict[str, object]] = []
        self.failures = 1

    @property
    def posted(self) -> int:
        return len(self.bodies)

    def comments(self, key: str) -> list[Comment]:
        return [Comment(id=str(n), body=body) for n, body in enumerate(self.bodies)]

    def add_comment(self, key: str, body: dict[str, object]) -> Comment:
        self.bodies.append(body)
        return Comment(id=str(len(self.bodies)), body=body)

    def update_issue(self, key: str, fields: object) -> None:
        return None

    def transition(self, key: str, transition_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ServerError(
                system="jira", status_code=500, method="POST", url="http://jira.test", detail="down"
            )
        super().transition(key, transition_id)

    def browse_url(self, key: str) -> str:
        return f"http://jira.test/browse/{key}"


# -- visma_jira ----------------------------------------------------------------------------------------


def test_a_status_reached_only_by_a_detour_through_the_workflow_is_reached() -> None:
    """status_map listed Approved before In Review, and Done is reached from Disputed only through In Review
    and Approved: the walk took only steps "closer along the status_map's order" and gave up."""
    assert_converges("visma_jira:1")


@pytest.mark.parametrize(
    ("start", "target"), [("To Do", "Approved"), ("Disputed", "Done"), ("Done", "Disputed")]
)
def test_the_walk_finds_its_way_whatever_the_order_of_the_status_map(start: str, target: str) -> None:
    issue = FinanceIssue(start)
    path = ["To Do", "Approved", "In Review", "Disputed", "Done"]  # status_map's values, not workflow order

    move_to_status(issue, "FIN-1", start, target, path, TransitionMenu())  # type: ignore[arg-type]

    assert issue.status == target


def test_a_walk_from_a_stale_status_starts_where_the_issue_really_is() -> None:
    """A retried push carries the status its plan saw; the walk took transitions that no longer applied and
    filed what Jira offered under the wrong status, and ended elsewhere."""
    assert_converges("visma_jira:6")


def test_a_walk_given_a_stale_status_reads_the_real_one_and_remembers_offers_under_it() -> None:
    menu = TransitionMenu()
    issue = FinanceIssue("Approved")  # the plan believed "In Review"

    move_to_status(issue, "FIN-1", "In Review", "Approved", [], menu)  # type: ignore[arg-type]

    assert issue.status == "Approved"
    elsewhere = FinanceIssue("In Review")
    move_to_status(elsewhere, "FIN-2", "In Review", "Disputed", [], menu)  # type: ignore[arg-type]
    assert elsewhere.status == "Disputed"


CHAOS_PATH = ["To Do", "Approved", "In Review", "Disputed", "Done"]  # the chaos status_map's order


def _menu_knowing(*statuses: str) -> TransitionMenu:
    menu = TransitionMenu()
    for status in statuses:
        menu.offered(FinanceIssue(status), "FIN-99", status)  # type: ignore[arg-type]
    return menu


def test_a_walk_does_not_step_into_a_status_whose_only_way_out_leads_back() -> None:
    """Out of In Review towards Done, the status_map's order ranked Disputed closer than Approved, and a
    finance issue was marked Disputed on its way to Done (twice, in schedule visma_jira:6)."""
    issue = FinanceIssue("In Review")

    move_to_status(issue, "FIN-1", "In Review", "Done", CHAOS_PATH, _menu_knowing("In Review", "Disputed"))  # type: ignore[arg-type]

    assert issue.history == ["In Review", "Approved", "Done"]


def test_a_walk_remembers_where_the_status_it_reached_leads() -> None:
    menu = TransitionMenu()

    move_to_status(FinanceIssue("In Review"), "FIN-1", "In Review", "Approved", CHAOS_PATH, menu)  # type: ignore[arg-type]

    assert [t.to_status for t in menu.known("Approved") or []] == ["Disputed", "Done"]


def test_a_walk_that_reaches_a_dead_end_goes_back_and_takes_another_way() -> None:
    """Nothing told the walk that Disputed leads only back to In Review: it stepped in, and gave up there
    (the issue stayed Disputed until a replay, in schedule visma_jira:6). Done is still reachable."""
    issue = FinanceIssue("In Review")

    move_to_status(issue, "FIN-1", "In Review", "Done", CHAOS_PATH, TransitionMenu())  # type: ignore[arg-type]

    assert issue.history == ["In Review", "Disputed", "In Review", "Approved", "Done"]


def test_a_walk_with_no_way_on_from_anywhere_it_has_been_still_stops() -> None:
    issue = FinanceIssue("Disputed")
    menu = _menu_knowing("Disputed", "In Review")

    with pytest.raises(StatusUnreachable):
        move_to_status(issue, "FIN-1", "Disputed", "Nowhere", CHAOS_PATH, menu)  # type: ignore[arg-type]

    assert len(issue.history) <= 13  # never more transitions than a walk's limit


def test_a_later_walk_routes_through_a_status_an_earlier_walk_reached() -> None:
    menu = _menu_knowing("To Do", "Disputed")
    move_to_status(FinanceIssue("In Review"), "FIN-1", "In Review", "Approved", CHAOS_PATH, menu)  # type: ignore[arg-type]
    issue = FinanceIssue("In Review")

    move_to_status(issue, "FIN-2", "In Review", "Done", CHAOS_PATH, menu)  # type: ignore[arg-type]

    assert issue.history == ["In Review", "Approved", "Done"]


def test_a_walk_from_a_searched_status_reads_the_real_one_before_any_transition() -> None:
    """A search not reconciled by issue id said In Review; the issue was Approved, where Dispute (31) is
    offered too: taken from the remembered In Review offers, it marked an approved order Disputed."""
    issue = FinanceIssue("Approved")

    move_to_status(issue, "FIN-1", "In Review", "Done", CHAOS_PATH, _menu_knowing("In Review"),  # type: ignore[arg-type]
                   status_known=False)

    assert issue.history == ["Approved", "Done"]
    assert issue.calls[0] == "read Approved"


def test_a_walk_from_a_searched_status_already_reached_moves_nothing() -> None:
    issue = FinanceIssue("Done")

    hops = move_to_status(issue, "FIN-1", "Done", "Done", CHAOS_PATH, TransitionMenu(), status_known=False)  # type: ignore[arg-type]

    assert (hops, issue.history) == (0, ["Done"])


def test_a_new_issue_whose_status_move_failed_keeps_its_dead_letter() -> None:
    """The create had succeeded, so the end of the same push resolved the dead letter its failed move had
    just written: nothing ever moved the issue on."""
    assert_converges("visma_jira:865579830")


def test_a_retried_push_does_not_count_a_half_done_create_as_done() -> None:
    """After a failed status move the step was retried with the same plan: the create found linked counted
    as a success and resolved the dead letter, though the issue's status still lagged."""
    assert_converges("visma_jira:312822345")


def test_an_issue_is_linked_as_done_only_once_its_status_moved() -> None:
    """The link of a new issue carried its content hash before its status was moved: a run worker killed in
    between left an issue every later plan skipped, in the wrong status for good."""
    assert_converges("visma_jira:1533181601")


def test_a_revoked_jira_grant_fails_the_step_at_once_and_names_the_consent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    jira = JiraSimulator(seed=4, seed_issues=0)
    jira.set_faults(FaultPlan(revoke_refresh_tokens=True))
    resource = JiraResource(
        sandbox=True,
        base_url="http://api.jira.test",
        auth_url="http://api.jira.test",
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_APP_SECRET,
        refresh_token=jira.demo_refresh_token,
    )

    with pytest.raises(dg.Failure) as failure, resource.client(transport=InProcessTransport(jira.app)):
        pass

    assert failure.value.allow_retries is False  # retrying cannot bring a revoked grant back
    assert "ml-connector auth jira" in str(failure.value.description)
    jira.close()


def test_a_change_comment_posted_by_a_run_that_failed_later_is_not_posted_again(tmp_path: Path) -> None:
    """The comment was looked for only when the step itself retried: a run whose transition failed after
    the comment went out left its dead letter, and the replay (a new run) posted the comment again."""
    assert_converges("visma_jira:299334852")
    issue = CommentedIssue("To Do")
    record = PlannedIssueBase(
        record_id="000042", external_id="supplierInvoice/000042", action=Action.UPDATE, issue_id="10001",
        issue_key="FIN-1", current_status="To Do", issue=RenderedIssueBase(
            external_id="supplierInvoice/000042", summary="Invoice 000042", description=adf.doc("x"), amount=1.0,
            currency="NOK", last_modified=datetime(2026, 11, 21, tzinfo=UTC), facts={}),
    )  # fmt: skip
    comment = (
        adf.doc(adf.paragraph("Updated in Visma. Visma ID supplierInvoice/000042, version 7")),
        "version 7",
    )
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        for run in ("run-1", "replay"):
            writer = IssueWriter(
                flow="visma_jira.invoice_issues",
                asset="jira/visma_invoice_issues",
                client=issue,
                ledger=ledger,
                run_id=run,
                log=logging.getLogger("test"),
                retrying=False,
                consistency_window_s=0,
            )  # type: ignore[arg-type]
            writer._update(
                record, {}, comments=[comment], transition_to="In Review", path=["To Do", "In Review"]
            )

    assert issue.status == "In Review"
    assert issue.posted == 1


def _invoice_update(current_status: str) -> PlannedIssueBase:
    return PlannedIssueBase(
        record_id="000006", external_id="supplierInvoice/000006", action=Action.UPDATE, issue_id="10010",
        issue_key="FIN-10", current_status=current_status, issue=RenderedIssueBase(
            external_id="supplierInvoice/000006", summary="Invoice 000006", description=adf.doc("x"), amount=1.0,
            currency="NOK", last_modified=datetime(2026, 11, 21, tzinfo=UTC), facts={}),
    )  # fmt: skip


def _writer(client: object, ledger: Ledger, *, retrying: bool) -> IssueWriter:
    return IssueWriter(flow="visma_jira.invoice_issues", asset="jira/visma_invoice_issues", client=client,  # type: ignore[arg-type]
                       ledger=ledger, run_id="run-1", log=logging.getLogger("test"), retrying=retrying,
                       consistency_window_s=0)  # fmt: skip


def test_a_retried_push_leaves_alone_an_update_an_earlier_attempt_finished(tmp_path: Path) -> None:
    """schedule visma_jira:6: the first attempt moved FIN-10 Approved -> In Review; the step's retry walked
    again from the plan's Approved, took Dispute (31, valid from In Review too), failed the next hop,
    and the ledger, already holding the new content as linked, let the issue stay Disputed."""
    issue = CommentedIssue("Approved")
    issue.failures = 0
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        _writer(issue, ledger, retrying=False)._update(_invoice_update("Approved"), {}, transition_to="In Review",
                                                       path=CHAOS_PATH)  # fmt: skip
        moved = list(issue.history)
        retry = _writer(issue, ledger, retrying=True)
        retry.menu = _menu_knowing("Approved", "Disputed")
        retry._update(_invoice_update("Approved"), {}, transition_to="In Review", path=CHAOS_PATH)

        assert issue.history == moved
        assert retry.outcome.succeeded == ["000006"]


def test_an_update_whose_walk_failed_half_way_is_compared_again(tmp_path: Path) -> None:
    issue = CommentedIssue("Approved")
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        writer = _writer(issue, ledger, retrying=False)
        writer._update(_invoice_update("Approved"), {}, transition_to="In Review", path=CHAOS_PATH)

        link = ledger.links_for("visma_jira.invoice_issues", ["000006"])["000006"]
        assert link.content_hash == RECHECK
        assert writer.outcome.failed == 1


def test_a_gl_posting_whose_invoice_got_its_issue_in_another_days_run_is_commented() -> None:
    """A GL batch landed in one day's partition while its invoice had no issue (Jira's grant revoked); the
    issue was made later by the next day's run, whose plan held no audit of that batch: the audit comment
    waited for a run of its own partition that never came (found by the CI slice just after midnight)."""
    assert_converges("visma_jira:255808012")


# -- acumatica_jira ------------------------------------------------------------------------------------


def test_an_interrupted_release_is_retried_not_reported_as_refused() -> None:
    """A release whose process was interrupted was commented on the issue as Acumatica refusing it, and the
    resolution recorded as handled: the bill stayed unreleased."""
    assert_converges("acumatica_jira:25")


# -- visma_asana ---------------------------------------------------------------------------------------


def test_po_line_subtasks_are_written_after_a_push_died_between_the_po_and_its_lines() -> None:
    """The PO's link carried its content hash before its lines went out: a push that failed in between was
    retried (and every later plan) as done, and the PO never got those subtasks."""
    assert_converges("visma_asana:5")


def test_a_task_change_whose_note_failed_is_noted_when_the_return_path_is_replayed() -> None:
    """A note Visma kept answering 412 to became a dead letter nothing ever retried (the replay job knew only
    the task assets): the team's change never reached Visma unless the task changed again."""
    assert_converges("visma_asana:1458976648")
