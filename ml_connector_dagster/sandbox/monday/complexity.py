"""Query complexity, computed before execution, and the per-minute budget it is paid from.

monday.com prices a query before running it: at most 5,000,000 points per query, and a budget of
10,000,000 points per minute per personal token (app tokens: 5M read + 5M write). A write on an item
costs about 10,000 points. The real formula is unpublished; this one keeps its shape: every field
costs 1, a list field multiplies what it selects by how many it may return (``limit``, the number
of ``ids``, or a default), an item write costs 10,000, ``complexity`` itself is free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)

__all__ = ["ComplexityBudget", "Spend", "query_complexity", "PER_QUERY_LIMIT", "PER_MINUTE_PERSONAL", "ITEM_WRITE_COST"]

PER_QUERY_LIMIT = 5_000_000
PER_MINUTE_PERSONAL = 10_000_000
ITEM_WRITE_COST = 10_000
WINDOW_S = 60.0

_WRITE_COSTS = {
    "create_item": ITEM_WRITE_COST, "change_multiple_column_values": ITEM_WRITE_COST,
    "change_column_value": ITEM_WRITE_COST, "change_simple_column_value": ITEM_WRITE_COST,
    "archive_item": ITEM_WRITE_COST, "delete_item": ITEM_WRITE_COST, "create_webhook": 1_000,
    "delete_webhook": 1_000, "create_column": 1_000, "create_group": 1_000,
}  # fmt: skip
_PAGED = frozenset({"items_page", "next_items_page", "items_page_by_column_values"})
_DEFAULT_FAN_OUT = {
    "boards": 25, "items": 25, "users": 200, "workspaces": 25, "column_values": 10, "columns": 10,
    "groups": 5, "webhooks": 5, "subitems": 5, "updates": 25, "versions": 4, "teams": 10,
}  # fmt: skip


def query_complexity(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any] | None,
) -> int:
    """The points ``operation`` costs, from its text and variables alone."""
    return _cost(operation.selection_set, fragments, variables or {}, root=operation.operation.value == "mutation")


def _cost(
    selections: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any], *, root: bool = False, seen: frozenset[str] = frozenset(),
) -> int:  # fmt: skip
    if selections is None:
        return 0
    total = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name in ("complexity", "__typename"):
                continue
            base = _WRITE_COSTS.get(name, 1) if root else 1
            inner = _cost(selection.selection_set, fragments, variables, seen=seen)
            total += base + _fan_out(selection, variables) * inner
        elif isinstance(selection, InlineFragmentNode):
            total += _cost(selection.selection_set, fragments, variables, root=root, seen=seen)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and fragment.name.value not in seen:  # cycles fail validation anyway
                total += _cost(fragment.selection_set, fragments, variables, root=root,
                               seen=seen | {fragment.name.value})  # fmt: skip
    return total


def _fan_out(field: FieldNode, variables: Mapping[str, Any]) -> int:
    arguments = {argument.name.value: _value(argument.value, variables) for argument in field.arguments or ()}
    name = field.name.value
    limit = arguments.get("limit")
    if name in _PAGED:
        return max(1, limit) if isinstance(limit, int) else 25
    ids = arguments.get("ids")
    if isinstance(ids, list) and ids:
        return len(ids)
    if isinstance(limit, int) and limit > 0:
        return limit
    return _DEFAULT_FAN_OUT.get(name, 1)


def _value(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, ListValueNode):
        return [_value(value, variables) for value in node.values]
    return None


@dataclass(frozen=True)
class Spend:
    """The outcome of paying for a query: what ``complexity { ... }`` answers."""

    ok: bool
    query: int
    before: int
    after: int
    reset_in_x_seconds: int


class ComplexityBudget:
    """Points per minute for one token: a window that refills whole 60 s after its first spend."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window_start: float | None = None
        self._spent = 0
        self._lock = threading.Lock()

    def _roll(self, now: float) -> None:
        if self._window_start is not None and now - self._window_start >= WINDOW_S:
            self._window_start, self._spent = None, 0

    def _reset_in(self, now: float) -> int:
        if self._window_start is None:
            return int(WINDOW_S)
        return max(1, int(self._window_start + WINDOW_S - now + 0.999))

    def spend(self, cost: int) -> Spend:
        """Pay ``cost`` if the budget allows; a refused spend leaves the budget as it was."""
        with self._lock:
            now = self._clock()
            self._roll(now)
            before = self.per_minute - self._spent
            if cost > before:
                return Spend(False, cost, before, before, self._reset_in(now))
            if self._window_start is None:
                self._window_start = now
            self._spent += cost
            return Spend(True, cost, before, before - cost, self._reset_in(now))

    def remaining(self) -> int:
        with self._lock:
            self._roll(self._clock())
            return self.per_minute - self._spent
