"""Changing a Visma record safely: read it with its ETag, PUT with ``If-Match``, and on 412 start over.

Visma answers a stale ``If-Match`` with 412 (someone changed the record since it was read). The
change is then built again against what Visma holds now, so nobody's edit is overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ml_connector_dagster.core.http import PreconditionFailed

from .client import VismaClient, VismaEntity

__all__ = ["PUT_ATTEMPTS", "StillChanging", "update_with_etag"]

PUT_ATTEMPTS = 3


class StillChanging(RuntimeError):
    """Every PUT met a 412: the record keeps changing under us."""


def update_with_etag(
    client: VismaClient,
    entity: VismaEntity,
    number: str,
    body_for: Callable[[Mapping[str, Any]], dict[str, Any] | None],
    *,
    attempts: int = PUT_ATTEMPTS,
    on_conflict: Callable[[], None] | None = None,
) -> bool:
    """PUT ``body_for(current record)`` with ``If-Match``; on 412 read again and re-apply.

    Returns False when ``body_for`` finds nothing to change. Raises :class:`StillChanging` when every
    attempt met a 412; ``body_for`` may raise to refuse the change (e.g. a document that is locked).
    """
    for _ in range(attempts):
        current, etag = client.get(entity, number)
        body = body_for(current)
        if body is None:
            return False
        try:
            client.update(entity, number, body, etag)
        except PreconditionFailed:
            if on_conflict is not None:
                on_conflict()
            continue
        return True
    raise StillChanging(f"Visma {entity.value} {number} changed under every one of {attempts} attempts (412)")
