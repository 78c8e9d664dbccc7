"""Comments said once, and walks through an issue's workflow."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ml_connector_dagster.core.http import ClientError, TransportFailure
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import JiraClient, StatusUnreachable
from ml_connector_dagster.systems.jira.models import Comment, Transition

__all__ = [
    "TransitionMenu",
    "comment_once",
    "move_to_status",
]

MAX_HOPS = 8


def _find_comment(client: JiraClient, key: str, marker: str) -> Comment | None:
    return next((c for c in client.comments(key) if marker in adf.plain_text(c.body)), None)


def comment_once(client: JiraClient, key: str, body: dict[str, Any], marker: str, *, look_first: bool) -> Comment:
    """Add a comment containing ``marker`` unless the issue already has one.

    ``look_first`` when an earlier attempt may have sent it; after a lost answer the comments are
    read (a plain GET, consistent at once) before the failure is believed.
    """
    if look_first and (existing := _find_comment(client, key, marker)) is not None:
        return existing
    try:
        return client.add_comment(key, body)
    except TransportFailure as exc:
        if exc.may_have_been_applied and (existing := _find_comment(client, key, marker)) is not None:
            return existing
        raise


class TransitionMenu:
    """The transitions Jira offered from each status, remembered for issues of one workflow.

    Thread-safe. A transition an issue refuses (a condition of that issue) sends the walk back to
    Jira for that issue's own list: the menu saves calls, it never decides alone.
    """

    def __init__(self) -> None:
        self._by_status: dict[str, list[Transition]] = {}
        self._lock = threading.Lock()

    def offered(self, client: JiraClient, key: str, status: str | None, *, ask: bool = False) -> list[Transition]:
        """The transitions out of ``status`` (asked of Jira for ``key`` when unknown or ``ask``)."""
        name = (status or "").casefold()
        with self._lock:
            known = None if ask or not name else self._by_status.get(name)
        if known is not None:
            return known
        available = client.transitions(key)
        if name:
            with self._lock:
                self._by_status[name] = available
        return available


def move_to_status(client: JiraClient, key: str, current: str | None, target: str, path: Sequence[str],
                   menu: TransitionMenu | None = None) -> int:
    """Walk the issue's workflow to ``target``; return how many transitions it took.

    A direct transition is taken when Jira offers one; otherwise the step that comes closest to
    ``target`` along ``path`` (the statuses in workflow order). Raises ``StatusUnreachable``.
    With a ``menu`` the transitions offered are remembered per status across issues.
    """
    order = {status.casefold(): index for index, status in enumerate(path)}
    goal = target.casefold()
    seen = {(current or "").casefold()}
    hops = 0
    ask = menu is None
    while (current or "").casefold() != goal:
        available = client.transitions(key) if menu is None else menu.offered(client, key, current, ask=ask)
        step = next((t for t in available if (t.to_status or "").casefold() == goal), None)
        if step is None and goal in order:
            distance = abs(order.get((current or "").casefold(), len(path) * 2) - order[goal])
            closer = [t for t in available if (t.to_status or "").casefold() in order
                      and (t.to_status or "").casefold() not in seen
                      and abs(order[(t.to_status or "").casefold()] - order[goal]) < distance]  # fmt: skip
            step = min(closer, key=lambda t: abs(order[(t.to_status or "").casefold()] - order[goal]), default=None)
        if step is None or hops >= MAX_HOPS:
            if not ask:  # remembered for another issue: ask Jira what this one offers
                ask = True
                continue
            if hops == 0 and (client.get_issue(key, ["status"]).status_name or "").casefold() == goal:
                return 0
            reachable = ", ".join(sorted({t.to_status or t.name for t in available})) or "none"
            raise StatusUnreachable(f"issue {key} is in status {current!r}; no way to {target!r} (reachable: {reachable})")
        try:
            client.transition(key, step.id)
        except ClientError:
            if ask:
                raise
            ask = True  # this issue refuses a remembered transition: ask Jira for its own
            continue
        ask = menu is None
        hops += 1
        current = step.to_status
        seen.add((current or "").casefold())
    return hops
