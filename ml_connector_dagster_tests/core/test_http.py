"""Specification of core/http.py: retries, the shared rate budget, errors and redaction."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import (
    DEFAULT_TIMEOUT,
    ApiError,
    AuthenticationFailed,
    ClientError,
    Conflict,
    KeyedRateLimiter,
    NotFound,
    PreconditionFailed,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    ServerError,
    TransportFailure,
    build_http_client,
    concurrent_pages,
    pipelined_pages,
    raise_for_api_error,
    rate_cost,
    rate_limiter_for,
    redact,
    redact_headers,
    retry_after_seconds,
    retry_safe,
)

SECRET = "s3cr3t-Value-9f8e7d"


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def unique_system() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def scripted(*outcomes: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
    """A MockTransport answering with ``outcomes`` in turn (the last one repeats); records requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # A snapshot: the auth layer mutates and re-sends the same Request object.
        seen.append(httpx.Request(request.method, request.url, headers=request.headers.copy(), content=request.read()))
        outcome = outcomes[min(len(seen), len(outcomes)) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        if callable(outcome):
            return outcome(request)
        return httpx.Response(outcome.status_code, headers=outcome.headers, content=outcome.content)

    return httpx.MockTransport(handler), seen


def client_for(transport: httpx.BaseTransport, fake_time: FakeTime, **kwargs) -> httpx.Client:
    limiter = RateLimiter(1000, 1000, clock=fake_time.clock, wall_clock=fake_time.wall, sleep=fake_time.sleep)
    kwargs.setdefault("retry", RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=60))
    return build_http_client(
        unique_system(), "https://api.example.test", transport=transport, rate_limiter=limiter,
        sleep=fake_time.sleep, **kwargs,
    )


# --- retries ---------------------------------------------------------------------------------------


def test_429_is_retried_no_sooner_than_retry_after(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200))
    with client_for(transport, fake_time) as client:
        response = client.get("/v1/invoices")
    assert response.status_code == 200
    assert len(seen) == 2
    assert fake_time.sleeps == [7.0]


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    in_90_s = format_datetime(datetime(2026, 11, 20, 10, 1, 30, tzinfo=UTC), usegmt=True)
    as_date = httpx.Response(429, headers={"Retry-After": in_90_s})
    as_seconds = httpx.Response(429, headers={"Retry-After": "12"})
    assert retry_after_seconds(as_date, now=now.timestamp) == pytest.approx(90)
    assert retry_after_seconds(as_seconds) == 12


def test_a_retry_after_beyond_the_policy_goes_to_the_caller_as_rate_limited(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "3600"}))
    with client_for(transport, fake_time, retry=RetryPolicy(max_retry_after_s=300)) as client:
        response = client.get("/v1/invoices")
    assert len(seen) == 1
    with pytest.raises(RateLimited) as caught:
        raise_for_api_error(response, "visma")
    assert caught.value.retry_after_s == 3600


def test_5xx_backoff_grows_exponentially_within_the_jitter_bounds(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(503))
    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=60)
    with client_for(transport, fake_time, retry=policy) as client:
        response = client.get("/v1/invoices")
    assert response.status_code == 503
    assert len(seen) == 5
    assert len(fake_time.sleeps) == 4
    for attempt, delay in enumerate(fake_time.sleeps, start=1):
        ceiling = 2.0 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


def test_a_5xx_still_failing_after_the_retries_raises_server_error(fake_time: FakeTime) -> None:
    transport, _ = scripted(httpx.Response(502, text="bad gateway"))
    with client_for(transport, fake_time, retry=RetryPolicy(max_attempts=2)) as client:
        response = client.get("/v1/invoices")
    with pytest.raises(ServerError, match="502"):
        raise_for_api_error(response, "visma")


@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.01, max_value=10),
    cap=st.floats(min_value=0.01, max_value=120),
)
def test_backoff_stays_between_half_and_all_of_its_capped_ceiling(attempt: int, base: float, cap: float) -> None:
    policy = RetryPolicy(base_delay_s=base, max_delay_s=cap)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= policy.backoff_s(attempt) <= ceiling


def test_backoff_without_jitter_is_exactly_the_ceiling() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3, jitter=False)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_connection_errors_are_retried_until_the_server_answers(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200))
    with client_for(transport, fake_time) as client:
        response = client.get("/v1/invoices")
    assert response.status_code == 200
    assert len(seen) == 3
    assert len(fake_time.sleeps) == 2


