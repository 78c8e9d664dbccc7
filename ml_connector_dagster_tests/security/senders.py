"""Deliveries signed the way each vendor signs them, for every system's receiver route.

A :class:`Sender` makes an authentic delivery of its system (with the independent signing helpers of
``webhooks/vendor_signing.py``) and, for attacks, the same with a guessed secret, another date or
another algorithm. ``signs_body`` and ``dated`` say what the vendor's protocol can detect at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster.systems.acumatica.webhook import AcumaticaWebhookVerifier
from ml_connector_dagster.systems.asana.webhook import (
    AsanaWebhookVerifier,
    cancel_handshake,
    expect_handshake,
    secret_name,
)
from ml_connector_dagster.systems.jira.webhook import JiraWebhookVerifier
from ml_connector_dagster.systems.monday.webhook import MondayWebhookVerifier
from ml_connector_dagster.systems.visma.webhook import VismaWebhookVerifier
from ml_connector_dagster.webhooks.contract import WebhookVerifier
from ml_connector_dagster_tests.webhooks.vendor_signing import as_body, hex_hmac, hs256_jwt, visma_headers

__all__ = ["FORGED", "SECRET", "SENDERS", "Delivery", "Sender", "now"]

SECRET = "the-right-secret-7c1e9a5b3d-0123456789abcdef-0123456789abcdef-01234567"
FORGED = "an-attackers-guess-0f2e4d6c-0123456789abcdef"
_ids = itertools.count(1)


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    route: str


class Sender:
    """Signs deliveries of one system as its vendor does; ``secret`` and ``at`` are what attacks bend."""

    system: str
    dated = True  # the protocol dates each delivery (a replay long after is refused)
    signs_body = True  # the credential covers the body (a changed body is refused)

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        raise NotImplementedError

    def route(self) -> str:
        return f"/webhooks/{self.system}"

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        """Credentials made with the right secret but another algorithm (or none)."""
        raise NotImplementedError

    def deliver(self, payload: dict[str, Any] | None = None, **signing: Any) -> Delivery:
        body = as_body(payload if payload is not None else self.payload())
        return Delivery(body, self.sign(body, **signing), self.route())


def now() -> datetime:
    return datetime.now(UTC)


def _rsa_jwt(claims: dict[str, Any]) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256")


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _jwt_variants(secret: str) -> list[str]:
    claims = {"iat": int(now().timestamp()), "exp": int((now() + timedelta(minutes=1)).timestamp())}
    return [
        _unsigned_jwt(claims),
        jwt.encode(claims, secret, algorithm="HS512"),
        jwt.encode(claims, secret, algorithm="HS384"),
        _rsa_jwt(claims),
    ]


class VismaSender(Sender):
    system = "visma"

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        return VismaWebhookVerifier([SECRET])

    def payload(self) -> dict[str, Any]:
        return {
            "entity": "SupplierInvoice",
            "id": f"{next(_ids):06d}",
            "lastModifiedDateTime": now().isoformat(),
        }

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        return visma_headers(
            secret, body, notification_id=hashlib.sha256(body).hexdigest()[:32], at=at or now()
        )

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        headers = self.sign(body)
        hex_sha256 = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        sha1 = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha1).digest()).decode()
        return [{**headers, "x-vwd-signature-v1": hex_sha256}, {**headers, "x-vwd-signature-v1": sha1}]


class JiraAppSender(Sender):
    """OAuth-app dynamic webhooks: an HS256 JWT signed with the app's client secret."""

    system = "jira"
    signs_body = False  # the JWT does not cover the body; TLS and the JWT's short life are what protect it

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        return JiraWebhookVerifier(client_secret=SECRET)

    def payload(self) -> dict[str, Any]:
        return {"webhookEvent": "jira:issue_updated", "timestamp": int(now().timestamp() * 1000),
                "issue": {"id": str(10000 + next(_ids)), "key": "FIN-1", "fields": {}}}  # fmt: skip

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        token = hs256_jwt(secret, issued_at=at or now())
        return {
            "authorization": f"Bearer {token}",
            "x-atlassian-webhook-identifier": hashlib.sha256(body).hexdigest(),
        }

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        identifier = {"x-atlassian-webhook-identifier": "other-algorithm"}
        return [{"authorization": f"Bearer {token}", **identifier} for token in _jwt_variants(SECRET)]


