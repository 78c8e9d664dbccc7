"""JAGGAER GL codes and cost allocation onto Visma's chart of accounts and subaccount dimension.

The GL table (CSV, one row per JAGGAER account: ``jaggaer_account, visma_account, department,
cost_centre``; the last two are default dimension values) is joined with a chunk's document lines
in one pandas merge. A line's own department / cost centre wins over the table's default. Each
mapped line is then checked against Visma as landed (``visma/gl_accounts``, ``visma/dimensions``):
an unmapped JAGGAER account, a Visma account that does not exist or is inactive, or a dimension
value Visma does not know is a *problem* that names the line, and keeps its document out of Visma.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["GL_COLUMNS", "LINE_COLUMNS", "VismaChart", "allocate_lines", "load_gl_table", "load_vendor_table"]

GL_COLUMNS = ("jaggaer_account", "visma_account", "department", "cost_centre")
LINE_COLUMNS = ("record_id", "line_number", "account_code", "department", "cost_centre")
VENDOR_COLUMNS = ("jaggaer_supplier_id", "visma_supplier_number")


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read the mapping table ({exc})") from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    table = table[list(columns)].apply(lambda column: column.str.strip())
    return table[table[columns[0]] != ""]


def _unique(table: pd.DataFrame, key: str, source: str) -> pd.DataFrame:
    doubled = sorted(set(table.loc[table[key].duplicated(), key]))
    if doubled:
        raise ValueError(f"{source}: {key} {', '.join(doubled)} listed more than once")
    return table.reset_index(drop=True)


def load_gl_table(path: Path | None, overrides: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The GL table from ``path`` (CSV), with ``overrides`` (JAGGAER account -> Visma account) applied."""
    table = _read_table(path, GL_COLUMNS) if path is not None else pd.DataFrame(columns=list(GL_COLUMNS))
    table = _unique(table, "jaggaer_account", str(path))
    for account, visma in (overrides or {}).items():
        hit = table["jaggaer_account"] == account
        if hit.any():
            table.loc[hit, "visma_account"] = visma
        else:
            table.loc[len(table)] = {"jaggaer_account": account, "visma_account": visma, "department": "",
                                     "cost_centre": ""}
    return table


def load_vendor_table(path: Path | None, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """JAGGAER supplier id -> Visma supplier number, from ``path`` (CSV) and ``overrides`` (which win)."""
    links: dict[str, str] = {}
    if path is not None:
        table = _unique(_read_table(path, VENDOR_COLUMNS), "jaggaer_supplier_id", str(path))
        links = dict(zip(table["jaggaer_supplier_id"], table["visma_supplier_number"], strict=True))
    return {**links, **(overrides or {})}


@dataclass(frozen=True)
class VismaChart:
    """What Visma accepts: its accounts (number -> active) and subaccount values per segment.

    ``None`` for either when that reference data has not been landed: nothing is checked then, and
    Visma itself refuses what it does not know.
    """

    accounts: dict[str, bool] | None = None
    segments: dict[int, frozenset[str]] | None = None

    @classmethod
    def of(cls, accounts: Iterable[Mapping[str, Any]], dimensions: Iterable[Mapping[str, Any]],
           dimension_id: str) -> VismaChart:
        """From landed ``AccountDto`` and ``DtoDimension`` records; the subaccount is ``dimension_id``."""
        chart = {str(a.get("accountCD")): a.get("active") is not False for a in accounts if a.get("accountCD")}
        segments: dict[int, frozenset[str]] = {}
        for dimension in dimensions:
            if str(dimension.get("id", "")).casefold() != dimension_id.casefold():
                continue
            for segment in dimension.get("segments") or []:
                values = {str(v.get("valueId")) for v in segment.get("segmentValues") or [] if v.get("active") is not False}
                segments[int(segment.get("segmentId"))] = frozenset(values)
        return cls(accounts=chart or None, segments=segments or None)


def _value(line: Any, default: Any) -> str:
    for candidate in (line, default):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return ""


def _problem(row: Mapping[str, Any], chart: VismaChart, segment_ids: Mapping[str, int]) -> str:
    where = f"line {row['line_number']}"
    if not row["account_code"]:
        return f"{where}: no JAGGAER account code"
    if not row["visma_account"]:
        return f"{where}: JAGGAER account {row['account_code']} has no Visma account in the GL mapping table"
    if chart.accounts is not None:
        active = chart.accounts.get(row["visma_account"])
        if active is None:
            return (f"{where}: Visma account {row['visma_account']} (mapped from JAGGAER {row['account_code']}) "
                    "is not in Visma's chart of accounts")
        if not active:
            return f"{where}: Visma account {row['visma_account']} is inactive"
    for name, segment in segment_ids.items():
        value = row[name]
        known = chart.segments.get(segment) if chart.segments is not None else None
        if value and known is not None and value not in known:
            return f"{where}: {name.replace('_', ' ')} {value} is not a value of Visma subaccount segment {segment}"
    return ""


def allocate_lines(lines: pd.DataFrame, gl_table: pd.DataFrame, chart: VismaChart,
                   segment_ids: Mapping[str, int]) -> pd.DataFrame:
    """``lines`` (:data:`LINE_COLUMNS`, text; "" for none) with ``visma_account``, resolved ``department``/``cost_centre``
    and ``problem`` (empty when the line can be posted)."""
    defaults = gl_table.rename(columns={"department": "default_department", "cost_centre": "default_cost_centre"})
    merged = lines.merge(defaults, how="left", left_on="account_code", right_on="jaggaer_account",
                         validate="many_to_one")
    merged["visma_account"] = merged["visma_account"].fillna("")
    for name in ("department", "cost_centre"):
        merged[name] = [_value(own, default) for own, default in zip(merged[name], merged[f"default_{name}"], strict=True)]
    merged["problem"] = [_problem(row, chart, segment_ids) for row in merged.to_dict("records")] if len(merged) else []
    return merged[[*LINE_COLUMNS, "visma_account", "problem"]]