def test_transport_errors_after_every_attempt_raise_transport_failure(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.ReadTimeout("slow"))
    with client_for(transport, fake_time, retry=RetryPolicy(max_attempts=3)) as client, \
            pytest.raises(TransportFailure) as caught:
        client.get("/v1/invoices")
    assert len(seen) == 3
    assert caught.value.may_have_been_applied
    assert "ReadTimeout after 3 attempt(s)" in str(caught.value)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_requests_are_not_retried_on_5xx(fake_time: FakeTime, method: str) -> None:
    transport, seen = scripted(httpx.Response(503), httpx.Response(201))
    with client_for(transport, fake_time) as client:
        response = client.request(method, "/rest/api/3/issue", json={"fields": {}})
    assert response.status_code == 503
    assert len(seen) == 1


def test_non_idempotent_requests_are_not_retried_on_429(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(201))
    with client_for(transport, fake_time) as client:
        response = client.post("/rest/api/3/issue", json={"fields": {}})
    assert response.status_code == 429
    assert len(seen) == 1


def test_a_post_marked_retry_safe_is_retried_with_the_same_body(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(503), httpx.Response(200))
    with client_for(transport, fake_time) as client:
        response = client.post("/rest/api/3/search/jql", json={"jql": "project = FIN"}, extensions=retry_safe())
    assert response.status_code == 200
    assert [r.content for r in seen] == [b'{"jql":"project = FIN"}'] * 2


def test_a_post_whose_connection_failed_is_retried_because_nothing_was_sent(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.ConnectError("refused"), httpx.Response(201))
    with client_for(transport, fake_time) as client:
        response = client.post("/rest/api/3/issue", json={"fields": {}})
    assert response.status_code == 201
    assert len(seen) == 2


def test_client_errors_are_returned_at_once(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(400, json={"errors": {"description": "ADF required"}}))
    with client_for(transport, fake_time) as client:
        response = client.get("/v1/invoices")
    assert len(seen) == 1
    assert fake_time.sleeps == []
    with pytest.raises(ClientError, match="ADF required"):
        raise_for_api_error(response, "jira")


class RefreshOn401(httpx.Auth):
    """A minimal token-refreshing auth flow, to show that it composes with the retries."""

    def __init__(self) -> None:
        self.token = "old"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self.token = "new"
            request.headers["Authorization"] = "Bearer new"
            yield request


def test_an_auth_flow_refreshes_on_401_above_the_retries(fake_time: FakeTime) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.headers["Authorization"] == "Bearer new" else 401)

    transport, seen = scripted(httpx.Response(503), api)
    with client_for(transport, fake_time, auth=RefreshOn401()) as client:
        response = client.get("/v1/invoices")
    assert response.status_code == 200
    assert [r.headers["Authorization"] for r in seen] == ["Bearer old", "Bearer old", "Bearer new"]


def test_the_default_timeout_is_explicit_on_every_phase(fake_time: FakeTime) -> None:
    transport, _ = scripted(httpx.Response(200))
    with client_for(transport, fake_time) as client:
        assert client.timeout == DEFAULT_TIMEOUT
    assert None not in (DEFAULT_TIMEOUT.connect, DEFAULT_TIMEOUT.read, DEFAULT_TIMEOUT.write, DEFAULT_TIMEOUT.pool)


# --- over the wire: real sockets on 127.0.0.1 ------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_read_timeout_on_a_post_surfaces_without_a_retry(
    silent_server: tuple[int, list[socket.socket]], fake_time: FakeTime
) -> None:
    port, accepted = silent_server
    timeout = httpx.Timeout(connect=1.0, read=0.2, write=1.0, pool=1.0)
    limiter = RateLimiter(1000, 1000, sleep=fake_time.sleep)
    with build_http_client(
        unique_system(), f"http://127.0.0.1:{port}", timeout=timeout, rate_limiter=limiter, sleep=fake_time.sleep
    ) as client, pytest.raises(TransportFailure) as caught:
        client.post("/entity/Default/24.200.001/Bill/ReleaseBill", json={"entity": {}})
    assert caught.value.may_have_been_applied
    assert "may have been applied" in str(caught.value)
    assert len(accepted) == 1
    assert fake_time.sleeps == []


def test_a_refused_connection_is_retried_then_raises_transport_failure(fake_time: FakeTime) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    limiter = RateLimiter(1000, 1000, sleep=fake_time.sleep)
    with build_http_client(
        unique_system(), f"http://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=3),
        rate_limiter=limiter, sleep=fake_time.sleep,
    ) as client, pytest.raises(TransportFailure) as caught:
        client.get("/v1/invoices")
    assert not caught.value.may_have_been_applied
    assert len(fake_time.sleeps) == 2


