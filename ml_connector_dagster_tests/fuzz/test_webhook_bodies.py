"""Every system's webhook route, fed fuzzed bodies: 2xx or 4xx, never a 500, and a 4xx leaves no row.

Bodies come authentically signed (so parsing, not the signature check, is what is exercised) or
not signed at all: arbitrary bytes, arbitrary JSON, and authentic payloads with one field broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.core.vault import Vault
from ml_connector_dagster_tests.security.senders import SENDERS, Sender
from ml_connector_dagster_tests.webhooks.support import inbox_rows, serve

from .mutations import mutated

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture(params=sorted(SENDERS))
def sender(request: pytest.FixtureRequest) -> Sender:
    return SENDERS[request.param]()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


@pytest.fixture
def client(sender: Sender, ledger: Ledger) -> Iterator[Any]:
    vault = Vault(ledger.engine, [Fernet.generate_key().decode()])
    with serve(ledger, sender.verifier(ledger, vault)) as test_client:
        yield test_client


def send(client: Any, ledger: Ledger, sender: Sender, body: bytes, headers: dict[str, str]) -> int:
    """POST one delivery; check the receiver's promises; return the status."""
    before = len(inbox_rows(ledger))
    response = client.post(sender.route(), content=body, headers=headers)
    added = len(inbox_rows(ledger)) - before
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert added == 0
        assert set(response.json()) == {"error"}
    else:
        assert response.status_code == 200
        if "stored" in response.text:
            assert added == response.json()["stored"]
    return response.status_code


@FUZZ
@given(body=st.binary(max_size=400) | JSON.map(lambda value: json.dumps(value).encode()))
def test_any_signed_body_is_stored_or_refused_never_a_server_error(
    sender: Sender, client: Any, ledger: Ledger, body: bytes
) -> None:
    send(client, ledger, sender, body, sender.sign(body))


@FUZZ
@given(data=st.data())
def test_an_authentic_payload_with_a_broken_field_is_stored_or_refused(
    sender: Sender, client: Any, ledger: Ledger, data: st.DataObject
) -> None:
    payload, _ = data.draw(mutated([sender.payload()]))
    body = json.dumps(payload, allow_nan=True).encode()
    send(client, ledger, sender, body, sender.sign(body))


@FUZZ
@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "authorization",
                "x-hub-signature",
                "x-hook-signature",
                "x-vwd-signature-v1",
                "x-ml-connector-token",
                "x-hook-secret",
                "x-vwd-notification-timestamp",
                "content-length",
            ]
        ),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        max_size=4,
    ),  # fmt: skip
)
def test_an_unsigned_or_garbled_delivery_is_refused(
    sender: Sender, client: Any, ledger: Ledger, body: bytes, headers: dict[str, str]
) -> None:
    headers.pop("x-hook-secret", None)  # a handshake is its own protocol (test_asana.py)
    status = send(client, ledger, sender, body, headers)
    assert status in (400, 401, 413) or (sender.system == "monday" and status == 200)


@pytest.mark.parametrize("sender", ["visma"], indirect=True)
@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "1e400", "-1"])
def test_a_signed_delivery_dated_outside_utcs_range_is_refused_not_a_server_error(
    sender: Sender, client: Any, ledger: Ledger, stamp: str
) -> None:
    body = json.dumps(sender.payload()).encode()
    headers = {**sender.sign(body), "x-vwd-notification-timestamp": stamp}
    assert send(client, ledger, sender, body, headers) in (400, 401)
