"""Asana webhooks: the ``X-Hook-Secret`` handshake, ``X-Hook-Signature`` checks, one event per change.

Each webhook gets its own secret, which Asana hands over in a handshake *during* the
``POST /webhooks`` call that creates it. A handshake is honoured only while the connector itself is
registering: the registering code first arms an expectation (:func:`expect_handshake`, kept in the
ledger's state with a short TTL) under a fresh random hook id that it puts in the target URL
(:func:`target_url`, ``.../webhooks/asana?hook=<id>``). A handshake for a hook nobody armed, or
whose window has passed, is refused and plants nothing; an honoured one consumes the expectation
and stores the echoed secret encrypted in the vault under :func:`secret_name`. Events are then
checked against that hook's secret: ``X-Hook-Signature`` = hex HMAC-SHA256(raw body, secret).

A delivery ``{"events": [...]}`` becomes one inbox event per change, id = digest of the change
(Asana sends no event id), so overlapping webhooks and retries store each change once; an empty
list is a heartbeat. The record is the task changed, or the task a story/attachment hangs on.
"""

from __future__ import annotations

import json
import re
import secrets as pysecrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
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
from ml_connector_dagster.webhooks.signatures import Clock, hmac_sha256_hex, matches, parse_timestamp, utcnow

__all__ = [
    "HOOK_PARAM",
    "SECRET_HEADER",
    "SIGNATURE_HEADER",
    "AsanaWebhookVerifier",
    "cancel_handshake",
    "expect_handshake",
    "forget_webhook",
    "record_of",
    "secret_name",
    "sign",
    "target_url",
]

SECRET_HEADER = "x-hook-secret"
SIGNATURE_HEADER = "x-hook-signature"
HOOK_PARAM = "hook"
DEFAULT_HANDSHAKE_TTL = timedelta(seconds=60)
_HOOK_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_MAX_SECRET_LENGTH = 512
_MAX_EVENTS = 1000


def _handshake_key(hook: str) -> str:
    return f"asana.webhook.handshake.{hook}"


def secret_name(hook: str) -> str:
    """The vault entry holding the secret of webhook ``hook``."""
    return f"asana.webhook_secret.{hook}"


def target_url(receiver_url: str, hook: str) -> str:
    """The ``target`` to register: the receiver's Asana route with the hook id in the query."""
    return f"{receiver_url.rstrip('/')}/webhooks/asana?{urlencode({HOOK_PARAM: hook})}"


def expect_handshake(
    ledger: Ledger, *, ttl: timedelta = DEFAULT_HANDSHAKE_TTL, hook: str | None = None, now: datetime | None = None
) -> str:
    """Arm the handshake of a webhook about to be registered; returns its hook id for :func:`target_url`.

    Call right before ``POST /webhooks`` and :func:`cancel_handshake` right after it, whatever it
    answered. A new random id per registration means nobody can guess which handshake is awaited.
    """
    hook = hook or pysecrets.token_urlsafe(18)
    if not _HOOK_ID.match(hook):
        raise ValueError("a hook id is 16-64 characters of [A-Za-z0-9_-]")
    expires_at = (now or utcnow()) + ttl
    ledger.set_state(_handshake_key(hook), json.dumps({"expires_at": expires_at.isoformat()}))
    return hook


def cancel_handshake(ledger: Ledger, hook: str) -> None:
    """Close the handshake window of ``hook`` (no-op when it was already consumed or never armed)."""
    ledger.delete_state(_handshake_key(hook))


def forget_webhook(vault: Vault, hook: str) -> None:
    """Drop the secret of a deleted webhook, so its deliveries are refused from now on."""
    vault.delete(secret_name(hook))


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hook-Signature`` Asana sends for ``body``."""
    return hmac_sha256_hex(secret, body)


def _gid(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    gid, kind = value.get("gid"), value.get("resource_type")
    if isinstance(gid, str | int) and str(gid).strip() and isinstance(kind, str) and kind:
        return kind, str(gid).strip()
    return None


def record_of(change: dict[str, Any]) -> tuple[RecordRef | None, str | None]:
    """The task one change is about (the resource, else its parent task) and the day it happened."""
    resource, parent = _gid(change.get("resource")), _gid(change.get("parent"))
    target = resource if resource and resource[0] == "task" else parent if parent and parent[0] == "task" else resource
    ref = RecordRef(entity=f"{target[0]}s", id=target[1]) if target else None
    created = change.get("created_at")
    partition = None
    if isinstance(created, str):
        try:
            partition = partition_of(parse_timestamp(created))
        except Malformed:
            partition = None
    return ref, partition


class AsanaWebhookVerifier:
    """Honours armed handshakes and verifies events with the hook's secret from the vault."""

    system = "asana"
    sensitive_headers = frozenset({SECRET_HEADER, SIGNATURE_HEADER})

    def __init__(self, ledger: Ledger, vault: Vault, *, clock: Clock = utcnow) -> None:
        self._ledger = ledger
        self._vault = vault
        self._clock = clock

    def __repr__(self) -> str:
        return "AsanaWebhookVerifier()"

    def verify(self, request: WebhookRequest) -> list[WebhookEvent] | Reply:
        """A handshake (armed ones only) or a signed delivery; raises on anything else."""
        hook = request.query.get(HOOK_PARAM, "")
        if not _HOOK_ID.match(hook):
            raise Unauthorized("unknown_hook")
        handshake_secret = request.header(SECRET_HEADER)
        if handshake_secret is not None:
            return self._handshake(hook, handshake_secret)
        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise Unauthorized("missing_signature")
        secret = self._vault.get(secret_name(hook))
        if secret is None:
            raise Unauthorized("unknown_hook")
        if not matches(signature.lower(), sign(request.body, secret)):
            raise Unauthorized("bad_signature")
        payload = parse_json_object(request.body)
        changes = payload.get("events")
        if not isinstance(changes, list) or len(changes) > _MAX_EVENTS or not all(isinstance(c, dict) for c in changes):
            raise Malformed("malformed_body")
        events = []
        for change in changes:
            ref, partition = record_of(change)
            events.append(
                WebhookEvent(event_id=body_digest(change), payload=change, record_ref=ref, partition_key=partition)
            )
        return events

    def _handshake(self, hook: str, secret: str) -> Reply:
        key = _handshake_key(hook)
        armed = self._ledger.get_state(key)
        if armed is None:
            raise Unauthorized("unsolicited_handshake")
        # Consumed before anything is stored: a second handshake for the same registration is refused.
        self._ledger.delete_state(key)
        try:
            expires_at = datetime.fromisoformat(json.loads(armed)["expires_at"])
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("unsolicited_handshake") from None
        if self._clock() > expires_at:
            raise Unauthorized("unsolicited_handshake")
        secret = secret.strip()
        if not secret or len(secret) > _MAX_SECRET_LENGTH:
            raise Malformed("malformed_handshake")
        self._vault.put(secret_name(hook), secret)
        return Reply(reason="handshake", status_code=200, headers={"X-Hook-Secret": secret})
