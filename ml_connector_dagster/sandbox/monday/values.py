"""Column values as monday.com takes them in, stores them, and shows them.

``parse_input`` is the strict gate of every write: the JSON forms of the column-values guide
(status ``{"label"}`` / ``{"index"}``, date ``{"date", "time"}``, people ``{"personsAndTeams"}``,
link ``{"url", "text"}``, dropdown ``{"labels"}`` / ``{"ids"}``, numbers as a *string*) and the
simple-string forms; anything else is a ``ColumnValueException`` in monday's words. ``null``, ``""``
and ``{}`` clear a column. ``render`` gives what ``column_values`` answers: ``value`` (the stored
object, JSON-encoded) and ``text`` (``""`` for empty columns, ``null`` for empty status/dropdown).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import column_value_error
from .tenant import Column, User

__all__ = [
    "COLUMN_CLASS",
    "WEBHOOK_COLUMN_TYPE",
    "GUIDE",
    "is_clear",
    "parse_input",
    "parse_simple",
    "render_text",
    "webhook_value",
]

GUIDE = (
    "invalid value, please check our API documentation for the correct data structure for this column. "
    "https://developer.monday.com/api-reference/docs/change-column-values"
)
# How monday names its column classes in error_data, and its column types in webhook events.
COLUMN_CLASS = {
    "text": "TextColumn", "numbers": "NumericColumn", "date": "DateColumn", "status": "StatusColumn",
    "people": "MultiplePersonColumn", "link": "LinkColumn", "dropdown": "DropdownColumn",
}  # fmt: skip
WEBHOOK_COLUMN_TYPE = {
    "text": "text", "numbers": "numeric", "date": "date", "status": "color",
    "people": "multiple-person", "link": "link", "dropdown": "dropdown",
}  # fmt: skip
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
STATUS_COLORS = ("#fdab3d", "#00c875", "#e2445c", "#0086c0", "#a25ddc", "#c4c4c4", "#579bfc", "#ff642e")


def is_clear(raw: Any) -> bool:
    """``null``, ``""`` and ``{}`` empty a column."""
    return raw is None or raw == "" or raw == {}


def parse_input(
    column: Column, raw: Any, *, users: dict[int, User], stamp: str, create_labels: bool = False
) -> Any:
    """The stored value for ``raw`` written to ``column`` (None clears); ColumnValueException otherwise.

    ``create_labels`` adds unknown status/dropdown labels to the column (``create_labels_if_missing``).
    """
    if is_clear(raw):
        return None
    parser = _PARSERS.get(column.type)
    if parser is None:
        raise column_value_error(f"The column type {column.type} cannot be changed through the API",
                                 raw, column.type)  # fmt: skip
    return parser(column, raw, users, stamp, create_labels)


def parse_simple(column: Column, text: str | None, *, users: dict[int, User], stamp: str,
                 create_labels: bool = False) -> Any:  # fmt: skip
    """``change_simple_column_value``: the simple-string form of each column type."""
    return parse_input(column, text, users=users, stamp=stamp, create_labels=create_labels)


def _refuse(column: Column, raw: Any, message: str = GUIDE) -> Exception:
    return column_value_error(message, _ruby_repr(raw), COLUMN_CLASS.get(column.type, column.type))


def _ruby_repr(raw: Any) -> str:
    # monday echoes the offending value Ruby-style: {"label"=>"Nope"}
    return json.dumps(raw, ensure_ascii=False, separators=(",", "=>")) if isinstance(raw, dict) else str(raw)


def _text(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    if not isinstance(raw, str):
        raise _refuse(column, raw)
    return raw


def _numbers(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    if not isinstance(raw, str) or not _NUMBER.match(raw.strip()):
        raise _refuse(column, raw)
    try:
        Decimal(raw.strip())
    except InvalidOperation:
        raise _refuse(column, raw) from None
    return raw.strip()


def _date(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    if isinstance(raw, str):  # simple form: "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS"
        day, _, time = raw.strip().partition(" ")
        raw = {"date": day, **({"time": time} if time else {})}
    if not isinstance(raw, dict) or not isinstance(raw.get("date"), str):
        raise _refuse(column, raw)
    try:
        day = date.fromisoformat(raw["date"])
    except ValueError:
        raise _refuse(column, raw) from None
    if len(raw["date"]) != 10:
        raise _refuse(column, raw)
    time = raw.get("time")
    if time is not None and (not isinstance(time, str) or not _TIME.match(time) or not _valid_time(time)):
        raise _refuse(column, raw)
    if time is not None and len(time) == 5:
        time += ":00"
    return {"date": day.isoformat(), "time": time, "changed_at": stamp}


def _valid_time(text: str) -> bool:
    parts = [int(p) for p in text.split(":")]
    return parts[0] < 24 and parts[1] < 60 and (len(parts) < 3 or parts[2] < 60)


def _status(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    labels = column.status_labels()
    if isinstance(raw, str):
        raw = {"label": raw}
    if isinstance(raw, dict) and isinstance(raw.get("index"), int) and not isinstance(raw["index"], bool):
        if raw["index"] not in labels:
            raise _refuse(column, raw, _status_message(labels))
        return {"index": raw["index"], "post_id": None, "changed_at": stamp}
    if not isinstance(raw, dict) or not isinstance(raw.get("label"), str):
        raise _refuse(column, raw)
    wanted = raw["label"]
    index = next((i for i, label in labels.items() if label == wanted), None)
    if index is None:
        if not create:
            raise _refuse(column, raw, _status_message(labels))
        index = next(i for i in range(len(labels) + 1) if i not in labels)
        column.settings.setdefault("labels", {})[str(index)] = wanted
        column.settings.setdefault("labels_colors", {})[str(index)] = {"color": STATUS_COLORS[index % 8], "border": STATUS_COLORS[index % 8]}
        column.revision += 1
    return {"index": index, "post_id": None, "changed_at": stamp}


def _status_message(labels: dict[int, str]) -> str:
    listed = ", ".join(f"{index}: {label}" for index, label in sorted(labels.items()))
    return f"This status label doesn't exist, possible statuses are: {{{listed}}}"


def _people(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    if isinstance(raw, str):  # simple form: "123, 456"
        ids = [part.strip() for part in raw.split(",")]
        if not all(part.isdigit() for part in ids):
            raise _refuse(column, raw)
        raw = {"personsAndTeams": [{"id": int(part), "kind": "person"} for part in ids]}
    entries = raw.get("personsAndTeams") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise _refuse(column, raw)
    chosen = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kind", "person") not in ("person", "team"):
            raise _refuse(column, raw)
        person_id = entry.get("id")
        if isinstance(person_id, str) and person_id.isdigit():
            person_id = int(person_id)
        if not isinstance(person_id, int) or isinstance(person_id, bool):
            raise _refuse(column, raw)
        if entry.get("kind", "person") == "person" and person_id not in users:
            raise _refuse(column, raw, f"The person or team with id {person_id} doesn't exist")
        chosen.append({"id": person_id, "kind": entry.get("kind", "person")})
    return {"personsAndTeams": chosen, "changed_at": stamp}


def _link(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    if isinstance(raw, str):  # simple form: "https://example.com Example"
        url, _, text = raw.strip().partition(" ")
        raw = {"url": url, "text": text or url}
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str) or not raw["url"].strip():
        raise _refuse(column, raw)
    text = raw.get("text")
    if text is not None and not isinstance(text, str):
        raise _refuse(column, raw)
    return {"url": raw["url"], "text": text or raw["url"], "changed_at": stamp}


def _dropdown(column: Column, raw: Any, users: dict[int, User], stamp: str, create: bool) -> Any:
    options = column.dropdown_labels()
    if isinstance(raw, str):  # simple form: "NOK, EUR"
        raw = {"labels": [part.strip() for part in raw.split(",") if part.strip()]}
    if isinstance(raw, dict) and isinstance(raw.get("ids"), list):
        if not all(isinstance(i, int) and i in options for i in raw["ids"]):
            raise _refuse(column, raw)
        return {"ids": list(raw["ids"]), "changed_at": stamp}
    labels = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise _refuse(column, raw)
    by_label = {label: option_id for option_id, label in options.items()}
    ids = []
    for label in labels:  # case-sensitive, as monday validates dropdown labels
        if label not in by_label:
            if not create:
                listed = ", ".join(f"{i}: {name}" for i, name in sorted(options.items()))
                raise _refuse(column, raw, f"The dropdown label '{label}' does not exist, possible labels are: {{{listed}}}")
            new_id = max([*options, 0]) + 1
            column.settings.setdefault("labels", []).append({"id": new_id, "name": label})
            column.revision += 1
            options[new_id] = label
            by_label[label] = new_id
        ids.append(by_label[label])
    return {"ids": ids, "changed_at": stamp}


_PARSERS = {
    "text": _text, "numbers": _numbers, "date": _date, "status": _status,
    "people": _people, "link": _link, "dropdown": _dropdown,
}  # fmt: skip


def render_text(column: Column, stored: Any, users: dict[int, User]) -> str | None:
    """The ``text`` of a column value: ``""`` when empty, ``None`` for empty status and dropdown."""
    if stored is None:
        return None if column.type in ("status", "dropdown") else ""
    if column.type in ("text", "numbers"):
        return str(stored)
    if column.type == "date":
        return stored["date"] if not stored.get("time") else f"{stored['date']} {stored['time']}"
    if column.type == "status":
        return column.status_labels().get(stored["index"])
    if column.type == "people":
        return ", ".join(users[p["id"]].name if p["id"] in users else str(p["id"])
                         for p in stored["personsAndTeams"])  # fmt: skip
    if column.type == "link":
        return f"{stored['text']} - {stored['url']}"
    if column.type == "dropdown":
        options = column.dropdown_labels()
        return ", ".join(options.get(i, "") for i in stored["ids"])
    return None


def webhook_value(column: Column, stored: Any, users: dict[int, User]) -> Any:
    """A column value as webhook events carry it (``value`` / ``previousValue``)."""
    if stored is None:
        return None
    if column.type == "text":
        return {"value": stored}
    if column.type == "numbers":
        return {"value": float(stored), "unit": None}
    if column.type == "status":
        index = stored["index"]
        color = column.settings.get("labels_colors", {}).get(str(index), {"color": "#c4c4c4", "border": "#b0b0b0"})
        done = index in column.settings.get("done_colors", [])
        return {"label": {"index": index, "text": column.status_labels().get(index), "style": color, "is_done": done},
                "post_id": None}  # fmt: skip
    if column.type == "dropdown":
        options = column.dropdown_labels()
        return {"chosenValues": [{"id": i, "name": options.get(i)} for i in stored["ids"]]}
    return {key: value for key, value in stored.items() if key != "changed_at"} | {"changed_at": stored.get("changed_at")}


def changed_at_stamp(moment: float) -> str:
    """monday's ``changed_at`` inside stored values: ISO 8601, milliseconds, ``Z``."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
