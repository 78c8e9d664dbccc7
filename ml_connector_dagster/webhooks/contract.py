"""What a vendor's webhook verifier is handed and what it answers.

The receiver (``webhooks.receiver``) is generic: it limits the body, hands the raw bytes and headers
to the system's verifier, and stores what comes back. Each vendor's signature scheme and payload
reading lives in ``systems/<vendor>/webhook.py`` and speaks only the types of this module (and the
crypto helpers of ``webhooks.signatures``), which import nothing else of the project.

A verifier either returns the verified events (possibly none: a heartbeat), returns a
:class:`Reply` for a handshake that stores nothing, or raises :class:`Unauthorized` /
:class:`Malformed`. Rejection reasons are short counter names and never carry a secret.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Malformed",
    "RecordRef",
    "Reply",
    "Unauthorized",
    "WebhookEvent",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookVerifier",
    "body_digest",
    "parse_json_object",
    "partition_of",
]


@dataclass(frozen=True)
class WebhookRequest:
    """One delivery as received: raw body, headers with lower-case names, query parameters."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        # One spelling for lookups: vendors disagree on header case and HTTP/2 lower-cases anyway.
        object.__setattr__(self, "headers", {name.lower(): value for name, value in self.headers.items()})

    def header(self, name: str) -> str | None:
        """The value of one header (case-insensitive), or ``None``."""
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        # Headers and body may carry signatures or handshake secrets: never in a repr.
        return f"WebhookRequest(bytes={len(self.body)}, headers={sorted(self.headers)})"


class RecordRef(BaseModel):
    """Which source record an event is about, so a run can fetch it by id."""

    model_config = ConfigDict(frozen=True, extra="allow")

    entity: str = Field(min_length=1)
    id: str = Field(min_length=1)


class WebhookEvent(BaseModel):
    """A verified event, ready for the inbox."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(min_length=1, max_length=255)
    payload: dict[str, Any]
    record_ref: RecordRef | None = None
    partition_key: str | None = None


class Reply(BaseModel):
    """A handshake answer (Asana's secret echo, Monday's challenge): sent back, nothing stored."""

    model_config = ConfigDict(frozen=True)

    reason: str
    status_code: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)


class WebhookRejected(Exception):
    """The delivery is refused; ``reason`` is a short counter name (never a secret)."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthorized(WebhookRejected):
    """Missing, forged or stale credentials: 401."""

    status_code = 401


class Malformed(WebhookRejected):
    """Authentic (or not yet judged) but unreadable: 400."""

    status_code = 400


class WebhookVerifier(Protocol):
    """One system's verification: the receiver calls ``verify`` from a worker thread."""

    system: str
    # Header names whose values must not reach the inbox (beyond core.http.redact_headers' own list).
    sensitive_headers: frozenset[str]

    def verify(self, request: WebhookRequest) -> Sequence[WebhookEvent] | Reply:
        """Authenticate ``request`` and read its events, or raise :class:`WebhookRejected`."""
        ...


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or :class:`Malformed`."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Malformed("malformed_body") from None
    if not isinstance(value, dict):
        raise Malformed("malformed_body")
    return value


def body_digest(value: bytes | Mapping[str, Any]) -> str:
    """A stable id for a delivery that brings none: sha256 of the raw body or of canonical JSON."""
    raw = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


def partition_of(moment: datetime | None) -> str | None:
    """The daily partition (UTC date) of a modification time; naive times are taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date().isoformat()
