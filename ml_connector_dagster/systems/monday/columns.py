"""monday.com column values: what ``create_item`` / ``change_multiple_column_values`` take, and back.

A write sends ``column_values`` as ONE JSON-encoded string mapping column id -> value (the client
encodes the map :func:`encode_column_values` builds), each value in the shape its column type expects (monday.com's "changing column values" guide [2nd]):

=========  ==========================================  =========================================
type       we send                                     from
=========  ==========================================  =========================================
text       ``"plain text"``                            ``str``
numbers    ``"1234.5"`` (a string, never a float)      ``Decimal`` / ``int`` / ``float`` / ``str``
date       ``{"date": "YYYY-MM-DD"}`` (+ ``"time"``    ``date``; an aware ``datetime`` (UTC)
           ``"HH:MM:SS"``, UTC)
status     ``{"label": "Received"}``                   ``str`` (or ``{"index": n}`` from ``int``)
people     ``{"personsAndTeams": [{"id", "kind"}]}``   user ids (``int``/``str``) or ``PersonOrTeam``
link       ``{"url": ..., "text": ...}``               ``str`` URL or ``Link``
dropdown   ``{"labels": [...]}``                       ``str`` or a sequence of ``str``
=========  ==========================================  =========================================

``None`` clears a column (JSON ``null``). Reading decodes an item's ``value`` (a JSON *string*) and
``text`` back to the same Python values, so ``decode(encode(x)) == x`` (tested with hypothesis).
Numbers never travel as floats: a float would lose the cents of a large amount.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

__all__ = [
    "SUPPORTED_TYPES",
    "ColumnValueError",
    "Link",
    "PersonOrTeam",
    "date_value",
    "decode_column_value",
    "dropdown_value",
    "encode_column_value",
    "encode_column_values",
    "link_value",
    "numbers_value",
    "people_value",
    "status_value",
    "text_value",
]

SUPPORTED_TYPES: frozenset[str] = frozenset({"text", "numbers", "date", "status", "people", "link", "dropdown"})


class ColumnValueError(ValueError):
    """A value that cannot be written to a column of that type (the message names the column)."""


class PersonOrTeam(NamedTuple):
    """One entry of a people column: a user (``person``) or a team."""

    id: int
    kind: str = "person"


class Link(NamedTuple):
    """A link column value: where it points and what it shows."""

    url: str
    text: str


def text_value(value: str) -> str:
    """A text column takes the plain string."""
    if not isinstance(value, str):
        raise ColumnValueError(f"text expects a string, got {type(value).__name__}")
    return value


def numbers_value(value: Decimal | int | float | str) -> str:
    """A numbers column takes a decimal *string* in plain notation (no exponent, no grouping)."""
    if isinstance(value, bool):
        raise ColumnValueError("numbers expects a number, got bool")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ColumnValueError(f"numbers expects a finite number, got {value!r}")
        value = repr(value)  # shortest round-tripping digits, not the binary expansion
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ColumnValueError(f"numbers expects a number, got {value!r}") from None
    if not number.is_finite():
        raise ColumnValueError(f"numbers expects a finite number, got {value!r}")
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def date_value(value: date | datetime) -> dict[str, str]:
    """A date column takes ``{"date": "YYYY-MM-DD"}``; a moment adds ``"time"``, both in UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ColumnValueError("date expects an aware datetime (monday.com stores times in UTC)")
        moment = value.astimezone(UTC)
        return {"date": moment.date().isoformat(), "time": moment.strftime("%H:%M:%S")}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    raise ColumnValueError(f"date expects a date, got {type(value).__name__}")


def status_value(label: str | int) -> dict[str, Any]:
    """A status column takes the label's text (``{"label"}``) or its index (``{"index"}``)."""
    if isinstance(label, bool):
        raise ColumnValueError("status expects a label or an index, got bool")
    if isinstance(label, int):
        return {"index": label}
    if not isinstance(label, str) or not label:
        raise ColumnValueError(f"status expects a non-empty label, got {label!r}")
    return {"label": label}