class JiraAdminSender(JiraAppSender):
    """Admin webhooks registered with a secret: ``X-Hub-Signature: sha256=<hex HMAC of the body>``."""

    dated = False
    signs_body = True

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        return JiraWebhookVerifier(webhook_secret=SECRET)

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        return {"x-hub-signature": f"sha256={hex_hmac(secret, body)}",
                "x-atlassian-webhook-identifier": hashlib.sha256(body).hexdigest()}  # fmt: skip

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        sha512 = hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()
        return [{"x-hub-signature": f"sha1={sha1}"}, {"x-hub-signature": f"sha512={sha512}"},
                {"x-hub-signature": hex_hmac(SECRET, body)}]  # fmt: skip


class AsanaSender(Sender):
    system = "asana"
    dated = False

    def __init__(self) -> None:
        self.hook = ""

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        self.hook = expect_handshake(ledger)
        vault.put(secret_name(self.hook), SECRET)  # as after the X-Hook-Secret handshake
        cancel_handshake(ledger, self.hook)
        return AsanaWebhookVerifier(ledger, vault)

    def route(self) -> str:
        return f"/webhooks/asana?hook={self.hook}"

    def payload(self) -> dict[str, Any]:
        return {"events": [{"action": "changed", "created_at": now().isoformat(),
                            "resource": {"gid": str(1209000 + next(_ids)), "resource_type": "task"}}]}  # fmt: skip

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        return {"x-hook-signature": hex_hmac(secret, body)}

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        b64 = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        return [{"x-hook-signature": sha1}, {"x-hook-signature": b64}]


class MondaySender(Sender):
    system = "monday"
    signs_body = False  # as Jira's app JWT: the token authenticates the sender, not the body

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        return MondayWebhookVerifier(SECRET)

    def payload(self) -> dict[str, Any]:
        return {"event": {"type": "update_column_value", "boardId": 3001, "pulseId": 4000 + next(_ids),
                          "triggerTime": now().isoformat(), "triggerUuid": f"uuid-{next(_ids)}"}}  # fmt: skip

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        return {"authorization": hs256_jwt(secret, issued_at=at or now(), ttl=timedelta(minutes=1))}

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        return [{"authorization": token} for token in _jwt_variants(SECRET)]


class AcumaticaSender(Sender):
    system = "acumatica"
    dated = False
    signs_body = False  # a static shared header: Acumatica signs nothing

    def verifier(self, ledger: Ledger, vault: Vault) -> WebhookVerifier:
        return AcumaticaWebhookVerifier(SECRET)

    def payload(self) -> dict[str, Any]:
        return {"Inserted": [{"ReferenceNbr": {"value": f"{next(_ids):06d}"}}], "Deleted": [],
                "Query": "BillsOnHold", "Id": f"notification-{next(_ids)}", "TimeStamp": 1}  # fmt: skip

    def sign(self, body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
        return {"X-ML-Connector-Token": secret}

    def other_algorithms(self, body: bytes) -> list[dict[str, str]]:
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return [{"X-ML-Connector-Token": digest}, {"Authorization": f"Bearer {SECRET}"},
                {"X-ML-Connector-Token": f" {SECRET}"}]  # fmt: skip


SENDERS: dict[str, Callable[[], Sender]] = {
    "visma": VismaSender, "jira-app-jwt": JiraAppSender, "jira-admin-hub-signature": JiraAdminSender,
    "asana": AsanaSender, "monday": MondaySender, "acumatica": AcumaticaSender,
}  # fmt: skip