# --- rate limiting ---------------------------------------------------------------------------------


def test_rate_limiter_for_returns_one_limiter_per_system() -> None:
    system = unique_system()
    assert rate_limiter_for(system) is rate_limiter_for(system)
    assert rate_limiter_for(system) is not rate_limiter_for(unique_system())


def test_rate_limiter_for_reconfigures_the_shared_limiter_instead_of_adding_a_budget() -> None:
    system = unique_system()
    first = rate_limiter_for(system)
    again = rate_limiter_for(system, rate_per_s=2.5, burst=3)
    assert again is first
    assert (first.rate_per_s, first.burst) == (2.5, 3)


def test_a_burst_passes_at_once_and_later_tokens_are_paced(fake_time: FakeTime) -> None:
    limiter = RateLimiter(2.0, 3, clock=fake_time.clock, sleep=fake_time.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits == [0, 0, 0, 0.5, 0.5]


def test_acquire_blocks_until_the_reset_once_no_quota_remains(fake_time: FakeTime) -> None:
    limiter = RateLimiter(100, 10, clock=fake_time.clock, wall_clock=fake_time.wall, sleep=fake_time.sleep)
    limiter.observe(httpx.Response(200, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}))
    assert limiter.acquire() == pytest.approx(30)
    assert limiter.acquire() == 0  # the quota was refilled at the reset


