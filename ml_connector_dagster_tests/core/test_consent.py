"""The authorization-code consent keeps the token that lasts: the refresh token where access tokens
expire, the access token where it never does (monday: no refresh token at all). Against the monday
simulator's OAuth endpoints, in process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ml_connector_dagster.core.consent import CodeFlow, ConsentError
from ml_connector_dagster.core.oauth import MemoryTokenStore
from ml_connector_dagster.sandbox.monday import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    MondaySimulator,
)
from ml_connector_dagster.sandbox.transport import InProcessTransport

ROOT = "http://auth.monday.test"


@pytest.fixture
def transport() -> Iterator[InProcessTransport]:
    sim = MondaySimulator()
    in_process = InProcessTransport(sim.app)
    yield in_process
    in_process.close()
    sim.close()


def flow(keeps: str) -> CodeFlow:
    return CodeFlow(system="monday", authorize_url=f"{ROOT}/oauth2/authorize", token_url=f"{ROOT}/oauth2/token",
                    client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET, redirect_uri=DEMO_REDIRECT_URI,
                    scopes=("me:read", "boards:read"), keeps=keeps)  # type: ignore[arg-type]


def consent(code_flow: CodeFlow, store: MemoryTokenStore, transport: InProcessTransport) -> str:
    """Begin, let the browser consent, and return the address it lands on."""
    request = code_flow.begin(store)
    with httpx.Client(transport=transport) as browser:
        return browser.get(request.url).headers["location"]


def test_an_access_token_flow_keeps_the_never_expiring_access_token(transport: InProcessTransport) -> None:
    store = MemoryTokenStore()
    code_flow = flow("access_token")
    grant = code_flow.complete(store, consent(code_flow, store, transport), transport=transport)
    assert grant.refresh_token is None and grant.expires_in is None
    assert code_flow.token_to_keep(grant) == grant.access_token.get_secret_value()
    assert code_flow.kept_name == "access token" and grant.scopes == ["me:read", "boards:read"]


def test_a_refresh_token_flow_refuses_a_grant_without_one(transport: InProcessTransport) -> None:
    store = MemoryTokenStore()
    code_flow = flow("refresh_token")
    with pytest.raises(ConsentError, match="without a refresh token"):
        code_flow.complete(store, consent(code_flow, store, transport), transport=transport)
