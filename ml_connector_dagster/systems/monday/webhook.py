"""Monday.com webhooks: the registration challenge and app JWTs.

Registering a webhook makes Monday POST ``{"challenge": "..."}``, which must come back as the same
JSON. The echo stores nothing and proves only that we own the URL, so it is answered without a
JWT (board webhooks created with a personal token carry none) — but only a bare challenge is
echoed, rebuilt from its string, never the raw body. Every event must carry the app's JWT in
``Authorization`` (raw or ``Bearer``), HS256 with the signing secret; ``exp`` and ``iat`` are
checked (``iat`` at most the tolerance old). An event ``{"event": {...}}`` is stored under its
``triggerUuid`` (a body digest when absent); the record is the item (``pulseId``), its partition
the day of ``triggerTime``, else of ``changedAt``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ml_connector_dagster.webhooks.contract import (
    Malformed,
    RecordRef,
    Reply,
    Unauthorized,
    WebhookEvent,
    WebhookRequest,
    body_digest,
    parse_json_object,
    partition_of,
)
from ml_connector_dagster.webhooks.signatures import Clock, parse_timestamp, utcnow, verify_hs256_jwt

__all__ = ["MondayWebhookVerifier", "app_jwt", "record_of"]

_MAX_CHALLENGE_LENGTH = 512


def app_jwt(signing_secret: str, *, issued_at: datetime, ttl: timedelta = timedelta(minutes=1), **claims: Any) -> str:
    """An HS256 JWT like the one Monday sends in ``Authorization`` for app webhooks (sandbox, tests)."""
    body = {"iat": int(issued_at.timestamp()), "exp": int((issued_at + ttl).timestamp()), **claims}
    return jwt.encode(body, signing_secret, algorithm="HS256")


def _changed_at(event: dict[str, Any]) -> datetime | None:
    trigger = event.get("triggerTime")
    if isinstance(trigger, str):
        try:
            return parse_timestamp(trigger)
        except Malformed:
            pass
    changed = event.get("changedAt")
    if isinstance(changed, int | float) and not isinstance(changed, bool):
        try:
            return datetime.fromtimestamp(changed, UTC)  # epoch seconds with a fraction
        except (OverflowError, OSError, ValueError):
            return None
    return None


def record_of(event: dict[str, Any]) -> tuple[RecordRef | None, str | None]:
    """The item an event is about (with its board) and the day it changed."""
    item = event.get("pulseId", event.get("itemId"))
    ref = None
    if isinstance(item, str | int) and not isinstance(item, bool) and str(item).strip():
        board = event.get("boardId")
        extra = {"board_id": str(board)} if isinstance(board, str | int) and not isinstance(board, bool) else {}
        ref = RecordRef(entity="items", id=str(item).strip(), **extra)
    return ref, partition_of(_changed_at(event))


class MondayWebhookVerifier:
    """Echoes challenges; verifies event JWTs with the app's signing secret."""

    system = "monday"
    sensitive_headers: frozenset[str] = frozenset()

    def __init__(
        self,
        signing_secret: str | None,
        *,
        max_age: timedelta = timedelta(minutes=5),
        leeway: timedelta = timedelta(seconds=30),
        clock: Clock = utcnow,
    ) -> None:
        self._secret = signing_secret or None
        self._max_age = max_age
        self._leeway = leeway
        self._clock = clock

    def __repr__(self) -> str:
        return f"MondayWebhookVerifier(configured={self._secret is not None})"

    def verify(self, request: WebhookRequest) -> list[WebhookEvent] | Reply:
        """A challenge gets its echo; an event needs a valid JWT; anything else is refused."""
        authorization = (request.header("authorization") or "").strip()
        if not authorization:
            return self._challenge(request.body)
        if self._secret is None:
            raise Unauthorized("not_configured")
        scheme, _, rest = authorization.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else authorization
        verify_hs256_jwt(token, self._secret, now=self._clock(), max_age=self._max_age, leeway=self._leeway)
        payload = parse_json_object(request.body)
        if set(payload) == {"challenge"}:
            return self._challenge(request.body)
        event = payload.get("event")
        if not isinstance(event, dict):
            raise Malformed("malformed_body")
        event_id = event.get("triggerUuid")
        if not isinstance(event_id, str | int) or isinstance(event_id, bool) or not str(event_id).strip():
            event_id = body_digest(request.body)
        ref, partition = record_of(event)
        return [WebhookEvent(event_id=str(event_id).strip(), payload=payload, record_ref=ref, partition_key=partition)]

    @staticmethod
    def _challenge(body: bytes) -> Reply:
        try:
            payload = parse_json_object(body)
        except Malformed:
            raise Unauthorized("missing_signature") from None
        challenge = payload.get("challenge")
        if set(payload) != {"challenge"}:
            raise Unauthorized("missing_signature")
        if not isinstance(challenge, str) or not challenge or len(challenge) > _MAX_CHALLENGE_LENGTH:
            raise Malformed("malformed_challenge")
        return Reply(reason="challenge", status_code=200, body={"challenge": challenge})
