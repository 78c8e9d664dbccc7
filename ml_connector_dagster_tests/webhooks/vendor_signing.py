"""Deliveries signed the way each vendor signs them, written independently of the verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import jwt


def as_body(payload: dict[str, Any]) -> bytes:
    """JSON bytes as a vendor would send them (not canonical: the signature covers these bytes)."""
    return json.dumps(payload).encode()


def hex_hmac(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256: Jira's X-Hub-Signature (after ``sha256=``), Asana's X-Hook-Signature."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def visma_headers(secret: str, body: bytes, *, notification_id: str, at: datetime) -> dict[str, str]:
    """The Visma Webhook Dispatcher's headers: base64 HMAC, notification id, epoch-ms timestamp."""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/json",
        "x-vwd-signature-v1": signature,
        "x-vwd-notification-id": notification_id,
        "x-vwd-event-id": "SupplierInvoice.Updated",
        "x-vwd-notification-timestamp": str(int(at.timestamp() * 1000)),
    }


def hs256_jwt(secret: str, *, issued_at: datetime, ttl: timedelta = timedelta(minutes=3), **claims: Any) -> str:
    """A JWT as Jira and Monday sign app webhook deliveries: HS256 with iat and exp."""
    body = {"iat": int(issued_at.timestamp()), "exp": int((issued_at + ttl).timestamp()), **claims}
    return jwt.encode(body, secret, algorithm="HS256")
