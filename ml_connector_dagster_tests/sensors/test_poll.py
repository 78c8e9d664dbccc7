"""The watermark machinery of poll sensors, without Dagster or a vendor: cursor, collection, planning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.sensors.poll import (
    Change,
    Collected,
    PollCursor,
    PollPolicy,
    collect_changes,
    load_cursor,
    plan_poll,
    poll_due,
)

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
POLICY = PollPolicy(lookback=timedelta(days=14))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_cursor_round_trips_through_its_json() -> None:
    cursor = PollCursor(watermark=at(5), ids_at_watermark=("a", "b"))
    assert PollCursor.from_json(cursor.to_json()) == cursor


def test_no_cursor_starts_at_now_less_the_lookback() -> None:
    assert load_cursor(None, now=at(0), lookback=timedelta(days=2)) == PollCursor(watermark=at(0) - timedelta(days=2))


def test_an_unreadable_cursor_is_logged_and_replaced_by_a_fresh_start() -> None:
    warnings: list[str] = []

    class Log:
        def warning(self, message: str) -> None:
            warnings.append(message)

    cursor = load_cursor('{"watermark": "yesterday"}', now=at(0), lookback=timedelta(hours=1), log=Log())
    assert cursor == PollCursor(watermark=at(-3600))
    assert len(warnings) == 1 and "starting fresh" in warnings[0]


def test_ids_already_seen_at_the_watermark_are_dropped_and_new_ones_kept() -> None:
    cursor = PollCursor(watermark=at(10), ids_at_watermark=("a",))
    pages = [[Change("a", at(10)), Change("b", at(10)), Change("c", at(11)), Change("old", at(9))]]
    assert sorted(collect_changes(pages, cursor, POLICY).changes) == [Change("b", at(10)), Change("c", at(11))]


def test_the_new_cursor_keeps_only_the_ids_at_the_new_watermark() -> None:
    changes = Collected([Change("a", at(1)), Change("b", at(3)), Change("c", at(3))], complete=True)
    plan = plan_poll(changes, PollCursor(watermark=at(0)), partitions_def=PARTITIONS, tick_started_at=at(60))
    assert plan.cursor == PollCursor(watermark=at(3), ids_at_watermark=("b", "c"))


def test_new_ids_at_an_unchanged_watermark_join_the_seen_ones() -> None:
    cursor = PollCursor(watermark=at(3), ids_at_watermark=("b",))
    plan = plan_poll(Collected([Change("d", at(3))], True), cursor, partitions_def=PARTITIONS, tick_started_at=at(60))
    assert plan.cursor == PollCursor(watermark=at(3), ids_at_watermark=("b", "d"))


def test_one_window_per_partition_spanning_its_changes() -> None:
    changes = Collected([Change("a", at(0)), Change("b", at(100)), Change("c", at(86400))], complete=True)
    plan = plan_poll(changes, PollCursor(watermark=at(-1)), partitions_def=PARTITIONS, tick_started_at=at(90000))
    assert [(w.partition_key, w.modified_from, w.modified_to, w.changes) for w in plan.windows] == [
        ("2026-01-05", at(0), at(100), 2), ("2026-01-06", at(86400), at(86400), 1)]


def test_changes_before_the_first_partition_are_skipped() -> None:
    early = Collected([Change("a", datetime(2025, 12, 31, tzinfo=UTC)), Change("b", at(0))], complete=True)
    plan = plan_poll(early, PollCursor(watermark=datetime(2025, 12, 1, tzinfo=UTC)), partitions_def=PARTITIONS,
                     tick_started_at=at(60))
    assert [w.partition_key for w in plan.windows] == ["2026-01-05"] and plan.skipped_before_start == 1


def test_a_change_in_a_partition_not_open_yet_waits_below_the_watermark() -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=2)
    changes = Collected([Change("a", at(0)), Change("future", tomorrow)], complete=True)
    plan = plan_poll(changes, PollCursor(watermark=at(-1)), partitions_def=PARTITIONS, tick_started_at=at(60))
    assert plan.deferred == 1 and plan.cursor.watermark == at(0)


def test_a_tick_stops_at_max_changes_and_says_it_is_incomplete() -> None:
    pages = [[Change(f"{page}-{n}", at(page)) for n in range(5)] for page in range(10)]
    collected = collect_changes(pages, PollCursor(watermark=at(0)), PollPolicy(lookback=timedelta(1), max_changes=12))
    assert not collected.complete and len(collected.changes) == 15


def test_a_tick_stops_when_its_time_budget_is_spent() -> None:
    ticks = iter(range(100))
    collected = collect_changes(([Change(str(n), at(n))] for n in range(50)), PollCursor(watermark=at(0)),
                                PollPolicy(lookback=timedelta(1), time_budget_s=3), clock=lambda: next(ticks))
    assert not collected.complete and len(collected.changes) < 50


def test_an_early_stop_covers_every_partition_up_to_the_tick_and_moves_there() -> None:
    cursor = PollCursor(watermark=at(0))
    started = at(2 * 86400 + 60)
    plan = plan_poll(Collected([Change("a", at(5))], False), cursor, partitions_def=PARTITIONS, tick_started_at=started)
    assert [w.partition_key for w in plan.windows] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert plan.windows[0].modified_from == at(0)
    assert plan.windows[-1].modified_to == started - timedelta(microseconds=1)
    assert plan.cursor == PollCursor(watermark=started)


# -- the invariant, for any interleaving of changes and ticks ------------------------------------

events = st.lists(
    st.one_of(st.just("tick"), st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([0, 0, 0, 1, 7, 3600]))),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_every_version_is_requested_exactly_once(history: list[object]) -> None:
    """Records change (often at the very same timestamp) between ticks; each tick reads ``>=`` the
    watermark. Every version that was current at some tick is requested once, and only once."""
    now = at(0)
    latest: dict[str, datetime] = {}
    must_see: set[tuple[str, datetime]] = set()
    requested: list[tuple[str, datetime]] = []
    cursor = PollCursor(watermark=at(-1))
    for event in [*history, "tick"]:
        if event == "tick":
            source = [Change(i, m) for i, m in latest.items() if m >= cursor.watermark]
            must_see |= {(c.record_id, c.modified_at) for c in source}
            collected = collect_changes([source], cursor, POLICY)
            plan = plan_poll(collected, cursor, partitions_def=PARTITIONS, tick_started_at=now + timedelta(hours=2))
            requested += [(c.record_id, c.modified_at) for c in collected.changes]
            cursor = plan.cursor
        else:
            record_id, step = event  # type: ignore[misc]
            now += timedelta(seconds=step)
            latest[record_id] = now
    assert sorted(requested) == sorted(set(requested))  # nothing twice
    assert must_see - set(requested) == set()  # nothing skipped


def test_a_hint_reading_sensor_polls_first_then_once_per_interval() -> None:
    assert poll_due(None, T0, 60)
    assert not poll_due(T0.timestamp() - 59.9, T0, 60)
    assert poll_due(T0.timestamp() - 60, T0, 60)
    assert poll_due(T0.timestamp(), T0, 0)  # 0: at every tick (the chaos harness's pace)
