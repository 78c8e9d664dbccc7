"""The ledger, specified against both backends it supports: SQLite and the machine's Postgres."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.ledger import AlreadyLinked, FailedRecord, Ledger, Link, metadata
from ml_connector_dagster.core.migrations import SCRIPT_LOCATION, VERSION_TABLE

FLOW = "visma_jira.invoices"
ASSET = "jira/visma_invoice_issues"


def _versions(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as connection:
        return list(connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def _head() -> str:
    """The newest migration revision shipped with the package."""
    return ScriptDirectory(str(SCRIPT_LOCATION)).get_current_head()


def _link(source_id: str, dest_id: str | None = "10001", **changes: str) -> Link:
    values = {
        "flow": FLOW,
        "source_id": source_id,
        "source_version": "2024-05-02T10:00:00Z",
        "dest_system": "jira",
        "dest_id": dest_id,
        "dest_key": "FIN-12",
        "dest_url": "https://jira.example/browse/FIN-12",
        "content_hash": "hash-1",
        "run_id": "run-1",
        **changes,
    }
    return Link.model_validate(values)


# -- migrations ------------------------------------------------------------------------------


def test_open_creates_every_table(ledger: Ledger) -> None:
    tables = set(sa.inspect(ledger.engine).get_table_names())
    assert {"links", "dead_letters", "inbox", "vault_entries", "kv_state", VERSION_TABLE} <= tables


def test_vault_entries_table_has_the_columns_the_vault_expects(ledger: Ledger) -> None:
    inspector = sa.inspect(ledger.engine)
    columns = {column["name"]: column for column in inspector.get_columns("vault_entries")}
    assert set(columns) == {"name", "ciphertext", "updated_at"}
    assert inspector.get_pk_constraint("vault_entries")["constrained_columns"] == ["name"]
    assert not columns["ciphertext"]["nullable"] and not columns["updated_at"]["nullable"]


def test_opening_again_keeps_data_and_the_single_head(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as first:
        first.set_state("k", "v")
    with Ledger.open(ledger_url) as second:
        assert second.get_state("k") == "v"
        assert _versions(second) == [_head()]


def test_two_processes_opening_at_once_both_succeed(ledger_url: str) -> None:
    # Eight, not two: alembic's process-wide context once made concurrent threads fail now and then.
    start = threading.Barrier(8)
    opened: list[Ledger] = []
    errors: list[BaseException] = []

    def open_ledger() -> None:
        start.wait()
        try:
            opened.append(Ledger.open(ledger_url))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_ledger) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert [_versions(ledger) for ledger in opened] == [[_head()]] * 8
    finally:
        for ledger in opened:
            ledger.dispose()


def test_opening_a_new_sqlite_file_waits_for_a_writer_that_holds_it(tmp_path: Path) -> None:
    # Converting a new file to WAL while another connection holds the write lock fails at once
    # in SQLite (its busy handler is not called there): the open has to wait it out itself.
    path = tmp_path / "ledger.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE elsewhere (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO elsewhere VALUES (1)")
    release = threading.Timer(0.3, writer.execute, ("COMMIT",))
    release.start()
    try:
        with Ledger.open(f"sqlite:///{path}") as opened, opened.engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    finally:
        release.join()
        writer.close()
    assert mode == "wal"


def test_table_definitions_match_the_migrations(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, metadata)
    # vault_entries, landed_records and destination_index belong to their stores' own Table
    # objects (each checked against the migration in its own test), not to the ledger's metadata.
    foreign = {"vault_entries", "landed_records", "destination_index"}
    def owned_elsewhere(difference: tuple) -> bool:
        element = difference[1]
        table = getattr(element, "table", element)
        return difference[0] in {"remove_table", "remove_index"} and table.name in foreign

    assert [d for d in differences if not owned_elsewhere(d)] == []


# -- default URL -----------------------------------------------------------------------------


def test_default_url_is_ML_CONNECTOR_DB_URL_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_DB_URL", "postgresql://ledger@db.internal/connector")
    monkeypatch.setenv("ML_CONNECTOR_HOME", "/srv/connector")
    assert Ledger.default_url() == "postgresql://ledger@db.internal/connector"


def test_default_url_is_sqlite_in_ML_CONNECTOR_HOME(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ML_CONNECTOR_DB_URL", raising=False)
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert Ledger.default_url() == f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"


def test_default_url_falls_back_to_DAGSTER_HOME(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ML_CONNECTOR_DB_URL", raising=False)
    monkeypatch.delenv("ML_CONNECTOR_HOME", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert Ledger.default_url() == f"sqlite:///{tmp_path / 'ledger.db'}"


def test_default_url_falls_back_to_dot_dagster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ML_CONNECTOR_DB_URL", "ML_CONNECTOR_HOME", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert Ledger.default_url() == f"sqlite:///{tmp_path.resolve() / '.dagster' / 'ledger.db'}"


def test_open_without_url_creates_the_home_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ML_CONNECTOR_DB_URL", raising=False)
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path / "not" / "yet"))
    with Ledger.open() as ledger:
        ledger.set_state("k", "v")
    assert (tmp_path / "not" / "yet" / "ledger.db").is_file()


def test_repr_masks_the_database_password() -> None:
    ledger = Ledger(sa.create_engine("postgresql://ledger:hunter2@db.internal/connector"))
    assert "hunter2" not in repr(ledger)


# -- links -----------------------------------------------------------------------------------


def test_pending_intent_becomes_a_link(ledger: Ledger) -> None:
    ledger.mark_pending(FLOW, "INV-1", "2024-05-02T10:00:00Z", "jira", "hash-1", "run-1")
    pending = ledger.links_for(FLOW, ["INV-1"])["INV-1"]
    assert (pending.state, pending.dest_id) == ("pending", None)

    ledger.record_links([_link("INV-1", dest_id="10001")])

    linked = ledger.links_for(FLOW, ["INV-1"])["INV-1"]
    assert (linked.state, linked.dest_id, linked.dest_key) == ("linked", "10001", "FIN-12")
    assert linked.created_at == pending.created_at


def test_pending_links_lists_unconfirmed_intents(ledger: Ledger) -> None:
    ledger.mark_pending(FLOW, "INV-1", "v1", "jira", "hash-1", None)
    ledger.record_links([_link("INV-2")])
    assert [link.source_id for link in ledger.pending_links(FLOW)] == ["INV-1"]


def test_mark_pending_again_refreshes_the_intent(ledger: Ledger) -> None:
    ledger.mark_pending(FLOW, "INV-1", "v1", "jira", "hash-1", "run-1")
    ledger.mark_pending(FLOW, "INV-1", "v2", "jira", "hash-2", "run-2")
    link = ledger.links_for(FLOW, ["INV-1"])["INV-1"]
    assert (link.source_version, link.content_hash, link.run_id) == ("v2", "hash-2", "run-2")


def test_mark_pending_refuses_a_linked_record(ledger: Ledger) -> None:
    ledger.record_links([_link("INV-1")])
    with pytest.raises(AlreadyLinked, match="INV-1"):
        ledger.mark_pending(FLOW, "INV-1", "v2", "jira", "hash-2", "run-2")
    assert ledger.links_for(FLOW, ["INV-1"])["INV-1"].dest_id == "10001"


def test_record_links_updates_an_existing_link(ledger: Ledger) -> None:
    ledger.record_links([_link("INV-1")])
    ledger.record_links([_link("INV-1", source_version="v2", content_hash="hash-2")])
    link = ledger.links_for(FLOW, ["INV-1"])["INV-1"]
    assert (link.source_version, link.content_hash) == ("v2", "hash-2")
    assert ledger.count_links(FLOW) == 1


def test_record_links_refuses_a_link_without_destination_id(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="INV-1"):
        ledger.record_links([_link("INV-1", dest_id=None)])


def test_links_for_reads_more_than_a_thousand_ids_in_batches(ledger: Ledger) -> None:
    ledger.record_links([_link(f"INV-{n}", dest_id=str(n)) for n in range(1200)])
    asked = [f"INV-{n}" for n in range(1250)]
    found = ledger.links_for(FLOW, asked)
    assert len(found) == 1200
    assert found["INV-1199"].dest_id == "1199"
    assert ledger.count_links(FLOW) == 1200


def test_links_are_scoped_to_their_flow(ledger: Ledger) -> None:
    ledger.record_links([_link("INV-1")])
    assert ledger.links_for("visma_asana.invoices", ["INV-1"]) == {}
    assert ledger.count_links("visma_asana.invoices") == 0


def test_links_by_dest_finds_the_source_record(ledger: Ledger) -> None:
    ledger.record_links([_link("INV-1", dest_id="10001"), _link("INV-2", dest_id="10002")])
    assert ledger.links_by_dest(FLOW, ["10002"])["10002"].source_id == "INV-2"


def test_forget_link_drops_it(ledger: Ledger) -> None:
    ledger.record_links([_link("INV-1"), _link("INV-2", dest_id="10002")])
    ledger.forget_link(FLOW, "INV-1")
    assert set(ledger.links_for(FLOW, ["INV-1", "INV-2"])) == {"INV-2"}


# -- dead letters ----------------------------------------------------------------------------


def test_a_failing_record_again_counts_an_attempt_on_its_open_letter(ledger: Ledger) -> None:
    first = ledger.add_dead_letter(ASSET, "INV-1", {"amount": 1}, "HTTP 400", partition_key="2024-05-02")
    second = ledger.add_dead_letter(ASSET, "INV-1", {"amount": 2}, "HTTP 500", run_id="run-2")
    assert second.id == first.id
    assert (second.attempts, second.error, second.record) == (2, "HTTP 500", {"amount": 2})
    assert (second.partition_key, second.run_id) == ("2024-05-02", "run-2")
    assert ledger.count_open_dead_letters(ASSET) == 1


def test_many_failing_records_are_dead_lettered_together_like_one_by_one(ledger: Ledger) -> None:
    ledger.add_dead_letter(ASSET, "INV-1", {"amount": 1}, "HTTP 400", partition_key="2024-05-02")
    added = ledger.add_dead_letters(ASSET, [FailedRecord("INV-1", {"amount": 2}, "missing total"),
                                            FailedRecord("INV-2", {"amount": 3}, "garbled amount", "2024-05-03")],
                                    run_id="run-2")  # fmt: skip
    letters = {letter.source_id: letter for letter in ledger.open_dead_letters(ASSET)}
    assert added == 2 and set(letters) == {"INV-1", "INV-2"}
    assert (letters["INV-1"].attempts, letters["INV-1"].error, letters["INV-1"].partition_key) == (
        2, "missing total", "2024-05-02")
    assert (letters["INV-2"].attempts, letters["INV-2"].record, letters["INV-2"].run_id) == (1, {"amount": 3}, "run-2")


def test_a_record_failing_twice_in_one_batch_counts_two_attempts_on_one_letter(ledger: Ledger) -> None:
    added = ledger.add_dead_letters(ASSET, [FailedRecord("INV-1", {"amount": 1}, "first"),
                                            FailedRecord("INV-2", {"amount": 2}, "other"),
                                            FailedRecord("INV-1", {"amount": 3}, "second")])  # fmt: skip
    letters = {letter.source_id: letter for letter in ledger.open_dead_letters(ASSET)}
    assert added == 3 and set(letters) == {"INV-1", "INV-2"}
    assert (letters["INV-1"].attempts, letters["INV-1"].error, letters["INV-1"].record) == (2, "second", {"amount": 3})


def test_resolving_a_letter_closes_it(ledger: Ledger) -> None:
    letter = ledger.add_dead_letter(ASSET, "INV-1", {}, "boom")
    ledger.resolve_dead_letter(letter.id)
    assert ledger.open_dead_letters(ASSET) == []
    resolved = ledger.dead_letter(letter.id)
    assert resolved is not None and resolved.state == "resolved"


def test_a_record_failing_after_resolution_opens_a_new_letter(ledger: Ledger) -> None:
    old = ledger.add_dead_letter(ASSET, "INV-1", {}, "boom")
    ledger.resolve_dead_letter(old.id)
    new = ledger.add_dead_letter(ASSET, "INV-1", {}, "boom again")
    assert (new.id != old.id, new.attempts) == (True, 1)


def test_abandoned_letters_are_not_open(ledger: Ledger) -> None:
    letter = ledger.add_dead_letter(ASSET, "INV-1", {}, "boom")
    ledger.abandon_dead_letter(letter.id)
    assert ledger.count_open_dead_letters() == 0


def test_resolve_dead_letters_for_closes_the_records_that_succeeded(ledger: Ledger) -> None:
    for source_id in ("INV-1", "INV-2", "INV-3"):
        ledger.add_dead_letter(ASSET, source_id, {}, "boom")
    ledger.add_dead_letter("asana/visma_po_tasks", "INV-1", {}, "boom")
    assert ledger.resolve_dead_letters_for(ASSET, ["INV-1", "INV-3", "INV-9"]) == 2
    assert [letter.source_id for letter in ledger.open_dead_letters(ASSET)] == ["INV-2"]
    assert ledger.count_open_dead_letters() == 2


def test_open_dead_letters_are_oldest_first_and_limited(ledger: Ledger) -> None:
    for source_id in ("INV-1", "INV-2", "INV-3"):
        ledger.add_dead_letter(ASSET, source_id, {}, "boom")
    assert [letter.source_id for letter in ledger.open_dead_letters(limit=2)] == ["INV-1", "INV-2"]


# -- inbox -----------------------------------------------------------------------------------


def test_a_duplicate_event_is_stored_once(ledger: Ledger) -> None:
    assert ledger.append_inbox("jira", "evt-1", {"issue": "FIN-1"}) is True
    assert ledger.append_inbox("jira", "evt-1", {"issue": "FIN-1"}) is False
    assert len(ledger.inbox_after(0)) == 1


def test_the_same_event_id_from_another_system_is_another_event(ledger: Ledger) -> None:
    ledger.append_inbox("jira", "evt-1", {})
    ledger.append_inbox("asana", "evt-1", {})
    assert [event.system for event in ledger.inbox_after(0)] == ["jira", "asana"]


def test_inbox_after_returns_events_in_stored_order_from_the_cursor(ledger: Ledger) -> None:
    for n in range(5):
        ledger.append_inbox("visma", f"evt-{n}", {"n": n})
    events = ledger.inbox_after(0)
    assert [event.payload["n"] for event in events] == [0, 1, 2, 3, 4]
    assert [event.event_id for event in ledger.inbox_after(events[2].id, limit=1)] == ["evt-3"]


def test_inbox_event_keeps_headers_partition_and_record_ref(ledger: Ledger) -> None:
    ref = {"entity": "supplier_invoices", "id": "INV-1"}
    ledger.append_inbox(
        "visma",
        "evt-1",
        {"a": 1},
        headers={"x-signature": "[redacted]"},
        partition_key="2024-05-02",
        record_ref=ref,
    )
    event = ledger.inbox_after(0)[0]
    assert (event.headers, event.partition_key, event.record_ref) == (
        {"x-signature": "[redacted]"},
        "2024-05-02",
        ref,
    )


def test_processed_events_leave_the_unprocessed_view(ledger: Ledger) -> None:
    for n in range(3):
        ledger.append_inbox("visma", f"evt-{n}", {})
    first = ledger.inbox_after(0)[0]
    ledger.mark_inbox_processed([first.id], run_key="visma-2024-05-02")

    assert [event.event_id for event in ledger.inbox_after(0)] == ["evt-1", "evt-2"]
    processed = ledger.inbox_after(0, unprocessed_only=False)[0]
    assert processed.run_key == "visma-2024-05-02"
    assert processed.processed_at is not None and processed.processed_at.tzinfo == UTC


def test_inbox_after_filters_by_system(ledger: Ledger) -> None:
    ledger.append_inbox("jira", "evt-1", {})
    ledger.append_inbox("monday", "evt-2", {})
    assert [event.event_id for event in ledger.inbox_after(0, system="monday")] == ["evt-2"]


def test_ids_keep_growing_after_processed_events_are_pruned(ledger: Ledger) -> None:
    ledger.append_inbox("visma", "evt-1", {})
    last = ledger.inbox_after(0)[0]
    ledger.mark_inbox_processed([last.id])
    assert ledger.prune_inbox(datetime.now(UTC) + timedelta(seconds=1)) == 1
    ledger.append_inbox("visma", "evt-2", {})
    assert ledger.inbox_after(0)[0].id > last.id


def test_a_naive_received_at_is_rejected(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="received_at must be timezone-aware"):
        ledger.append_inbox("jira", "evt-1", {}, received_at=datetime(2024, 5, 2, 12, 0))


# -- key-value state -------------------------------------------------------------------------


def test_state_is_stored_replaced_and_deleted(ledger: Ledger) -> None:
    assert ledger.get_state("jira.webhook_id") is None
    ledger.set_state("jira.webhook_id", "1")
    ledger.set_state("jira.webhook_id", "2")
    assert ledger.get_state("jira.webhook_id") == "2"
    ledger.delete_state("jira.webhook_id")
    assert ledger.get_state("jira.webhook_id") is None


def test_states_under_a_prefix_are_exactly_the_keys_that_start_with_it(ledger: Ledger) -> None:
    for key in ("waiting/a/1", "waiting/a/2", "waiting/a%/3", "waiting/b/1", "waiting/a"):
        ledger.set_state(key, key.upper())
    assert ledger.states_under("waiting/a/") == {"waiting/a/1": "WAITING/A/1", "waiting/a/2": "WAITING/A/2"}
    assert ledger.states_under("waiting/a%") == {"waiting/a%/3": "WAITING/A%/3"}  # no LIKE wildcard
    assert ledger.states_under("nothing/") == {}


# -- timestamps ------------------------------------------------------------------------------


def test_stored_timestamps_come_back_aware_in_utc(ledger: Ledger) -> None:
    ledger.mark_pending(FLOW, "INV-1", "v1", "jira", "hash-1", None)
    letter = ledger.add_dead_letter(ASSET, "INV-1", {}, "boom")
    link = ledger.links_for(FLOW, ["INV-1"])["INV-1"]
    for moment in (link.created_at, link.updated_at, letter.created_at, letter.updated_at):
        assert moment.tzinfo == UTC


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.builds(timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))),
    )
)
def test_received_at_round_trips_as_the_same_instant_in_utc(ledger: Ledger, moment: datetime) -> None:
    event_id = secrets.token_hex(8)
    ledger.append_inbox("jira", event_id, {}, received_at=moment)
    stored = next(e for e in ledger.inbox_after(0, system="jira") if e.event_id == event_id)
    assert stored.received_at == moment
    assert stored.received_at.tzinfo == UTC


def test_update_state_changes_a_value_atomically_across_threads(ledger: Ledger) -> None:
    def add_one(value: str | None) -> tuple[str, int]:
        count = int(value or 0) + 1
        return str(count), count

    seen: list[int] = []
    lock = threading.Lock()

    def count(times: int) -> None:
        for _ in range(times):
            result = ledger.update_state("counter", add_one)
            with lock:
                seen.append(result)

    threads = [threading.Thread(target=count, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ledger.get_state("counter") == "100"
    assert sorted(seen) == list(range(1, 101))  # no two writers ever read the same value
