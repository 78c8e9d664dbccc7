"""The crypto the vendors' verifiers share: HMAC-SHA256, constant-time compares, HS256 JWTs, clocks.

Every comparison of a presented credential goes through :func:`matches` (``hmac.compare_digest``),
so no verifier can leak how many leading characters of a signature were right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from .contract import Malformed, Unauthorized

__all__ = [
    "Clock",
    "hmac_sha256",
    "hmac_sha256_base64",
    "hmac_sha256_hex",
    "matches",
    "matches_any",
    "parse_timestamp",
    "require_fresh",
    "utcnow",
    "verify_hs256_jwt",
]

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, aware UTC (verifiers take a ``clock`` so tests can move it)."""
    return datetime.now(UTC)


def hmac_sha256(secret: str, body: bytes) -> bytes:
    """HMAC-SHA256 of ``body`` keyed with the UTF-8 bytes of ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 (Jira ``X-Hub-Signature``, Asana ``X-Hook-Signature``)."""
    return hmac_sha256(secret, body).hex()


def hmac_sha256_base64(secret: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 (Visma ``x-vwd-signature-v1``)."""
    return base64.b64encode(hmac_sha256(secret, body)).decode()


def matches(presented: str, expected: str) -> bool:
    """Constant-time equality of two strings (compared as UTF-8 bytes)."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def matches_any(presented: str, expected: Iterable[str]) -> bool:
    """Constant-time check against each candidate (several secrets during a rotation); no early exit."""
    found = False
    for candidate in expected:
        found |= matches(presented, candidate)
    return found


def parse_timestamp(value: str) -> datetime:
    """A vendor timestamp: epoch seconds or milliseconds, or ISO 8601 (no offset -> UTC)."""
    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            number = float(text)
            # Epoch milliseconds pass 1e11 in 1973; seconds will not until the year 5138.
            return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise Malformed("malformed_timestamp") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00: valid ISO 8601, outside datetime's range in UTC
        raise Malformed("malformed_timestamp") from None


def require_fresh(moment: datetime, now: datetime, tolerance: timedelta) -> None:
    """Refuse (401 ``stale_timestamp``) a moment further than ``tolerance`` from ``now``, either way."""
    if abs(now - moment) > tolerance:
        raise Unauthorized("stale_timestamp")


def verify_hs256_jwt(
    token: str,
    secret: str,
    *,
    now: datetime,
    max_age: timedelta,
    leeway: timedelta,
    required: tuple[str, ...] = ("exp", "iat"),
) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with ``secret``, or :class:`Unauthorized`.

    Checks the signature (HS256 only: no ``none``, no algorithm confusion), that ``exp`` has not
    passed and ``iat`` is not in the future (both within ``leeway``), and that ``iat`` is at most
    ``max_age`` old, so a token with a generous ``exp`` still cannot be replayed for long.
    """
    try:
        # Time claims are checked below against ``now`` (the verifier's clock), not time.time().
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={
                "require": list(required),
                "verify_aud": False,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise Unauthorized("bad_signature") from None
    except jwt.PyJWTError:
        # Malformed, wrong algorithm or a missing claim: all unauthenticated, and said no further.
        raise Unauthorized("bad_token") from None
    expires_at = _claim_time(claims, "exp")
    if expires_at is not None and expires_at <= now - leeway:
        raise Unauthorized("stale_token")
    not_before = _claim_time(claims, "nbf")
    if not_before is not None and not_before > now + leeway:
        raise Unauthorized("token_from_future")
    issued_at = _claim_time(claims, "iat")
    if issued_at is not None:
        if issued_at > now + leeway:
            raise Unauthorized("token_from_future")
        if now - issued_at > max_age + leeway:
            raise Unauthorized("stale_token")
    return claims


def _claim_time(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized("bad_token")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise Unauthorized("bad_token") from None
