"""Shared Markdown helpers of the benchmarks, and the writer of one hand-off section of docs/benchmarks.md.

:func:`write_section` replaces one ``## heading`` section of docs/benchmarks.md (or appends it),
leaving the rest alone: the block ``make bench`` generates between its markers
(:mod:`bench.document`) and the other sections. Used by :mod:`bench.webhook_latency`.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["REPORT_PATH", "machine", "percentile", "table", "write_section"]

REPORT_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_GENERATED_BLOCK = "<!-- bench:begin"


def machine() -> str:
    """One line: CPUs (and model), RAM and Python of this machine."""
    from .document import machine_facts

    facts = dict(machine_facts())
    return f"{facts['nproc']} CPUs ({facts['CPU']}), {facts['RAM']} RAM, Python {platform.python_version()}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; NaN when there are none."""
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * min(max(q, 0.0), 1.0)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells' ``|`` escaped)."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(heading: str, body: str, path: Path | None = None) -> None:
    """Replace the section that starts with the line ``heading`` (up to the next ``## `` heading or the
    generated block), or append it; the rest of the file is kept."""
    path = path or REPORT_PATH
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmarks", ""]
    section = [heading, "", body.strip(), ""]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ") or lines[i].startswith(_GENERATED_BLOCK)), len(lines))
        lines[start:end] = section
    else:
        lines += ["", *section] if lines and lines[-1].strip() else section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
