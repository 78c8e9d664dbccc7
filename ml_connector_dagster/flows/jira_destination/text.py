"""Text as a Jira issue shows it: one line, Nordic amounts, UTC moments, and facts read back from ADF."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from ml_connector_dagster.systems.jira import adf

__all__ = [
    "MISSING",
    "format_amount",
    "format_money",
    "one_line",
    "table_facts",
    "utc_text",
]

MISSING = "—"
_WHITESPACE = re.compile(r"\s+")
_CENT = Decimal("0.01")
_CENTS_CONTEXT = Context(prec=28)
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def one_line(value: str | None) -> str:
    """``value`` on one line: control characters dropped, whitespace runs collapsed."""
    if not value:
        return ""
    # Printable: no control character and no whitespace but the ASCII space (the common case).
    if value.isprintable() and "  " not in value and value[0] != " " and value[-1] != " ":
        return value
    if value.isascii():  # the only category-C characters of ASCII are its controls
        cleaned = _ASCII_CONTROL.sub("", value)
    else:
        cleaned = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch in "\t\n\r")
    return _WHITESPACE.sub(" ", cleaned).strip()


def format_amount(amount: Decimal) -> str:
    """``12500.5`` -> ``12 500,50``: two decimals, space-grouped thousands, decimal comma (Nordic style)."""
    if not amount.is_finite():
        return str(amount)
    # quantize needs room for every integer digit
    context = _CENTS_CONTEXT if amount.adjusted() + 4 <= _CENTS_CONTEXT.prec else Context(prec=amount.adjusted() + 4)
    rounded = amount.quantize(_CENT, rounding=ROUND_HALF_UP, context=context)
    if rounded.is_zero():
        rounded = rounded.copy_abs()  # no "-0,00"
    return f"{rounded:,f}".replace(",", " ").replace(".", ",")


def format_money(amount: Decimal | None, currency: str) -> str:
    """``12 500,00 NOK``, or the missing-value mark."""
    return MISSING if amount is None else f"{format_amount(amount)} {one_line(currency)}".strip()


def utc_text(moment: datetime) -> str:
    """A moment as an issue's audit trail shows it: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table_facts(description: Any) -> dict[str, str]:
    """The first table of an ADF description as ``{first cell: second cell}`` (header row left out);
    {} for anything else. How a flow reads back the facts it rendered."""
    if not adf.is_document(description):
        return {}
    table = next((node for node in description.get("content") or []
                  if isinstance(node, dict) and node.get("type") == "table"), None)  # fmt: skip
    facts: dict[str, str] = {}
    for row in ((table or {}).get("content") or [])[1:]:
        cells = [adf.plain_text(cell) for cell in row.get("content") or []]
        if len(cells) >= 2:
            facts[cells[0]] = cells[1]
    return facts
