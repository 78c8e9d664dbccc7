"""The OData subset Acumatica's contract-based REST API understands in ``$filter``.

Comparisons ``Field eq|ne|gt|ge|lt|le literal``, ``and``/``or``/``not`` with parentheses, and the
functions ``substringof('text', Field)``, ``startswith(Field, 'text')``, ``endswith(Field, 'text')``.
Literals: ``'text'`` (a quote doubled inside), numbers, ``true``/``false``, ``null``,
``datetimeoffset'2026-11-20T10:31:28.402+00:00'``, ``datetime'2026-11-20T10:31:28'`` and
``guid'...'``.

The traps it keeps: a ``datetime'...'`` literal has no offset and is read in the *company's* time
zone (Europe/Oslo), not UTC; a date field compared with a plain string is an error, not a string
comparison; field names are matched exactly. Anything it cannot read is an :class:`ODataError`,
which the simulator answers as a 400 naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["ODataError", "Predicate", "lower_bound", "parse_filter", "parse_moment"]

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<typed>(?:datetimeoffset|datetime|guid)'[^']*')"
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_/]*))"
)
_COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_FUNCTIONS = frozenset({"substringof", "startswith", "endswith"})
_MOMENT = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})?$")


class ODataError(ValueError):
    """A ``$filter`` the API cannot read; the message says what and where."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


@dataclass(frozen=True)
class _Literal:
    kind: str  # string | number | bool | null | moment | guid
    value: Any