def test_remaining_quota_does_not_block(fake_time: FakeTime) -> None:
    limiter = RateLimiter(100, 10, clock=fake_time.clock, sleep=fake_time.sleep)
    limiter.observe(httpx.Response(200, headers={"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "30"}))
    assert limiter.acquire() == 0


def test_a_reset_given_as_unix_time_is_read_as_such(fake_time: FakeTime) -> None:
    limiter = RateLimiter(100, 10, clock=fake_time.clock, wall_clock=fake_time.wall, sleep=fake_time.sleep)
    reset_at = str(int(fake_time.wall() + 45))
    limiter.observe(httpx.Response(200, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset_at}))
    assert limiter.acquire() == pytest.approx(45)


def test_retry_after_blocks_every_later_acquire(fake_time: FakeTime) -> None:
    limiter = RateLimiter(100, 10, clock=fake_time.clock, wall_clock=fake_time.wall, sleep=fake_time.sleep)
    limiter.observe(httpx.Response(429, headers={"Retry-After": "12"}))
    assert limiter.acquire() == pytest.approx(12)


def test_concurrent_acquires_never_share_a_slot() -> None:
    frozen = FakeTime()
    limiter = RateLimiter(10.0, 1, clock=frozen.clock, sleep=lambda _: None)
    waits: list[float] = []
    lock = threading.Lock()

    def take(n: int) -> None:
        for _ in range(n):
            wait = limiter.acquire()
            with lock:
                waits.append(round(wait, 6))

    threads = [threading.Thread(target=take, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [round(i * 0.1, 6) for i in range(100)]


def test_a_request_counted_as_several_spends_that_many_tokens(fake_time: FakeTime) -> None:
    limiter = RateLimiter(10.0, 11, clock=fake_time.clock, sleep=fake_time.sleep)
    transport, _ = scripted(httpx.Response(200))
    with build_http_client(unique_system(), "https://api.example.test", transport=transport, rate_limiter=limiter,
                           sleep=fake_time.sleep) as client:  # fmt: skip
        for _ in range(3):
            client.post("/batch", json={}, extensions=rate_cost(11))
    # The burst pays for the first batch of 11; each next one waits for 11 tokens at 10/s.
    assert fake_time.sleeps == pytest.approx([1.1, 1.1])


def test_a_request_costing_more_than_the_burst_waits_for_the_tokens_beyond_it(fake_time: FakeTime) -> None:
    limiter = RateLimiter(2.0, 3, clock=fake_time.clock, sleep=fake_time.sleep)
    assert limiter.acquire(5) == pytest.approx(1.0)  # 3 at once, 2 more at 2/s
    assert limiter.acquire() == pytest.approx(0.5)


def test_a_keyed_limiter_gives_each_key_its_own_budget(fake_time: FakeTime) -> None:
    limiter = KeyedRateLimiter(10.0, 1, lambda request: request.url.path, clock=fake_time.clock, sleep=fake_time.sleep)
    bulk, move = httpx.Request("POST", "https://x.test/issue/bulk"), httpx.Request("POST", "https://x.test/transitions")

    assert limiter.for_request(bulk) is limiter.for_request(httpx.Request("POST", "https://x.test/issue/bulk"))
    waits = [limiter.for_request(r).acquire() for r in (bulk, move, bulk, move)]

    # The second bulk create waits its 0.1 s; the second transition, due as the first bulk's budget
    # refilled, waits for nothing: the keys never wait on each other.
    assert waits == pytest.approx([0, 0, 0.1, 0])


def test_a_retry_after_on_one_endpoint_holds_back_that_endpoint_only(fake_time: FakeTime) -> None:
    limiter = KeyedRateLimiter(100.0, 10, lambda request: request.url.path, clock=fake_time.clock,
                               wall_clock=fake_time.wall, sleep=fake_time.sleep)  # fmt: skip
    throttled = httpx.Request("POST", "https://x.test/transitions")
    limiter.for_request(throttled).observe(httpx.Response(429, headers={"Retry-After": "3"}, request=throttled))

    assert limiter.for_request(httpx.Request("POST", "https://x.test/issue/bulk")).acquire() == 0
    assert limiter.for_request(throttled).acquire() == pytest.approx(3)


def test_a_keyed_limiter_is_reconfigured_as_one_budget() -> None:
    system = unique_system()
    limiter = rate_limiter_for(system, 5.0, 2, per=lambda request: request.method)
    keyed = limiter.for_request(httpx.Request("GET", "https://x.test/a"))

    assert isinstance(limiter, KeyedRateLimiter) and rate_limiter_for(system, 50.0, 4) is limiter
    assert (keyed.rate_per_s, keyed.burst) == (50.0, 4)


def test_threads_sharing_a_keyed_budget_never_exceed_any_key() -> None:
    frozen = FakeTime()
    limiter = KeyedRateLimiter(20.0, 1, lambda request: request.url.path, clock=frozen.clock, sleep=lambda _: None)
    waits: dict[str, list[float]] = {"/a": [], "/b": []}
    lock = threading.Lock()

    def take(path: str) -> None:
        for _ in range(25):
            wait = limiter.for_request(httpx.Request("GET", f"https://x.test{path}")).acquire()
            with lock:
                waits[path].append(round(wait, 6))

    threads = [threading.Thread(target=take, args=(path,)) for path in ("/a", "/b") for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for taken in waits.values():  # 100 slots per key, 1/20 s apart: none shared, none early
        assert sorted(taken) == [round(i * 0.05, 6) for i in range(100)]


def test_clients_of_one_system_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(http, "default_sleep", slept.append)
    system = unique_system()
    exhausted, _ = scripted(httpx.Response(200, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}))
    fine, _ = scripted(httpx.Response(200))
    with build_http_client(system, "https://a.example.test", transport=exhausted) as first, \
            build_http_client(system, "https://a.example.test", transport=fine) as second:
        first.get("/v1/invoices")
        second.get("/v1/accounts")
    assert len(slept) == 1
    assert 29 < slept[0] <= 30


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, AuthenticationFailed), (403, AuthenticationFailed), (404, NotFound), (409, Conflict),
        (412, PreconditionFailed), (429, RateLimited), (400, ClientError), (422, ClientError),
        (500, ServerError), (503, ServerError),
    ],
)
def test_raise_for_api_error_maps_each_status_to_its_error(status: int, error_class: type[ApiError]) -> None:
    response = httpx.Response(status, request=httpx.Request("GET", "https://api.example.test/v1/x"))
    with pytest.raises(error_class) as caught:
        raise_for_api_error(response, "visma")
    assert (caught.value.system, caught.value.status_code, caught.value.method) == ("visma", status, "GET")


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_raise_for_api_error_accepts_non_error_statuses(status: int) -> None:
    response = httpx.Response(status, request=httpx.Request("GET", "https://api.example.test/v1/x"))
    assert raise_for_api_error(response, "visma") is None


def test_api_error_detail_is_a_short_excerpt_of_the_body() -> None:
    response = httpx.Response(
        400, text="x" * 5000, request=httpx.Request("GET", "https://api.example.test/v1/x")
    )
    with pytest.raises(ClientError) as caught:
        raise_for_api_error(response, "visma")
    assert len(caught.value.detail) <= 300


def test_an_error_never_carries_a_secret_from_url_body_or_credentials() -> None:
    request = httpx.Request("GET", f"https://api.example.test/v1/x?api_key={SECRET}&page=2")
    body = f'{{"error": "invalid_token", "token": "{SECRET}", "hint": "Bearer {SECRET}"}}'
    response = httpx.Response(401, text=body, request=request)
    with pytest.raises(AuthenticationFailed) as caught:
        raise_for_api_error(response, "jira")
    error = caught.value
    for text in (str(error), repr(error), error.url, error.detail):
        assert SECRET not in text
    assert "page=2" in error.url
    assert "invalid_token" in error.detail


def test_an_error_masks_secrets_passed_by_value() -> None:
    request = httpx.Request("GET", "https://api.example.test/v1/x")
    response = httpx.Response(500, text=f"echo: {SECRET}", request=request)
    with pytest.raises(ServerError) as caught:
        raise_for_api_error(response, "visma", secrets=[SECRET])
    assert SECRET not in str(caught.value)


# --- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["access_token", "client_secret", "refresh_token", "code", "password", "token", "api_key", "apikey"]
)
def test_redact_masks_secret_query_and_form_values(key: str) -> None:
    assert redact(f"https://x.test/cb?{key}={SECRET}&state=ok") == f"https://x.test/cb?{key}=***&state=ok"
    assert redact(f"grant_type=x&{key}={SECRET}") == f"grant_type=x&{key}=***"