def people_value(people: Iterable[int | str | PersonOrTeam]) -> dict[str, list[dict[str, Any]]]:
    """A people column takes ``{"personsAndTeams": [{"id": 123, "kind": "person"}, ...]}``."""
    if isinstance(people, str | int):
        people = [people]
    entries = []
    for entry in people:
        person = entry if isinstance(entry, PersonOrTeam) else PersonOrTeam(_user_id(entry))
        if person.kind not in ("person", "team"):
            raise ColumnValueError(f"people entries are a person or a team, got kind {person.kind!r}")
        entries.append({"id": _user_id(person.id), "kind": person.kind})
    return {"personsAndTeams": entries}


def _user_id(value: int | str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise ColumnValueError(f"people expects numeric user ids, got {value!r}")
    return int(value)


def link_value(link: str | Link) -> dict[str, str]:
    """A link column takes ``{"url", "text"}``; a bare URL shows itself."""
    url, text = (link.url, link.text) if isinstance(link, Link) else (link, link)
    if not isinstance(url, str) or not url.strip():
        raise ColumnValueError(f"link expects a URL, got {url!r}")
    return {"url": url, "text": text}


def dropdown_value(labels: str | Sequence[str]) -> dict[str, list[str]]:
    """A dropdown column takes ``{"labels": [...]}`` (labels are case-sensitive)."""
    chosen = [labels] if isinstance(labels, str) else list(labels)
    if not chosen or not all(isinstance(label, str) and label for label in chosen):
        raise ColumnValueError(f"dropdown expects one or more non-empty labels, got {labels!r}")
    return {"labels": chosen}


_ENCODERS = {
    "text": text_value,
    "numbers": numbers_value,
    "date": date_value,
    "status": status_value,
    "people": people_value,
    "link": link_value,
    "dropdown": dropdown_value,
}


def encode_column_value(column_type: str, value: Any) -> Any:
    """The wire value for one column of ``column_type`` (``None`` clears it)."""
    if value is None:
        return None
    encoder = _ENCODERS.get(column_type)
    if encoder is None:
        raise ColumnValueError(f"column type {column_type!r} is not written by the connector")
    return encoder(value)


def encode_column_values(column_types: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any]:
    """Wire values for a write (column id -> encoded value); the client JSON-encodes the whole map.

    ``column_types`` maps each column id to its monday.com type; an error names the column.
    """
    encoded: dict[str, Any] = {}
    for column_id, value in values.items():
        column_type = column_types.get(column_id)
        if column_type is None:
            raise ColumnValueError(f"column {column_id!r} is not on the board")
        try:
            encoded[column_id] = encode_column_value(column_type, value)
        except ColumnValueError as exc:
            raise ColumnValueError(f"column {column_id!r}: {exc}") from None
    return encoded


def decode_column_value(
    column_type: str, value: str | None, text: str | None, labels: Sequence[str] | None = None
) -> Any:
    """The Python value of a read column (``value`` is the API's JSON string, ``text`` its display).

    Empty columns decode to ``None``. Status decodes to its label, dropdown to its labels (``labels``:
    the ``DropdownValue.values`` read with it; without them the display text is split on commas),
    people to :class:`PersonOrTeam` entries, link to :class:`Link`, date to ``date`` (or an aware
    ``datetime`` when a time is set), numbers to ``Decimal``.
    """
    raw = json.loads(value) if value else None
    if raw in (None, "", {}):
        return None
    if column_type == "text":
        return raw if isinstance(raw, str) else text
    if column_type == "numbers":
        return Decimal(str(raw)) if str(raw).strip() else None
    if column_type == "date":
        day = date.fromisoformat(raw["date"])
        if raw.get("time"):
            return datetime.fromisoformat(f"{raw['date']}T{raw['time']}").replace(tzinfo=UTC)
        return day
    if column_type == "status":
        return text or None
    if column_type == "people":
        return [PersonOrTeam(int(p["id"]), p.get("kind", "person")) for p in raw.get("personsAndTeams", [])] or None
    if column_type == "link":
        return Link(raw.get("url", ""), raw.get("text") or raw.get("url", "")) if raw.get("url") else None
    if column_type == "dropdown":
        if labels:
            return list(labels)
        return [label.strip() for label in text.split(",")] if text else None
    return text
