"""Every timestamp parser: any input is a moment in UTC or the parser's own refusal, never a crash.

A model field's validator may only raise ``ValueError`` (pydantic turns nothing else into a
``ValidationError`` naming the field), and ``modified_at`` readers catch only that; the webhook
headers' parser refuses with ``Malformed`` (400). Edge moments that ISO 8601 allows but UTC cannot
hold (``0001-01-01T00:00:00+01:00``) were an ``OverflowError`` in every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.systems.acumatica.models import parse_moment
from ml_connector_dagster.systems.asana.models import parse_asana_datetime
from ml_connector_dagster.systems.jaggaer.models import parse_timestamp as parse_j1p
from ml_connector_dagster.systems.jira.models import parse_jira_datetime
from ml_connector_dagster.systems.visma.models import parse_utc
from ml_connector_dagster.webhooks.contract import Malformed
from ml_connector_dagster.webhooks.signatures import parse_timestamp as parse_header

from .mutations import BAD_DATES, NUMBERS

EDGES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
]
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))
MOMENTS = st.datetimes(timezones=OFFSETS).map(lambda moment: moment.isoformat())
ANY_VALUE = st.one_of(MOMENTS, st.sampled_from(BAD_DATES + EDGES), st.text(max_size=40), st.sampled_from(NUMBERS),
                      st.integers(), st.none(), st.booleans(), st.just([]), st.just({}))  # fmt: skip

PARSERS: dict[str, Callable[[Any], datetime | None]] = {
    "visma": parse_utc, "jaggaer": parse_j1p, "acumatica": parse_moment, "asana": parse_asana_datetime,
    "jira": parse_jira_datetime,
}  # fmt: skip


@pytest.mark.parametrize("vendor", sorted(PARSERS))
@settings(max_examples=150, deadline=None)
@given(value=ANY_VALUE)
@example(value=EDGES[0])
@example(value=EDGES[1])
@example(value=10**30)
@example(value=float("inf"))
def test_a_vendor_timestamp_parses_to_utc_or_raises_value_error(vendor: str, value: Any) -> None:
    try:
        moment = PARSERS[vendor](value)
    except ValueError:
        return
    assert moment is None or moment.utcoffset() == timedelta(0)


@settings(max_examples=150, deadline=None)
@given(value=st.one_of(MOMENTS, st.sampled_from(BAD_DATES + EDGES), st.text(max_size=40),
                       st.integers().map(str), st.floats().map(str)))  # fmt: skip
@example(value=EDGES[0])
@example(value=EDGES[1])
def test_a_webhook_timestamp_header_parses_to_utc_or_is_malformed(value: str) -> None:
    try:
        moment = parse_header(value)
    except Malformed as refused:
        assert refused.status_code == 400
        return
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_a_moment_outside_utcs_range_is_refused_as_bad_input(vendor: str) -> None:
    for edge in EDGES[:2]:
        with pytest.raises(ValueError, match="out of range"):
            PARSERS[vendor](edge)


def test_the_edges_utc_can_hold_still_parse() -> None:
    assert parse_utc("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_header("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
