"""Canonical JSON (the input of every content hash) and JSON reading, both fast.

A content hash is stored in the ledger with every link and landed record; the next run compares a
fresh rendering's hash with it. The canonical text must therefore stay byte for byte what it has
always been: the standard library's ``json.dumps(sort_keys=True, separators=(",", ":"),
default=str)``, ASCII only. orjson writes the same text several times faster except in three
places, which are handled here: it writes non-ASCII (and DEL) as UTF-8 where the standard library
escapes them, so they are escaped afterwards; it writes floats of magnitude 1e-9..1e-4 in another
notation, and refuses integers beyond 64 bits, non-string keys and very deep nesting, so those
payloads take the standard library's path. Non-finite floats, which JSON cannot carry, are written
as ``null`` (as pydantic's JSON mode writes them), where the standard library wrote ``NaN``; an
enum member is written by its value (the standard library wrote ``str()`` of a plain ``Enum``; the
project's enums are ``StrEnum``s, the same either way).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["canonical_json", "canonical_json_bytes", "canonical_json_stdlib", "loads"]

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# orjson writes 1e-05 as 0.00001 and 1e-07 as 1e-7. Only a number can be one: a value, right after ":",
# "," or "[" in compact JSON. Matching anywhere also caught ids such as UUIDs ("...507e-8788..."), a third
# of Acumatica's records, which then paid for the standard library; a string that looks like a value
# still only costs the slow path. Found with bytes.find, not a regular expression: a third of the time.
_VALUE_START = frozenset(b":,[")
_DIGITS = frozenset(b"0123456789")
_MANTISSA = frozenset(b"0123456789.")
_ESCAPE_ERRORS = "ml_connector.json_ascii"


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as json.dumps writes it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _escape_run(error: UnicodeError) -> tuple[str, int]:
    # The ASCII encoder scans in C and hands over each run of non-ASCII characters at once: a few
    # calls per text instead of a regular expression over every character of it.
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(map(_escape, error.object[error.start : error.end])), error.end


codecs.register_error(_ESCAPE_ERRORS, _escape_run)


def _starts_value(raw: bytes, at: int) -> bool:
    if at > 0 and raw[at - 1] == 0x2D:  # a minus sign
        at -= 1
    return at > 0 and raw[at - 1] in _VALUE_START


def _has_tiny_float(raw: bytes) -> bool:
    """Whether orjson's ``raw`` holds a float it writes otherwise than the standard library."""
    at = raw.find(b"0.0000")
    while at != -1:
        if _starts_value(raw, at):
            return True
        at = raw.find(b"0.0000", at + 1)
    at = raw.find(b"e-")
    while at != -1:
        if at + 2 < len(raw) and raw[at + 2] in _DIGITS:
            start = at
            while start > 0 and raw[start - 1] in _MANTISSA:
                start -= 1
            if start < at and raw[start] in _DIGITS and _starts_value(raw, start):
                return True
        at = raw.find(b"e-", at + 2)
    return False


def canonical_json_stdlib(payload: Mapping[str, Any]) -> str:
    """The canonical text as the standard library writes it (the reference :func:`canonical_json` keeps)."""
    return json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(payload: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, ASCII only, ``str()`` of what JSON has no type for (dates, decimals)."""
    return canonical_json_bytes(payload).decode("ascii")


def canonical_json_bytes(payload: Mapping[str, Any]) -> bytes:
    """:func:`canonical_json` as ASCII bytes (what a hash reads), without a round trip through ``str``."""
    try:
        raw = orjson.dumps(payload if isinstance(payload, dict) else dict(payload), default=str, option=_OPTIONS)
    except TypeError:  # an integer beyond 64 bits, a non-string key, nesting deeper than 255
        return canonical_json_stdlib(payload).encode("ascii")
    if _has_tiny_float(raw):
        return canonical_json_stdlib(payload).encode("ascii")
    text = raw if raw.isascii() else raw.decode("utf-8").encode("ascii", _ESCAPE_ERRORS)
    # DEL is ASCII, so the encoder keeps it; the standard library escapes it too.
    return text.replace(b"\x7f", b"\\u007f") if b"\x7f" in text else text


def loads(text: str | bytes) -> Any:
    """JSON read with orjson; what it refuses but the standard library reads (``NaN``, integers
    beyond 64 bits, as ``json.dumps`` may have stored them) is read by the standard library."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
