"""Near-valid vendor records: a real record with one field broken the way real feeds break them.

:func:`mutated` draws one record from valid samples and one place in it (any key or list element,
at any depth), then deletes it or replaces it with junk: another JSON type, a huge or non-finite
number, a bad date, an empty or enormous string, NUL bytes, odd unicode. The :class:`Mutation` says
what was done and where, so a test can ask whether an error names that place.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

__all__ = ["JUNK", "Mutation", "mutated", "names_the_place", "paths_of"]

Path = tuple[str | int, ...]

BAD_DATES = ["2026-13-45", "2026-02-30T10:00:00Z", "yesterday", "0000-00-00T00:00:00", "2026-01-01T25:61:00Z",
             "9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00", "-1", "1e309", "2026-01-01T00:00:00+99:00", "\u0662\u0660\u0662\u0666-01-01",
             "2026-01-01\x00T00:00:00Z", " ", "T", "2026-W01-1"]  # fmt: skip
ODD_TEXT = ["", " ", "\x00", "nul\x00byte", "\u202eRTL override", "\U0001f4a9" * 50, "e\u0301" * 100, "\ud7ff\ue000",
            "x" * 20_000, "<script>alert(1)</script>", "'; DROP TABLE links; --", "${jndi:ldap://x}", "NaN",
            "Infinity", "null", "true", "0x1F", "1_000", "١٢٣"]  # fmt: skip
NUMBERS = [0, -1, 2**31, 2**63, -(2**63) - 1, 10**30, 10**400, -(10**400), 1e308, -1e308, 5e-324, float("nan"),
           float("inf"), float("-inf"), -0.0, 0.1 + 0.2]  # fmt: skip

JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(BAD_DATES),
    st.sampled_from(ODD_TEXT),
    st.text(max_size=30),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just({"value": None}),  # Acumatica's value object, empty
    st.just([{"value": "\x00"}]),
)


@dataclass(frozen=True)
class Mutation:
    """What was done to a record: ``kind`` (``delete``/``replace``/``whole``) at ``path``."""

    kind: str
    path: Path
    junk: Any = None

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.path) or "(record)"
        return f"{self.kind} {where}" + ("" if self.kind == "delete" else f" with {self.junk!r:.60}")


def paths_of(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every key and list element of a JSON value, depth first (the root excluded)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from paths_of(child, (*prefix, index))


def _apply(record: dict[str, Any], mutation: Mutation) -> Any:
    if mutation.kind == "whole":
        return mutation.junk
    broken = copy.deepcopy(record)
    parent: Any = broken
    for part in mutation.path[:-1]:
        parent = parent[part]
    last = mutation.path[-1]
    if mutation.kind == "delete":
        del parent[last]
    else:
        parent[last] = mutation.junk
    return broken


@st.composite
def mutated(draw: st.DrawFn, samples: Sequence[dict[str, Any]]) -> tuple[Any, Mutation]:
    """One sample with one mutation, and the mutation."""
    record = draw(st.sampled_from(list(samples)))
    places = list(paths_of(record))
    kind = draw(
        st.sampled_from(["delete", "replace", "replace", "replace", "whole"] if places else ["whole"])
    )
    if kind == "whole":
        mutation = Mutation("whole", (), draw(st.one_of(JUNK.filter(lambda v: not isinstance(v, dict)))))
    else:
        path = draw(st.sampled_from(places))
        if kind == "delete" and isinstance(path[-1], int):
            kind = "replace"  # a list element is replaced rather than shifted away
        mutation = Mutation(kind, path, None if kind == "delete" else draw(JUNK))
    return _apply(record, mutation), mutation


def _spellings(name: str) -> set[str]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)
    return {name, snake, camel, camel[:1].upper() + camel[1:]}


def names_the_place(message: str, mutation: Mutation) -> bool:
    """True when ``message`` names the record's field that was broken (its top-level key, any spelling).

    A whole record replaced by a non-object must be said to be no record/object.
    """
    if mutation.kind == "whole":
        lowered = message.lower()
        return any(word in lowered for word in ("record", "object", "dict", "mapping"))
    top = next(str(part) for part in mutation.path if isinstance(part, str))
    return any(spelling in message for spelling in _spellings(top))
