"""Visma Webhook Dispatcher deliveries: how they are signed, and which record each one is about.

Signature: ``x-vwd-signature-v1`` = base64(HMAC-SHA256(raw body, secret)); several secrets may be
configured at once (comma-separated) while one is being rotated. The delivery's timestamp (epoch
milliseconds, or ISO 8601) must lie within the tolerance: ``x-vwd-webhook-timestamp`` (when this
attempt was sent) where present, else ``x-vwd-notification-timestamp`` (when the event happened),
so that an honest retry an hour later is not refused. Neither is covered by the signature, so the
window limits replays only as far as the headers are honest; the event id is what dedupes. The
unique id is ``x-vwd-notification-id`` where sent: third-party code reads ``x-vwd-event-id`` as
the event *type*, so it is only the fallback.

The payload shape is not documented (API notes: "?"), so the record is looked for leniently:
an entity named by ``entity``/``resource``/``eventType``/... and an id under the usual keys, at the
top level or inside ``data``/``entity``/``payload``/``resource``. A delivery we cannot place is
still stored (without ``record_ref``); polling remains the guarantee.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ml_connector_dagster.webhooks.contract import (
    Malformed,
    RecordRef,
    Unauthorized,
    WebhookEvent,
    WebhookRequest,
    parse_json_object,
    partition_of,
)
from ml_connector_dagster.webhooks.signatures import (
    Clock,
    hmac_sha256_base64,
    matches_any,
    parse_timestamp,
    require_fresh,
    utcnow,
)

__all__ = [
    "ATTEMPT_TIMESTAMP_HEADER",
    "EVENT_ID_HEADER",
    "NOTIFICATION_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "VismaWebhookVerifier",
    "record_of",
    "sign",
    "signed_headers",
]

SIGNATURE_HEADER = "x-vwd-signature-v1"
EVENT_ID_HEADER = "x-vwd-event-id"
NOTIFICATION_ID_HEADER = "x-vwd-notification-id"
TIMESTAMP_HEADER = "x-vwd-notification-timestamp"
ATTEMPT_TIMESTAMP_HEADER = "x-vwd-webhook-timestamp"

# Normalised vendor names (lower case, letters only) -> the connector's entity names. Longest first,
# so "supplierinvoice" wins over "invoice"; "apinvoice" is the notes' "AP invoice status changed".
_ENTITIES: tuple[tuple[str, str], ...] = (
    ("supplierinvoice", "supplier_invoices"),
    ("customerinvoice", "customer_invoices"),
    ("purchaseorder", "purchase_orders"),
    ("apinvoice", "supplier_invoices"),
    ("arinvoice", "customer_invoices"),
    ("journaltransaction", "journal_transactions"),
    ("supplierpayment", "supplier_payments"),  # before "supplier" and "payment"
    ("supplier", "suppliers"),
    ("customer", "customers"),
    ("payment", "payments"),
    ("account", "accounts"),
    ("dimension", "dimensions"),
)
_ENTITY_KEYS = ("entity", "entityType", "resource", "resourceType", "type", "eventType", "event", "tableIdentifier")
_ID_KEYS = (
    "referenceNumber", "orderNbr", "accountCD", "number", "documentNumber", "entityId", "resourceId", "id",
)  # fmt: skip
_CONTAINERS = ("data", "entity", "payload", "resource", "record")
_MODIFIED_KEYS = ("lastModifiedDateTime", "modifiedAt", "timestamp", "occurredAt")


def sign(body: bytes, secret: str) -> str:
    """The ``x-vwd-signature-v1`` value the dispatcher sends for ``body``."""
    return hmac_sha256_base64(secret, body)


def signed_headers(body: bytes, secret: str, *, event_id: str, timestamp: datetime) -> dict[str, str]:
    """The headers of one dispatcher delivery (for the sandbox and tests)."""
    return {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(body, secret),
        NOTIFICATION_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(int(timestamp.timestamp() * 1000)),
    }


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def _entity_of(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    name = _normalised(value)
    for vendor, entity in _ENTITIES:
        if vendor in name:
            return entity
    return None


def _scalar(value: Any) -> str | None:
    if isinstance(value, dict) and "value" in value:  # Visma sometimes wraps values as {"value": x}
        value = value["value"]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        text = str(value).strip()
        return text or None
    return None


def _places(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    nested = [payload[key] for key in _CONTAINERS if isinstance(payload.get(key), dict)]
    return [payload, *nested]


def record_of(payload: Mapping[str, Any]) -> tuple[RecordRef | None, datetime | None]:
    """The record a notification is about and when it changed, as far as the payload says."""
    places = _places(payload)
    entity = next((found for place in places for key in _ENTITY_KEYS if (found := _entity_of(place.get(key)))), None)
    record_id = next((found for place in places for key in _ID_KEYS if (found := _scalar(place.get(key)))), None)
    if record_id is None:
        keys = payload.get("primaryKeys")
        if isinstance(keys, list) and len(keys) == 1:
            record_id = _scalar(keys[0])
    modified = None
    for place in places:
        for key in _MODIFIED_KEYS:
            raw = place.get(key)
            if isinstance(raw, str | int) and not isinstance(raw, bool):
                try:
                    modified = parse_timestamp(str(raw))
                except Malformed:
                    continue
                break
        if modified is not None:
            break
    ref = RecordRef(entity=entity, id=record_id) if entity and record_id else None
    return ref, modified


class VismaWebhookVerifier:
    """Verifies dispatcher deliveries with the configured secret(s)."""

    system = "visma"
    sensitive_headers = frozenset({SIGNATURE_HEADER})

    def __init__(
        self, secrets: Sequence[str], *, tolerance: timedelta = timedelta(minutes=5), clock: Clock = utcnow
    ) -> None:
        self._secrets = tuple(secret for secret in secrets if secret)
        self._tolerance = tolerance
        self._clock = clock

    def __repr__(self) -> str:
        return f"VismaWebhookVerifier(secrets={len(self._secrets)}, tolerance={self._tolerance})"

    def verify(self, request: WebhookRequest) -> list[WebhookEvent]:
        """Signature, then timestamp, then event id and payload; raises on any failure."""
        signature = request.header(SIGNATURE_HEADER)
        if not signature:
            raise Unauthorized("missing_signature")
        if not self._secrets:
            raise Unauthorized("not_configured")
        expected = [sign(request.body, secret) for secret in self._secrets]
        if not matches_any(signature.strip(), expected):
            raise Unauthorized("bad_signature")
        stamp = request.header(ATTEMPT_TIMESTAMP_HEADER) or request.header(TIMESTAMP_HEADER)
        if not stamp:
            raise Unauthorized("missing_timestamp")
        sent_at = parse_timestamp(stamp)
        require_fresh(sent_at, self._clock(), self._tolerance)
        notified = request.header(TIMESTAMP_HEADER)
        notified_at = parse_timestamp(notified) if notified else sent_at
        event_id = (request.header(NOTIFICATION_ID_HEADER) or request.header(EVENT_ID_HEADER) or "").strip()
        if not event_id:
            raise Malformed("missing_event_id")
        payload = parse_json_object(request.body)
        ref, modified = record_of(payload)
        return [
            WebhookEvent(
                event_id=event_id,
                payload=payload,
                record_ref=ref,
                partition_key=partition_of(modified or notified_at),
            )
        ]
