"""Every system's webhook verifier against the same attacks, through the real receiver.

For each system a :class:`Sender` makes an authentic delivery the way the vendor signs it (written
independently of the verifiers, in ``webhooks/vendor_signing.py``); each attack then bends one thing
of it: no credential, a forged one, a body changed after signing, an old capture replayed, another
algorithm. Every attack gets 401/400 and leaves no inbox row; an exact resend is stored once.

Where a vendor's protocol cannot tell an attack apart, that attack is not run against it (see
``signs_body`` and ``dated``): Acumatica signs nothing (a static header: a changed body cannot be
detected, and nothing dates a delivery); Jira's and monday's app JWTs authenticate the sender, not
the body; Asana and Jira admin webhooks carry no timestamp, so a replay is caught by its event id
only (the exact-resend test). Polling remains the guarantee in every case.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster_tests.security.senders import FORGED, SECRET, SENDERS, Delivery, Sender, now
from ml_connector_dagster_tests.webhooks.support import inbox_rows, serve

LONG_AGO = timedelta(hours=2)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


BODY_SIGNING = sorted(name for name, make in SENDERS.items() if make().signs_body)
DATING = sorted(name for name, make in SENDERS.items() if make().dated)


@pytest.fixture(params=sorted(SENDERS))
def sender(request: pytest.FixtureRequest) -> Sender:
    return SENDERS[request.param]()


@pytest.fixture
def client(sender: Sender, ledger: Ledger) -> Iterator[Any]:
    vault = Vault(ledger.engine, [Fernet.generate_key().decode()])
    with serve(ledger, sender.verifier(ledger, vault)) as test_client:
        yield test_client


def post(client: Any, delivery: Delivery, **overrides: Any) -> Any:
    return client.post(delivery.route, content=overrides.get("body", delivery.body),
                       headers=overrides.get("headers", delivery.headers))  # fmt: skip


def assert_refused(response: Any, ledger: Ledger, status: tuple[int, ...] = (401,)) -> None:
    assert response.status_code in status, (response.status_code, response.text)
    assert "error" in response.json()
    assert inbox_rows(ledger) == []


def test_an_authentic_delivery_is_stored(sender: Sender, client: Any, ledger: Ledger) -> None:
    response = post(client, sender.deliver())
    assert response.status_code == 200, response.text
    assert len(inbox_rows(ledger)) == 1


def test_an_unsigned_delivery_is_refused(sender: Sender, client: Any, ledger: Ledger) -> None:
    delivery = sender.deliver()
    assert_refused(post(client, delivery, headers={"content-type": "application/json"}), ledger)


def test_a_delivery_signed_with_a_guessed_secret_is_refused(
    sender: Sender, client: Any, ledger: Ledger
) -> None:
    assert_refused(post(client, sender.deliver(secret=FORGED)), ledger)


def test_a_credential_with_one_character_changed_is_refused(
    sender: Sender, client: Any, ledger: Ledger
) -> None:
    delivery = sender.deliver()
    name, value = next((k, v) for k, v in delivery.headers.items()
                       if k.lower() in {"x-vwd-signature-v1", "authorization", "x-hub-signature",
                                        "x-hook-signature", "x-ml-connector-token"})  # fmt: skip
    # A digit, not a letter: hex signatures may be compared case-insensitively, and 'a' -> 'A' is no change.
    flipped = value[:-2] + ("0" if value[-2] != "0" else "1") + value[-1]
    assert_refused(post(client, delivery, headers={**delivery.headers, name: flipped}), ledger)


@pytest.mark.parametrize("sender", BODY_SIGNING, indirect=True)
def test_a_body_changed_after_signing_is_refused(sender: Sender, client: Any, ledger: Ledger) -> None:
    delivery = sender.deliver()
    tampered = delivery.body.replace(b'"', b'"x', 1)
    assert_refused(post(client, delivery, body=tampered), ledger, (400, 401))


@pytest.mark.parametrize("sender", DATING, indirect=True)
def test_an_authentic_delivery_replayed_long_after_is_refused(
    sender: Sender, client: Any, ledger: Ledger
) -> None:
    assert_refused(post(client, sender.deliver(at=now() - LONG_AGO)), ledger)


@pytest.mark.parametrize("sender", DATING, indirect=True)
def test_a_delivery_dated_in_the_future_is_refused(sender: Sender, client: Any, ledger: Ledger) -> None:
    assert_refused(post(client, sender.deliver(at=now() + LONG_AGO)), ledger)


def test_an_exact_resend_is_acknowledged_and_stored_once(sender: Sender, client: Any, ledger: Ledger) -> None:
    delivery = sender.deliver()
    first, second = post(client, delivery), post(client, delivery)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["stored"] == 0
    assert len(inbox_rows(ledger)) == 1


def test_credentials_of_another_algorithm_are_refused(sender: Sender, client: Any, ledger: Ledger) -> None:
    delivery = sender.deliver()
    for headers in sender.other_algorithms(delivery.body):
        assert_refused(
            post(client, delivery, headers={"content-type": "application/json", **headers}), ledger
        )


def test_a_refusal_answers_with_a_reason_only(sender: Sender, client: Any, ledger: Ledger) -> None:
    response = post(client, sender.deliver(secret=FORGED))
    assert set(response.json()) == {"error"}
    assert SECRET not in response.text and FORGED not in response.text
