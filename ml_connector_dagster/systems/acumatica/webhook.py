"""Acumatica push notifications: one static header, and one inbox event per changed row.

Acumatica signs nothing: the push destination is configured with one header name and value, which
we compare in constant time. The body is ``{Inserted: [...], Deleted: [...], Query, CompanyId, Id,
TimeStamp}``; an update is the old row in ``Deleted`` and the new one in ``Inserted``. Each row
becomes its own event (id ``<notification>:<i|d><n>``, so a resend dedupes row by row), and a
deleted row whose key is also inserted is the old half of an update and is skipped. The entity is
the query's name through ``query_entities``, else its snake_case; a row's id is the first of
``id``/``NoteID``/``ReferenceNbr``/... present, bare or as ``{"value": x}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ml_connector_dagster.webhooks.contract import (
    Malformed,
    RecordRef,
    Unauthorized,
    WebhookEvent,
    WebhookRequest,
    body_digest,
    parse_json_object,
    partition_of,
)
from ml_connector_dagster.webhooks.signatures import matches, parse_timestamp

__all__ = ["DEFAULT_HEADER_NAME", "AcumaticaWebhookVerifier", "entity_of_query", "row_id"]

DEFAULT_HEADER_NAME = "X-ML-Connector-Token"
_ID_KEYS = ("id", "NoteID", "ReferenceNbr", "RefNbr", "OrderNbr", "PaymentRef", "VendorID", "AccountCD")
_MODIFIED_KEYS = ("LastModifiedDateTime", "LastModified", "LastModifiedOn")
_MAX_ROWS = 10_000


def _value(raw: Any) -> Any:
    return raw.get("value") if isinstance(raw, dict) else raw


def row_id(row: Mapping[str, Any]) -> str | None:
    """The key of one pushed row: the first id-like field present (bare or a value object)."""
    for key in _ID_KEYS:
        value = _value(row.get(key))
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def entity_of_query(query: str, query_entities: Mapping[str, str]) -> str:
    """The connector entity a push query feeds: configured, else the query name in snake_case."""
    if query in query_entities:
        return query_entities[query]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", query)
    return re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_") or "unknown"


def _modified(row: Mapping[str, Any]) -> str | None:
    for key in _MODIFIED_KEYS:
        value = _value(row.get(key))
        if isinstance(value, str) and value.strip():
            try:
                return partition_of(parse_timestamp(value))
            except Malformed:
                continue
    return None


class AcumaticaWebhookVerifier:
    """Checks the configured header, then splits the notification into one event per row."""

    system = "acumatica"

    def __init__(
        self,
        header_value: str | None,
        *,
        header_name: str = DEFAULT_HEADER_NAME,
        query_entities: Mapping[str, str] | None = None,
    ) -> None:
        self._header_name = header_name
        self._header_value = header_value or None
        self._query_entities = dict(query_entities or {})
        self.sensitive_headers = frozenset({header_name.lower()})

    def __repr__(self) -> str:
        return f"AcumaticaWebhookVerifier(header_name={self._header_name!r}, configured={self._header_value is not None})"

    def verify(self, request: WebhookRequest) -> list[WebhookEvent]:
        """Authenticate by the shared header, then read the rows."""
        presented = request.header(self._header_name)
        if presented is None:
            raise Unauthorized("missing_signature")
        if self._header_value is None:
            raise Unauthorized("not_configured")
        if not matches(presented, self._header_value):
            raise Unauthorized("bad_token")
        payload = parse_json_object(request.body)
        inserted = payload.get("Inserted") or []
        deleted = payload.get("Deleted") or []
        if not isinstance(inserted, list) or not isinstance(deleted, list):
            raise Malformed("malformed_body")
        if len(inserted) + len(deleted) > _MAX_ROWS or not all(isinstance(r, dict) for r in inserted + deleted):
            raise Malformed("malformed_body")
        query = payload.get("Query")
        entity = entity_of_query(query, self._query_entities) if isinstance(query, str) and query else None
        notification = (
            f"{payload['Id']}:{payload['TimeStamp']}"
            if payload.get("Id") is not None and payload.get("TimeStamp") is not None
            else body_digest(request.body)
        )
        if len(notification) > 200:  # leave room for the row suffix within the 255-character id
            notification = body_digest(notification.encode())
        context = {key: payload[key] for key in ("Query", "CompanyId", "Id", "TimeStamp") if key in payload}
        inserted_ids = {row_id(row) for row in inserted} - {None}
        events = [self._event(f"{notification}:i{n}", "Inserted", row, entity, context) for n, row in enumerate(inserted)]
        events += [
            self._event(f"{notification}:d{n}", "Deleted", row, entity, context)
            for n, row in enumerate(deleted)
            if row_id(row) is None or row_id(row) not in inserted_ids
        ]
        return events

    @staticmethod
    def _event(
        event_id: str, side: str, row: dict[str, Any], entity: str | None, context: dict[str, Any]
    ) -> WebhookEvent:
        key = row_id(row)
        ref = RecordRef(entity=entity, id=key) if entity and key else None
        return WebhookEvent(
            event_id=event_id, payload={**context, side: [row]}, record_ref=ref, partition_key=_modified(row)
        )
