"""Jira Cloud webhook deliveries: OAuth-app JWTs and admin-webhook HMAC signatures.

Dynamic webhooks of an OAuth 2.0 app arrive with ``Authorization: Bearer <JWT>`` signed HS256 with
the app's client secret: signature, ``exp`` and ``iat`` are checked (and ``iat`` may be at most
the tolerance old). Admin webhooks registered with a secret carry ``X-Hub-Signature:
sha256=<hex HMAC of the raw body>``. A delivery presenting a JWT is judged by it alone. Retries
keep ``X-Atlassian-Webhook-Identifier``, the event id (a body digest when absent). The record is
the event's issue (``{"entity": "issues", "id", "key"}``), its partition the day of
``fields.updated``, else of the event's ``timestamp``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jwt

from ml_connector_dagster.webhooks.contract import (
    RecordRef,
    Unauthorized,
    WebhookEvent,
    WebhookRequest,
    body_digest,
    parse_json_object,
    partition_of,
)
from ml_connector_dagster.webhooks.signatures import (
    Clock,
    hmac_sha256_hex,
    matches,
    utcnow,
    verify_hs256_jwt,
)

from .models import parse_jira_datetime

__all__ = [
    "HUB_SIGNATURE_HEADER",
    "IDENTIFIER_HEADER",
    "JiraWebhookVerifier",
    "app_jwt",
    "hub_signature",
    "record_of",
]

HUB_SIGNATURE_HEADER = "x-hub-signature"
IDENTIFIER_HEADER = "x-atlassian-webhook-identifier"
_HUB_PREFIX = "sha256="


def hub_signature(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature`` value of an admin webhook with ``secret``."""
    return _HUB_PREFIX + hmac_sha256_hex(secret, body)


def app_jwt(client_secret: str, *, issued_at: datetime, ttl: timedelta = timedelta(minutes=3), **claims: Any) -> str:
    """An HS256 JWT like the one Jira puts in ``Authorization`` for OAuth-app webhooks (sandbox, tests)."""
    body = {"iat": int(issued_at.timestamp()), "exp": int((issued_at + ttl).timestamp()), **claims}
    return jwt.encode(body, client_secret, algorithm="HS256")


def _moment(value: Any) -> datetime | None:
    try:
        return parse_jira_datetime(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return None


def record_of(payload: dict[str, Any]) -> tuple[RecordRef | None, str | None]:
    """The issue an event is about and its partition (day of last update), where the payload says."""
    issue = payload.get("issue")
    ref = None
    modified = None
    if isinstance(issue, dict) and isinstance(issue.get("id"), str | int) and str(issue["id"]).strip():
        extra = {"key": issue["key"]} if isinstance(issue.get("key"), str) else {}
        ref = RecordRef(entity="issues", id=str(issue["id"]).strip(), **extra)
        fields = issue.get("fields")
        if isinstance(fields, dict):
            modified = _moment(fields.get("updated"))
    if modified is None:
        modified = _moment(payload.get("timestamp"))
    return ref, partition_of(modified)


class JiraWebhookVerifier:
    """Verifies app JWTs with the client secret and admin signatures with the webhook secret."""

    system = "jira"
    sensitive_headers = frozenset({HUB_SIGNATURE_HEADER})

    def __init__(
        self,
        *,
        client_secret: str | None = None,
        webhook_secret: str | None = None,
        max_age: timedelta = timedelta(minutes=5),
        leeway: timedelta = timedelta(seconds=30),
        clock: Clock = utcnow,
    ) -> None:
        self._client_secret = client_secret or None
        self._webhook_secret = webhook_secret or None
        self._max_age = max_age
        self._leeway = leeway
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"JiraWebhookVerifier(jwt={self._client_secret is not None}, "
            f"hub_signature={self._webhook_secret is not None})"
        )

    def verify(self, request: WebhookRequest) -> list[WebhookEvent]:
        """Authenticate by JWT or by ``X-Hub-Signature``, then read the event."""
        authorization = (request.header("authorization") or "").strip()
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("bad_token")
            if self._client_secret is None:
                raise Unauthorized("not_configured")
            verify_hs256_jwt(
                token.strip(), self._client_secret, now=self._clock(), max_age=self._max_age, leeway=self._leeway
            )
        else:
            signature = (request.header(HUB_SIGNATURE_HEADER) or "").strip()
            if not signature:
                raise Unauthorized("missing_signature")
            if self._webhook_secret is None:
                raise Unauthorized("not_configured")
            if not matches(signature.lower(), hub_signature(request.body, self._webhook_secret)):
                raise Unauthorized("bad_signature")
        payload = parse_json_object(request.body)
        event_id = (request.header(IDENTIFIER_HEADER) or "").strip() or body_digest(request.body)
        ref, partition = record_of(payload)
        return [WebhookEvent(event_id=event_id, payload=payload, record_ref=ref, partition_key=partition)]