@pytest.mark.parametrize("scheme", ["Bearer", "Basic", "bearer"])
def test_redact_masks_authorization_credentials(scheme: str) -> None:
    assert redact(f"Authorization: {scheme} {SECRET}") == f"Authorization: {scheme} ***"


def test_redact_masks_json_secret_fields_and_url_passwords() -> None:
    assert redact(f'{{"refresh_token": "{SECRET}", "expires_in": 3600}}') == '{"refresh_token": "***", "expires_in": 3600}'
    assert redact(f"postgresql://svc:{SECRET}@db/ledger") == "postgresql://svc:***@db/ledger"


def test_redact_masks_given_secrets_also_when_url_encoded() -> None:
    secret = "pa ss/wörd+1"
    text = f"raw {secret} quoted pa%20ss%2Fw%C3%B6rd%2B1 plus pa+ss%2Fw%C3%B6rd%2B1"
    assert redact(text, [secret]) == "raw *** quoted *** plus ***"


def test_redact_leaves_ordinary_parameters_alone() -> None:
    text = "/v1/supplierInvoice?pageNumber=2&zipcode=0150&currencyCode=NOK&lastModifiedDateTimeCondition=>"
    assert redact(text) == text


@given(
    key=st.sampled_from(["access_token", "refresh_token", "client_secret", "token", "password", "api_key", "id_token"]),
    value=st.text(alphabet=st.characters(categories=("L", "N"), codec="ascii") | st.sampled_from("-._~%"), min_size=1),
)
def test_redact_masks_any_value_of_a_secret_parameter(key: str, value: str) -> None:
    assert redact(f"?a=1&{key}={value}&b=2") == f"?a=1&{key}=***&b=2"


@given(secret=st.text(alphabet=st.characters(categories=("L", "N", "P")), min_size=4))
def test_redact_never_returns_a_given_secret(secret: str) -> None:
    assert secret not in redact(f"before {secret} after", [secret])


def test_redact_headers_masks_credentials_and_secret_looking_names() -> None:
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "Cookie": f"session={SECRET}",
        "Set-Cookie": f"session={SECRET}",
        "X-Api-Key": SECRET,
        "X-Hook-Secret": SECRET,
        "X-Hub-Signature": f"sha256={SECRET}",
        "X-Csrf-Token": SECRET,
        "Content-Type": "application/json",
        "X-RateLimit-Remaining": "10",
    }
    redacted = redact_headers(headers)
    assert SECRET not in str(redacted)
    assert redacted["Content-Type"] == "application/json"
    assert redacted["X-RateLimit-Remaining"] == "10"
    assert redacted["Authorization"] == "***"


def test_redact_headers_accepts_httpx_headers() -> None:
    assert redact_headers(httpx.Headers({"authorization": SECRET, "accept": "*/*"})) == {
        "authorization": "***", "accept": "*/*",
    }


