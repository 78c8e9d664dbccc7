"""Comments said once, and walks through an issue's workflow."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from ml_connector_dagster.core.http import ApiError, ClientError, TransportFailure
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import JiraClient, StatusUnreachable
from ml_connector_dagster.systems.jira.models import Comment, Transition

__all__ = [
    "TransitionMenu",
    "comment_once",
    "move_to_status",
    "next_step",
]

MAX_HOPS = 12


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

    def known(self, status: str | None) -> list[Transition] | None:
        """The transitions out of ``status`` if Jira was asked already (None: not yet)."""
        with self._lock:
            return self._by_status.get((status or "").casefold())

    def leads_only_to(self, status: str | None, statuses: set[str]) -> bool:
        """Whether every transition Jira offered out of ``status`` goes to one of ``statuses`` (casefolded);
        False while its offers are unknown."""
        with self._lock:
            offered = self._by_status.get((status or "").casefold())
        return offered is not None and all((t.to_status or "").casefold() in statuses for t in offered)

    def leads_beyond(self, status: str | None, statuses: set[str]) -> bool:
        """Whether a transition Jira offered out of ``status`` goes to a status not in ``statuses``
        (casefolded); False while its offers are unknown."""
        with self._lock:
            offered = self._by_status.get((status or "").casefold())
        return offered is not None and any((t.to_status or "").casefold() not in statuses for t in offered)

    def hops_to(self, start: str | None, target: str) -> int | None:
        """The fewest transitions from ``start`` to ``target`` through the statuses Jira was asked about
        (None: no such route is known yet)."""
        goal, origin = target.casefold(), (start or "").casefold()
        with self._lock:
            graph = {status: [(t.to_status or "").casefold() for t in offered]
                     for status, offered in self._by_status.items()}  # fmt: skip
        frontier, hops, reached = [origin], 0, {origin}
        while frontier:
            if goal in frontier:
                return hops
            frontier = [nxt for status in frontier for nxt in graph.get(status, []) if nxt not in reached]
            reached.update(frontier)
            hops += 1
        return None


def next_step(available: Sequence[Transition], current: str | None, target: str, path: Sequence[str],
              seen: Sequence[str] = (), menu: TransitionMenu | None = None) -> Transition | None:
    """The transition to take from ``current`` towards ``target``, to a status not ``seen`` yet.

    A direct one; else the first step of the shortest route through the transitions ``menu`` knows;
    else the one that comes closest along ``path`` (the statuses a flow maps to, in its order); else,
    within a walk (``seen`` given), a step to a status not visited yet, preferably one whose own
    transitions are still unknown: a workflow may need a detour (Disputed -> In Review -> Approved ->
    Done) that no ordering of the mapped statuses shows. While another step is offered, none goes to a
    status whose known transitions all lead back where the walk has been. Where every step offered leads
    back where the walk has been (a dead end: Disputed offers only In Review), the walk goes back to a
    status whose known transitions still lead somewhere it has not been (In Review, to Approved).
    """
    goal = target.casefold()
    step = next((t for t in available if (t.to_status or "").casefold() == goal), None)
    if step is not None:
        return step
    visited = {s.casefold() for s in seen} | {(current or "").casefold()}
    fresh = [t for t in available if (t.to_status or "").casefold() not in visited]
    if menu is not None:
        # A status whose known way out leads only back to where the walk has been is a detour with no end
        # (Disputed, out of In Review, offers only In Review again): stepping in would only add a false
        # transition to the issue's history.
        ahead = [t for t in fresh if not menu.leads_only_to(t.to_status, visited)]
        fresh = ahead or fresh
        routes = [(hops, index, t) for index, t in enumerate(fresh)
                  if (hops := menu.hops_to(t.to_status, target)) is not None]  # fmt: skip
        if routes:
            return min(routes, key=lambda route: (route[0], route[1]))[2]
    order = {status.casefold(): index for index, status in enumerate(path)}
    if goal in order:
        distance = abs(order.get((current or "").casefold(), len(path) * 2) - order[goal])
        closer = [t for t in fresh if (t.to_status or "").casefold() in order
                  and abs(order[(t.to_status or "").casefold()] - order[goal]) < distance]  # fmt: skip
        if closer:
            return min(closer, key=lambda t: abs(order[(t.to_status or "").casefold()] - order[goal]))
    if not seen:
        return None
    if fresh:
        unexplored = [t for t in fresh if menu is None or menu.known(t.to_status) is None]
        return (unexplored or fresh)[0]
    if menu is None:
        return None
    back = [(menu.hops_to(t.to_status, target) is None, index, t) for index, t in enumerate(available)
            if menu.leads_beyond(t.to_status, visited)]  # fmt: skip
    return min(back, key=lambda way: (way[0], way[1]))[2] if back else None


def move_to_status(client: JiraClient, key: str, current: str | None, target: str, path: Sequence[str],
                   menu: TransitionMenu | None = None, *, status_known: bool = True) -> int:
    """Walk the issue's workflow to ``target``; return how many transitions it took.

    A direct transition is taken when Jira offers one; otherwise the first step of a known route, or
    the step that comes closest to ``target`` along ``path``, or a status not visited yet (see
    :func:`next_step`). Raises ``StatusUnreachable``. With a ``menu`` the transitions offered are
    remembered per status across issues.

    ``current`` is what the caller believes, and may be stale (a retried push carries the status its
    plan saw): before Jira is asked what the issue offers, and after it refuses a transition, the
    issue's real status is read, so that the offer is remembered under the status it belongs to and
    the walk goes on from where the issue really is. ``status_known=False`` when ``current`` came from a
    search not reconciled with the issue (it may lag by seconds): the real status is read before anything
    is decided, since a transition the stale status offers may be valid from the real one too and lead
    elsewhere (Dispute, out of Approved as well as In Review).

    Once the walk ends, the transitions out of the status it reached are asked once for the ``menu``
    when still unknown: later walks then route through that status instead of guessing.
    """
    goal = target.casefold()
    verified = False
    if not status_known:
        current, verified = client.get_issue(key, ["status"]).status_name, True
    seen = [current or ""]
    hops = 0
    ask = menu is None
    while (current or "").casefold() != goal:
        if not verified and (ask or menu is None or menu.known(current) is None):
            verified = True
            real = client.get_issue(key, ["status"]).status_name
            if (real or "").casefold() != (current or "").casefold():
                current = real
                seen.append(current or "")
                continue
        available = client.transitions(key) if menu is None else menu.offered(client, key, current, ask=ask)
        step = next_step(available, current, target, path, seen, menu)
        if step is None or hops >= MAX_HOPS:
            if not ask:  # remembered for another issue: ask Jira what this one offers
                ask = True
                continue
            reachable = ", ".join(sorted({t.to_status or t.name for t in available})) or "none"
            raise StatusUnreachable(f"issue {key} is in status {current!r}; no way to {target!r} (reachable: {reachable})")
        try:
            client.transition(key, step.id)
        except ClientError:
            if ask and verified:
                raise
            ask, verified = True, False  # refused: the issue is elsewhere, or offers other transitions
            continue
        ask = menu is None
        hops += 1
        current = step.to_status
        seen.append(current or "")
    if hops and menu is not None and menu.known(current) is None:
        with contextlib.suppress(ApiError):  # only knowledge for later walks: this one is done
            menu.offered(client, key, current)
    return hops
