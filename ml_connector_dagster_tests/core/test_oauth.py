"""Specification of core/oauth.py: token providers as httpx.Auth flows, over simulated servers."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from urllib.parse import parse_qsl

import httpx
import pytest

from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import (
    AuthenticationFailed,
    RateLimiter,
    ServerError,
    build_http_client,
)
from ml_connector_dagster.core.oauth import (
    ClientCredentialsAuth,
    MemoryTokenStore,
    RotatingRefreshTokenAuth,
    StaticTokenAuth,
)

CLIENT_SECRET = "cs-Very-Secret-42af"
TOKEN_URL = "https://auth.example.test/connect/token"
STORE_KEY = "jira.refresh_token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def unique_system() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def api_client(server_handler, auth: httpx.Auth) -> httpx.Client:
    return build_http_client(
        unique_system(), "https://api.example.test", auth=auth, transport=httpx.MockTransport(server_handler),
        rate_limiter=RateLimiter(1000, 1000),
    )


class ClientCredentialsServer:
    """A token endpoint issuing tok-1, tok-2, ... and an API accepting only unrevoked tokens."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.token_forms: list[dict[str, str]] = []
        self.api_calls: list[tuple[str, bytes]] = []
        self.valid: set[str] = set()
        self.token_answers: list[httpx.Response] = []  # answered before issuing tokens, one per call
        self.token_delay_s = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return self.token(request)
        self.api_calls.append((request.headers.get("Authorization", ""), request.read()))
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.valid:
            return httpx.Response(401, json={"message": "token expired"})
        return httpx.Response(200, json={"ok": True})

    def token(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.token_delay_s)  # widens the window in which threads could race
        with self._lock:
            self.token_forms.append(dict(parse_qsl(request.read().decode())))
            if self.token_answers:
                return self.token_answers.pop(0)
            token = f"tok-{len(self.token_forms)}"
            self.valid.add(token)
        return httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in})


def client_credentials(server: ClientCredentialsServer, clock: FakeClock | None = None, **kwargs) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        TOKEN_URL, "client-1", CLIENT_SECRET, transport=httpx.MockTransport(server),
        clock=clock or FakeClock(), system=unique_system(), **kwargs,
    )


# --- client credentials ----------------------------------------------------------------------------


def test_client_credentials_posts_the_form_with_scope_and_extra_params() -> None:
    server = ClientCredentialsServer()
    auth = client_credentials(server, scope="vismanet_erp_service_api:read", extra_params={"tenant_id": "t-9"})
    with api_client(server, auth) as client:
        assert client.get("/v1/supplierInvoice").status_code == 200
    assert server.token_forms == [{
        "grant_type": "client_credentials", "client_id": "client-1", "client_secret": CLIENT_SECRET,
        "scope": "vismanet_erp_service_api:read", "tenant_id": "t-9",
    }]
    assert server.api_calls[0][0] == "Bearer tok-1"


def test_the_token_is_reused_until_the_refresh_margin_before_expiry() -> None:
    server = ClientCredentialsServer(expires_in=3600)
    clock = FakeClock()
    auth = client_credentials(server, clock, refresh_margin_s=60)
    with api_client(server, auth) as client:
        client.get("/v1/a")
        clock.now += 3539
        client.get("/v1/b")
        assert len(server.token_forms) == 1
        clock.now += 2  # now inside the last 60 s of the token's life
        client.get("/v1/c")
    assert len(server.token_forms) == 2
    assert [call[0] for call in server.api_calls] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_a_401_fetches_a_new_token_once_and_replays_the_request() -> None:
    server = ClientCredentialsServer()
    auth = client_credentials(server)
    with api_client(server, auth) as client:
        client.get("/v1/warmup")
        server.valid.clear()  # the server revokes tok-1 early
        response = client.post("/v1/supplierInvoice", json={"amount": 100})
    assert response.status_code == 200
    assert server.api_calls[1:] == [
        ("Bearer tok-1", b'{"amount":100}'),
        ("Bearer tok-2", b'{"amount":100}'),
    ]


def test_a_second_401_goes_back_to_the_caller() -> None:
    server = ClientCredentialsServer()
    auth = client_credentials(server)
    with api_client(lambda request: server(request) if "token" in request.url.path else httpx.Response(401), auth) as client:
        response = client.get("/v1/supplierInvoice")
    assert response.status_code == 401
    assert len(server.token_forms) == 2