def test_logs_show_method_url_status_and_attempt_but_never_a_secret(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport, _ = scripted(httpx.Response(503), httpx.Response(200))
    with client_for(transport, fake_time, secrets=[SECRET], headers={"X-Api-Key": SECRET}) as client:
        client.get(f"/v1/invoices?access_token={SECRET}&page=1", auth=httpx.BasicAuth("svc", SECRET))
    assert SECRET not in caplog.text
    debug = [r.getMessage() for r in caplog.records if r.name == "ml_connector.http" and r.levelno == logging.DEBUG]
    warnings = [r.getMessage() for r in caplog.records if r.name == "ml_connector.http" and r.levelno == logging.WARNING]
    assert debug == [
        "GET https://api.example.test/v1/invoices?access_token=***&page=1 -> 503 (attempt 1)",
        "GET https://api.example.test/v1/invoices?access_token=***&page=1 -> 200 (attempt 2)",
    ]
    assert len(warnings) == 1
    assert "retrying in" in warnings[0]


def test_building_a_client_keeps_the_httpx_logger_from_logging_urls(fake_time: FakeTime) -> None:
    transport, _ = scripted(httpx.Response(200))
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    with client_for(transport, fake_time):
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


# -- pipelined pages ---------------------------------------------------------------------------------


def _numbered_pages(last: int) -> Callable[[int], tuple[list[int], int | None]]:
    """A step over pages numbered 0..last whose items are [10 * n, 10 * n + 1]."""
    return lambda n: ([10 * n, 10 * n + 1], n + 1 if n < last else None)


def test_pipelined_pages_yield_every_page_in_order_and_stop_at_the_last() -> None:
    assert list(pipelined_pages(lambda n: n, 0, _numbered_pages(3), name="test")) == [
        [0, 1], [10, 11], [20, 21], [30, 31]]


def test_pipelined_pages_ask_for_the_next_page_while_the_caller_holds_this_one() -> None:
    asked = {n: threading.Event() for n in range(3)}

    def fetch(n: int) -> int:
        asked[n].set()
        return n

    pages = pipelined_pages(fetch, 0, _numbered_pages(2), name="test")
    assert next(pages) == [0, 1]
    assert asked[1].wait(5)  # the caller has not asked for page 1 yet
    assert not asked[2].is_set()  # one request ahead, no more
    assert list(pages) == [[10, 11], [20, 21]]


def test_pipelined_pages_skip_an_empty_page_and_go_on() -> None:
    def step(n: int) -> tuple[list[int], int | None]:
        return ([] if n == 1 else [n]), (n + 1 if n < 2 else None)

    assert list(pipelined_pages(lambda n: n, 0, step, name="test")) == [[0], [2]]


def test_a_failed_page_request_reaches_the_caller_after_the_pages_before_it() -> None:
    def fetch(n: int) -> int:
        if n == 2:
            raise ServerError("page 2: 503 Service Unavailable")
        return n

    pages = pipelined_pages(fetch, 0, _numbered_pages(5), name="test")
    assert next(pages) == [0, 1] and next(pages) == [10, 11]
    with pytest.raises(ServerError, match="page 2"):
        next(pages)


def test_concurrent_pages_deliver_every_page_of_every_walk_each_walk_in_order() -> None:
    walks = [(n * 100, (lambda start: lambda n: ([n], n + 1 if n < start + 4 else None))(n * 100)) for n in range(3)]
    pages = list(concurrent_pages(lambda n: n, walks, name="test"))
    assert sorted(page[0] for page in pages) == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104, 200, 201, 202, 203, 204]
    for start in (0, 100, 200):
        assert [p[0] for p in pages if start <= p[0] < start + 100] == list(range(start, start + 5))


def test_a_failed_walk_ends_the_concurrent_read_with_its_error() -> None:
    def fetch(n: int) -> int:
        if n == 102:
            raise ServerError("slice 2: 503 Service Unavailable")
        return n

    walks = [(n * 100, lambda n: ([n], n + 1 if n % 100 < 50 else None)) for n in range(3)]
    with pytest.raises(ServerError, match="slice 2"):
        list(concurrent_pages(fetch, walks, name="test"))


def test_closing_a_concurrent_read_early_stops_its_walks() -> None:
    fetched: list[int] = []

    def fetch(n: int) -> int:
        fetched.append(n)
        return n

    walks = [(n * 1000, lambda n: ([n], n + 1)) for n in range(2)]  # endless walks
    pages = concurrent_pages(fetch, walks, name="test")
    next(pages)
    pages.close()  # returns once both walks have stopped
    count = len(fetched)
    time.sleep(0.2)
    assert len(fetched) == count < 50
