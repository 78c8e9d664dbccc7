"""Reference data read from a vendor once and kept in the ledger for the runs that follow.

Some of what a run needs before it writes anything changes rarely: the Asana workspace's projects,
custom fields and users are four requests, and every step of every run read them again. On Asana's
free plan (150 requests a minute) that was most of a webhook's budget: two runs per new invoice (its
own and the return path's echo) spent eight of their twelve requests on it, and the webhooks behind
them waited. Kept here, in the ledger's key-value state that every run of the deployment shares, for
``ttl_s`` seconds; a change to the reference data shows within that time, or at once where the code
that makes it forgets the kept copy (:func:`forget`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .ledger import Ledger

__all__ = ["KEPT_PREFIX", "forget", "kept"]

KEPT_PREFIX = "kept:"
M = TypeVar("M", bound=BaseModel)


def kept(ledger: Ledger, key: str, model: type[M], load: Callable[[], M], *, ttl_s: float,
         clock: Callable[[], float] = time.time, refresh: Callable[[M], M] | None = None) -> M:  # fmt: skip
    """The copy kept under ``key`` when younger than ``ttl_s``; else ``load()``, kept for the next runs.

    With ``refresh``, an older copy is brought up to date by ``refresh(copy)`` instead (where checking
    what is known costs less than reading it all again). A copy that no longer reads as ``model`` (an
    older release's shape) is loaded again.
    """
    older: M | None = None
    if ttl_s > 0 and (stored := ledger.get_state(KEPT_PREFIX + key)) is not None:
        try:
            entry = json.loads(stored)
            copy = model.model_validate(entry["value"])
            if 0 <= clock() - float(entry["at"]) < ttl_s:
                return copy
            older = copy
        except (ValueError, KeyError, TypeError, ValidationError):
            pass
    value = refresh(older) if refresh is not None and older is not None else load()
    if ttl_s > 0:
        ledger.set_state(KEPT_PREFIX + key, json.dumps({"at": clock(), "value": value.model_dump(mode="json")}))
    return value


def forget(ledger: Ledger, key: str) -> None:
    """Drop the copy kept under ``key``: the next :func:`kept` loads it again."""
    ledger.delete_state(KEPT_PREFIX + key)