def test_concurrent_requests_share_one_token_fetch() -> None:
    server = ClientCredentialsServer()
    server.token_delay_s = 0.05
    auth = client_credentials(server)
    with api_client(server, auth) as client:
        threads = [threading.Thread(target=client.get, args=("/v1/x",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(server.token_forms) == 1
    assert len(server.api_calls) == 8


def test_a_refused_token_request_raises_authentication_failed_without_the_secret() -> None:
    server = ClientCredentialsServer()
    server.token_answers.append(httpx.Response(
        400, json={"error": "invalid_client", "error_description": f"client_secret {CLIENT_SECRET} is wrong"}
    ))
    auth = client_credentials(server)
    with api_client(server, auth) as client, pytest.raises(AuthenticationFailed) as caught:
        client.get("/v1/supplierInvoice")
    message = str(caught.value)
    assert "invalid_client" in message
    assert "is wrong" in message
    assert CLIENT_SECRET not in message
    assert server.api_calls == []


def test_a_token_endpoint_outage_is_retried_and_then_reported_as_a_server_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "default_sleep", lambda _: None)
    server = ClientCredentialsServer()
    server.token_answers.extend([httpx.Response(503)] * 5)
    auth = client_credentials(server)
    with api_client(server, auth) as client, pytest.raises(ServerError):
        client.get("/v1/supplierInvoice")
    assert len(server.token_forms) == 5


def test_a_token_endpoint_hiccup_is_retried_transparently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "default_sleep", lambda _: None)
    server = ClientCredentialsServer()
    server.token_answers.append(httpx.Response(503))
    auth = client_credentials(server)
    with api_client(server, auth) as client:
        assert client.get("/v1/supplierInvoice").status_code == 200


def test_the_repr_of_client_credentials_hides_the_secret() -> None:
    auth = client_credentials(ClientCredentialsServer())
    assert CLIENT_SECRET not in repr(auth)
    assert "client-1" in repr(auth)


# --- rotating refresh tokens -----------------------------------------------------------------------


class RotatingServer:
    """Atlassian-like: every refresh answers a new refresh token and the spent one dies."""

    def __init__(self, first_refresh_token: str = "rt-1") -> None:
        self.current_refresh = first_refresh_token
        self.refresh_bodies: list[dict[str, str]] = []
        self.valid_access: set[str] = set()
        self.api_calls = 0
        self.token_delay_s = 0.0
        self.before_api = lambda: None
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return self.refresh(request)
        self.before_api()
        self.api_calls += 1
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return httpx.Response(200 if bearer in self.valid_access else 401)

    def refresh(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.token_delay_s)
        body = json.loads(request.read())
        with self._lock:
            self.refresh_bodies.append(body)
            if body.get("refresh_token") != self.current_refresh:
                return httpx.Response(403, json={"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."})
            n = len(self.refresh_bodies)
            self.current_refresh = f"rt-{n + 1}"
            self.valid_access.add(f"at-{n}")
            return httpx.Response(200, json={
                "access_token": f"at-{n}", "refresh_token": self.current_refresh, "expires_in": 3600,
                "token_type": "Bearer", "scope": "read:jira-work offline_access",
            })


def rotating(
    server: RotatingServer, store, clock: FakeClock | None = None, system: str | None = None
) -> RotatingRefreshTokenAuth:
    return RotatingRefreshTokenAuth(
        "https://auth.example.test/oauth/token", "client-1", CLIENT_SECRET, store=store, store_key=STORE_KEY,
        transport=httpx.MockTransport(server), clock=clock or FakeClock(), system=system or unique_system(),
    )


def test_refresh_sends_the_json_body_atlassian_expects() -> None:
    server = RotatingServer()
    store = MemoryTokenStore({STORE_KEY: "rt-1"})
    with api_client(server, rotating(server, store)) as client:
        assert client.get("/rest/api/3/myself").status_code == 200
    assert server.refresh_bodies == [{
        "grant_type": "refresh_token", "client_id": "client-1", "client_secret": CLIENT_SECRET,
        "refresh_token": "rt-1",
    }]


def test_the_new_refresh_token_is_saved_before_the_new_access_token_is_used() -> None:
    server = RotatingServer()
    store = MemoryTokenStore({STORE_KEY: "rt-1"})
    stored_when_api_called: list[str | None] = []
    server.before_api = lambda: stored_when_api_called.append(store.load(STORE_KEY))
    with api_client(server, rotating(server, store)) as client:
        client.get("/rest/api/3/myself")
    assert stored_when_api_called == ["rt-2"]


class FailingStore(MemoryTokenStore):
    def save(self, name: str, value: str) -> None:
        raise OSError("disk full")

    def compare_and_swap(self, name: str, expected: str | None, new: str) -> bool:
        raise OSError("disk full")


def test_an_access_token_whose_refresh_token_could_not_be_saved_is_never_used() -> None:
    server = RotatingServer()
    with api_client(server, rotating(server, FailingStore({STORE_KEY: "rt-1"}))) as client, \
            pytest.raises(OSError, match="disk full"):
        client.get("/rest/api/3/myself")
    assert server.api_calls == 0


class SaveOnlyStore:
    """A TokenStore without compare-and-swap."""

    def __init__(self, value: str) -> None:
        self.values = {STORE_KEY: value}

    def load(self, name: str) -> str | None:
        return self.values.get(name)

    def save(self, name: str, value: str) -> None:
        self.values[name] = value


def test_a_plain_token_store_gets_the_rotated_token_through_save() -> None:
    server = RotatingServer()
    store = SaveOnlyStore("rt-1")
    with api_client(server, rotating(server, store)) as client:
        client.get("/rest/api/3/myself")
    assert store.values == {STORE_KEY: "rt-2"}


def test_a_restarted_process_continues_with_the_saved_refresh_token() -> None:
    server = RotatingServer()
    store = MemoryTokenStore({STORE_KEY: "rt-1"})
    with api_client(server, rotating(server, store)) as before_restart:
        before_restart.get("/rest/api/3/myself")
    with api_client(server, rotating(server, store)) as after_restart:
        assert after_restart.get("/rest/api/3/myself").status_code == 200
    assert [body["refresh_token"] for body in server.refresh_bodies] == ["rt-1", "rt-2"]
    assert store.load(STORE_KEY) == "rt-3"


def test_concurrent_threads_spend_the_refresh_token_once() -> None:
    server = RotatingServer()
    server.token_delay_s = 0.05
    store = MemoryTokenStore({STORE_KEY: "rt-1"})
    statuses: list[int] = []
    with api_client(server, rotating(server, store)) as client:
        def call() -> None:
            statuses.append(client.get("/rest/api/3/myself").status_code)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(server.refresh_bodies) == 1
    assert statuses == [200] * 8


def test_a_401_refreshes_once_and_replays() -> None:
    server = RotatingServer()
    store = MemoryTokenStore({STORE_KEY: "rt-1"})
    with api_client(server, rotating(server, store)) as client:
        client.get("/rest/api/3/myself")
        server.valid_access.clear()
        assert client.get("/rest/api/3/myself").status_code == 200
    assert len(server.refresh_bodies) == 2
    assert store.load(STORE_KEY) == "rt-3"


def test_the_access_token_is_refreshed_before_it_expires() -> None:
    server = RotatingServer()
    clock = FakeClock()
    store = MemoryTokenStore({STORE_KEY: "rt-1"})
    with api_client(server, rotating(server, store, clock)) as client:
        client.get("/rest/api/3/myself")
        clock.now += 3600 - 30
        client.get("/rest/api/3/myself")
    assert len(server.refresh_bodies) == 2
    assert server.api_calls == 2  # refreshed ahead of time, so no 401 round trip


def test_invalid_grant_says_that_consent_is_needed_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = RotatingServer(first_refresh_token="rt-9")
    store = MemoryTokenStore({STORE_KEY: "rt-dead-0123456789"})
    system = unique_system()
    with api_client(server, rotating(server, store, system=system)) as client, \
            pytest.raises(AuthenticationFailed) as caught:
        client.get("/rest/api/3/myself")
    message = str(caught.value)
    assert "invalid_grant" in message
    assert f"ml-connector auth {system}" in message
    for secret in ("rt-dead-0123456789", CLIENT_SECRET):
        assert secret not in message
        assert secret not in caplog.text


def test_a_missing_refresh_token_says_that_consent_is_needed() -> None:
    server = RotatingServer()
    system = unique_system()
    with api_client(server, rotating(server, MemoryTokenStore(), system=system)) as client, \
            pytest.raises(AuthenticationFailed, match=f"ml-connector auth {system}"):
        client.get("/rest/api/3/myself")
    assert server.refresh_bodies == []


def test_a_token_rotated_meanwhile_by_another_process_is_not_overwritten(caplog: pytest.LogCaptureFixture) -> None:
    server = RotatingServer()
    store = MemoryTokenStore({STORE_KEY: "rt-1"})

    def other_process_rotates_first(request: httpx.Request) -> httpx.Response:
        response = server(request)
        if request.url.path == "/oauth/token":
            store.save(STORE_KEY, "rt-from-elsewhere")
        return response

    auth = RotatingRefreshTokenAuth(
        "https://auth.example.test/oauth/token", "client-1", CLIENT_SECRET, store=store, store_key=STORE_KEY,
        transport=httpx.MockTransport(other_process_rotates_first), system=unique_system(),
    )
    with api_client(server, auth) as client:
        assert client.get("/rest/api/3/myself").status_code == 200
    assert store.load(STORE_KEY) == "rt-from-elsewhere"
    assert "another process rotated" in caplog.text


def test_the_repr_of_rotating_auth_hides_the_secret() -> None:
    auth = rotating(RotatingServer(), MemoryTokenStore({STORE_KEY: "rt-1"}))
    assert CLIENT_SECRET not in repr(auth)
    assert "rt-1" not in repr(auth)


# --- static tokens ---------------------------------------------------------------------------------


def echo_authorization(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=request.headers.get("Authorization", ""))


@pytest.mark.parametrize(("scheme", "header"), [("Bearer", "Bearer pat-123"), (None, "pat-123")])
def test_a_static_token_is_sent_with_its_scheme_or_raw(scheme: str | None, header: str) -> None:
    with api_client(echo_authorization, StaticTokenAuth("pat-123", scheme=scheme)) as client:
        assert client.get("/v2").text == header


def test_a_static_token_never_shows_in_its_repr() -> None:
    assert "pat-123" not in repr(StaticTokenAuth("pat-123"))


def test_an_empty_static_token_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="non-empty token"):
        StaticTokenAuth("")
