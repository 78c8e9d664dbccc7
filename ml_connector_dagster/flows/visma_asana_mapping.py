"""Supplier -> team member: who a new task of a supplier's PO or invoice is assigned to.

The mapping table (``supplier_assignees`` in connector.yaml, then the rows of ``supplier_table``,
a CSV ``supplier,member``) is read top to bottom; the first row whose ``supplier`` is the
supplier's number, or a name pattern (``*`` and ``?``, case-insensitive) matching its name, wins.
Its ``member`` is an Asana team member by e-mail address or by name pattern. No row, or a member
who is not in the workspace, leaves the task unassigned: the supplier's name is in the Vendor field
and the task carries the review flag, for a person to decide.

The decision is made once, when the task is created: editing the table assigns future tasks
differently and never touches existing ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from pydantic import ValidationError

from ml_connector_dagster.config import SupplierAssignee, VismaAsanaFlow
from ml_connector_dagster.systems.asana.models import User

__all__ = ["Assignment", "SupplierDirectory", "load_supplier_table"]

TABLE_COLUMNS = ("supplier", "member")


class Assignment(NamedTuple):
    """The mapping's decision for one supplier: a member's gid, or None and why."""

    member_gid: str | None
    member_name: str | None
    reason: str | None = None


def load_supplier_table(path: Path) -> list[SupplierAssignee]:
    """The rows of a ``supplier,member`` CSV, in file order; a bad row fails naming its line."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"supplier_table {path}: cannot read it ({exc})") from None
    missing = [column for column in TABLE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"supplier_table {path}: no column {', '.join(missing)} (expected: supplier,member)")
    rows = []
    for line, record in enumerate(frame[list(TABLE_COLUMNS)].to_dict("records"), start=2):
        try:
            rows.append(SupplierAssignee.model_validate({k: str(v).strip() for k, v in record.items()}))
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise ValueError(f"supplier_table {path} line {line}: {field} is empty") from None
    return rows


def _matches(pattern: str, value: str | None) -> bool:
    return bool(value) and fnmatchcase(value.casefold(), pattern.casefold())  # type: ignore[union-attr]


class SupplierDirectory:
    """The mapping table resolved against the workspace's users."""

    def __init__(self, rows: Sequence[SupplierAssignee], users: Sequence[User]) -> None:
        self.rows = list(rows)
        self.users = sorted(users, key=lambda user: int(user.gid) if user.gid.isdigit() else 0)

    @classmethod
    def from_settings(cls, settings: VismaAsanaFlow, users: Sequence[User]) -> SupplierDirectory:
        """connector.yaml's rows first, then the table's."""
        table = load_supplier_table(settings.supplier_table) if settings.supplier_table else []
        return cls([*settings.supplier_assignees, *table], users)

    def _member(self, wanted: str) -> User | None:
        if "@" in wanted:
            return next((u for u in self.users if (u.email or "").casefold() == wanted.strip().casefold()), None)
        return next((u for u in self.users if _matches(wanted, u.name)), None)

    def assign(self, supplier_number: str, supplier_name: str | None) -> Assignment:
        """The member the first matching row names, or why there is none."""
        for row in self.rows:
            if row.supplier == supplier_number or _matches(row.supplier, supplier_name):
                member = self._member(row.member)
                if member is None:
                    return Assignment(None, None, f"mapped to {row.member!r}, who is not in the workspace")
                return Assignment(member.gid, member.name)
        return Assignment(None, None, "no row of the supplier mapping matches")
