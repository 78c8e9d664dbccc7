"""Destination against expectation: duplicates, losses and wrong values, counted per source record.

Expectations are derived from the source's final state by each scenario through the flow's documented
mapping (``docs/flows/*.md``), written out again there rather than imported from the flow: a mapping
bug must not be able to hide itself by being the expectation too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Verdict", "compare", "count_markers", "day", "values_differ"]


@dataclass
class Verdict:
    """What one schedule left wrong; each entry says which record and how."""

    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.lost or self.mismatched)

    def extend(self, other: Verdict) -> None:
        self.duplicates += other.duplicates
        self.lost += other.lost
        self.mismatched += other.mismatched
        self.checked += other.checked


def day(value: Any) -> str | None:
    """The date of a date or timestamp (``YYYY-MM-DD``), as destinations show due dates; None for none."""
    return str(value)[:10] if value else None


def values_differ(expected: Any, actual: Any) -> bool:
    """True when ``actual`` is not ``expected`` (numbers within half a cent, as money is shown)."""
    if (
        isinstance(expected, int | float)
        and isinstance(actual, int | float)
        and not isinstance(expected, bool)
    ):
        return not math.isclose(float(expected), float(actual), abs_tol=0.005)
    return expected != actual


def compare(
    what: str,
    expected: Mapping[str, Mapping[str, Any]],
    actual: Mapping[str, list[Mapping[str, Any]]],
    *,
    unexpected_is_mismatch: bool = True,
) -> Verdict:
    """Each expected object (id -> field values) against the destination's objects carrying that id.

    None of them: lost. More than one: a duplicate for each extra one. One with a field that differs
    from the expectation: mismatched (an expected value of ``...`` is not checked). An object whose id
    is not expected at all is mismatched too (it should not exist), unless told otherwise.
    """
    verdict = Verdict(checked=len(expected))
    for object_id, fields in sorted(expected.items()):
        found = actual.get(object_id, [])
        if not found:
            verdict.lost.append(f"{what} {object_id}: missing")
            continue
        if len(found) > 1:
            verdict.duplicates += [f"{what} {object_id}: {len(found)} copies"] * (len(found) - 1)
        wrong = [f"{name} {found[0].get(name)!r} != {value!r}" for name, value in fields.items()
                 if value is not ... and values_differ(value, found[0].get(name))]  # fmt: skip
        if wrong:
            verdict.mismatched.append(f"{what} {object_id}: " + "; ".join(wrong))
    if unexpected_is_mismatch:
        for object_id in sorted(set(actual) - set(expected)):
            verdict.mismatched.append(f"{what} {object_id}: exists but should not")
    return verdict


def count_markers(texts: Iterable[str], markers: Iterable[str]) -> dict[str, int]:
    """How many of ``texts`` carry each marker."""
    counts = dict.fromkeys(markers, 0)
    for text in texts:
        for marker in counts:
            if marker in text:
                counts[marker] += 1
    return counts