def parse_moment(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 date-time (up to 7 fraction digits, as .NET writes); no offset -> ``zone``."""
    match = _MOMENT.match(text.strip())
    if match is None:
        raise ODataError(f"'{text}' is not a valid date and time")
    head, fraction, offset = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    moment = datetime.fromisoformat(f"{head}.{micro}" if fraction else head)
    if offset is None:
        return moment.replace(tzinfo=zone)
    return moment.replace(tzinfo=UTC if offset == "Z" else datetime.strptime(offset, "%z").tzinfo)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ODataError(f"unexpected character at position {position}: {text[position:position + 12]!r}")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, str], zone: ZoneInfo) -> None:
        self.tokens = _tokens(text)
        self.index = 0
        self.fields = fields
        self.zone = zone

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None, *, what: str | None = None) -> _Token:
        """The next token; ``expected`` is the exact (lower-case) text it must have, ``what`` names it."""
        token = self.peek()
        if token is None:
            raise ODataError(f"the filter ends where {expected or what or 'more'} was expected")
        if expected is not None and token.text.lower() != expected:
            raise ODataError(f"expected '{expected}' at position {token.at}, found '{token.text}'")
        self.index += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.disjunction()
        if (token := self.peek()) is not None:
            raise ODataError(f"unexpected '{token.text}' at position {token.at}")
        return predicate

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while (token := self.peek()) is not None and token.text.lower() == "or":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda record: any(p(record) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.unary()]
        while (token := self.peek()) is not None and token.text.lower() == "and":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda record: all(p(record) for p in parts))

    def unary(self) -> Predicate:
        token = self.peek()
        if token is not None and token.text.lower() == "not":
            self.take()
            inner = self.unary()
            return lambda record: not inner(record)
        if token is not None and token.text == "(":
            self.take()
            inner = self.disjunction()
            self.take(")")
            return inner
        if token is not None and token.kind == "word" and token.text.lower() in _FUNCTIONS:
            return self.function()
        return self.comparison()

    def field(self) -> str:
        token = self.take(what="a field name")
        if token.kind != "word" or token.text not in self.fields:
            raise ODataError(f"'{token.text}' is not a field of this entity")
        return token.text

    def literal(self) -> _Literal:
        token = self.take(what="a value")
        if token.kind == "string":
            return _Literal("string", token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            return _Literal("number", Decimal(token.text))
        if token.kind == "typed":
            prefix, _, rest = token.text.partition("'")
            body = rest[:-1]
            if prefix == "guid":
                return _Literal("guid", body.lower())
            shape = _MOMENT.match(body.strip())
            if prefix == "datetime" and shape is not None and shape.group(3):
                raise ODataError(f"datetime'{body}' carries an offset: use datetimeoffset'...'")
            return _Literal("moment", parse_moment(body, self.zone))
        word = token.text.lower()
        if word in ("true", "false"):
            return _Literal("bool", word == "true")
        if word == "null":
            return _Literal("null", None)
        raise ODataError(f"'{token.text}' at position {token.at} is not a value")

    def comparison(self) -> Predicate:
        name = self.field()
        operator = self.take(what="an operator").text.lower()
        if operator not in _COMPARISONS:
            raise ODataError(f"'{operator}' is not a comparison operator")
        literal = self.literal()
        kind = self.fields[name]
        right = _coerce(name, kind, literal)
        if right is None and operator not in ("eq", "ne"):
            raise ODataError(f"{name} cannot be compared with null by '{operator}'")

        def compare(record: Mapping[str, Any]) -> bool:
            left = _comparable(kind, record.get(name))
            if left is None or right is None:
                return (left is None and right is None) == (operator == "eq")
            return {
                "eq": left == right, "ne": left != right, "gt": left > right,
                "ge": left >= right, "lt": left < right, "le": left <= right,
            }[operator]

        return compare

    def function(self) -> Predicate:
        name = self.take().text.lower()
        self.take("(")
        if name == "substringof":
            needle = self.literal()
            self.take(",")
            field = self.field()
        else:
            field = self.field()
            self.take(",")
            needle = self.literal()
        self.take(")")
        if needle.kind != "string" or self.fields[field] != "string":
            raise ODataError(f"{name} needs a text field and a quoted text")
        text = str(needle.value).lower()
        test = {
            "substringof": lambda value: text in value,
            "startswith": lambda value: value.startswith(text),
            "endswith": lambda value: value.endswith(text),
        }[name]
        return lambda record: isinstance(record.get(field), str) and test(record[field].lower())


def _coerce(name: str, kind: str, literal: _Literal) -> Any:
    """The literal as a value comparable with field ``name`` of ``kind``; mismatches are errors."""
    if literal.kind == "null":
        return None
    accepted = {"string": ("string",), "decimal": ("number",), "int": ("number",), "bool": ("bool",),
                "datetime": ("moment",), "date": ("moment",), "guid": ("guid", "string")}[kind]
    if literal.kind not in accepted:
        raise ODataError(f"the operand types of {name} ({kind}) and {literal.kind} are incompatible")
    return str(literal.value).lower() if kind == "guid" else literal.value


def _comparable(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in ("decimal", "int"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return str(value).lower() if kind == "guid" else value


def parse_filter(text: str, fields: Mapping[str, str], zone: ZoneInfo, *,
                 date_as_moment: Callable[[date], datetime] | None = None) -> Predicate:
    """A predicate over plain records for ``$filter=text``; ``fields`` maps names to kinds.

    Kinds: string, decimal, int, bool, datetime, date, guid. ``date`` fields hold ``date`` values,
    compared as ``date_as_moment(day)`` (the company's midnight) against moments.
    """
    if not text.strip():
        raise ODataError("$filter is empty")
    predicate = _Parser(text, fields, zone).parse()
    if date_as_moment is None:
        return predicate
    # Only the date fields the filter names are converted: copying every record for none cost most of a list.
    date_fields = [name for name, kind in fields.items() if kind == "date" and re.search(rf"\b{name}\b", text)]
    if not date_fields:
        return predicate

    def with_dates(record: Mapping[str, Any]) -> bool:
        converted = dict(record)
        for name in date_fields:
            value = record.get(name)
            if isinstance(value, date) and not isinstance(value, datetime):
                converted[name] = date_as_moment(value)
        return predicate(converted)

    return with_dates


def lower_bound(text: str, field: str, fields: Mapping[str, str], zone: ZoneInfo) -> datetime | None:
    """The latest ``field gt|ge <moment>`` every record the (valid) filter keeps must pass, if any.

    Only a filter without ``or`` and ``not`` has one: its comparisons all have to hold. The bound
    narrows where an index starts looking; the filter's own predicate still decides.
    """
    tokens = _tokens(text)
    if any(token.kind == "word" and token.text.lower() in ("or", "not") for token in tokens):
        return None
    bounds = []
    for name, operator, value in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (name.kind == "word" and name.text == field and operator.text.lower() in ("gt", "ge")
                and value.kind == "typed" and value.text.startswith("datetime")):
            literal = _Parser(value.text, fields, zone).literal()
            bounds.append(literal.value)
    return max(bounds, default=None)
