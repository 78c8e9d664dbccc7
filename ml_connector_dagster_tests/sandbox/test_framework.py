"""The sandbox framework: inspection endpoints, masking, faults and webhook deliveries."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector_dagster.sandbox.delivery import WebhookDispatcher
from ml_connector_dagster.sandbox.framework import FaultPlan, RateWindow, SandboxClock, Simulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster.sandbox.transport import InProcessTransport


class NotesSimulator(Simulator):
    """A minimal vendor: a token endpoint and one collection of notes."""

    name = "notes"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.notes: list[dict] = []

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/token", self._token, methods=["POST"]),
            Route("/notes", self._notes, methods=["GET", "POST"]),
        ]

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("client_secret") != "s3cret-value":
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        return JSONResponse({"access_token": self.issue_token("access", "demo", 3600).value})

    async def _notes(self, request: Request) -> Response:
        if request.method == "POST":
            with self.lock:
                self.notes.append(await request.json())
            return JSONResponse({"id": len(self.notes)}, status_code=201)
        return JSONResponse(self.notes)

    def collections(self) -> dict:
        return {"notes": self.notes}

    def credentials(self) -> dict:
        return {"client_secret": "s3cret-value"}


@pytest.fixture
def sim() -> NotesSimulator:
    return NotesSimulator()


@pytest.fixture
def client(sim: NotesSimulator) -> Iterator[httpx.Client]:
    transport = InProcessTransport(sim.app)
    with httpx.Client(transport=transport, base_url="http://notes.sandbox") as http:
        yield http
    transport.close()


def test_state_endpoint_shows_stored_collections(client: httpx.Client) -> None:
    client.post("/notes", json={"text": "hello"})
    assert client.get("/_sandbox/state").json() == {"notes": [{"text": "hello"}]}


def test_recorded_requests_mask_authorization_and_secret_form_fields(client: httpx.Client) -> None:
    client.post("/token", data={"grant_type": "client_credentials", "client_secret": "s3cret-value"})
    client.get("/notes", headers={"Authorization": "Bearer abc.def"}, params={"page": "2"})
    recorded = client.get("/_sandbox/requests").json()
    assert recorded[0]["body"] == {"grant_type": "client_credentials", "client_secret": "***"}
    assert recorded[1]["headers"]["authorization"] == "Bearer ***"
    assert recorded[1]["query"] == {"page": "2"}
    assert "s3cret-value" not in str(recorded) and "abc.def" not in str(recorded)


def test_inspection_requests_are_not_recorded(client: httpx.Client) -> None:
    client.get("/_sandbox/state")
    assert client.get("/_sandbox/requests").json() == []


def test_rate_limit_burst_answers_429_with_retry_after_then_recovers(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"rate_limit_burst": 2, "retry_after_s": 3})
    statuses = [client.get("/notes") for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["retry-after"] == "3"


def test_timeout_after_apply_raises_read_timeout_but_keeps_the_write(
    sim: NotesSimulator, client: httpx.Client
) -> None:
    sim.set_faults(FaultPlan(timeout_after_rate=1.0, methods=["POST"]))
    with pytest.raises(httpx.ReadTimeout):
        client.post("/notes", json={"text": "applied"})
    assert sim.notes == [{"text": "applied"}]


def test_timeout_before_apply_loses_the_write(sim: NotesSimulator, client: httpx.Client) -> None:
    sim.set_faults(FaultPlan(timeout_before_rate=1.0))
    with pytest.raises(httpx.ReadTimeout):
        client.post("/notes", json={"text": "lost"})
    assert sim.notes == []


def test_faults_limited_to_matching_paths(sim: NotesSimulator, client: httpx.Client) -> None:
    sim.set_faults(FaultPlan(error_rate=1.0, paths=[r"^/notes$"]))
    assert client.get("/notes").status_code == 503
    assert client.post("/token", data={"client_secret": "s3cret-value"}).status_code == 200


def test_fault_draws_are_reproducible_from_the_seed() -> None:
    def outcomes(seed: int) -> list[int]:
        sim = NotesSimulator()
        sim.set_faults(FaultPlan(seed=seed, error_rate=0.5))
        with httpx.Client(transport=InProcessTransport(sim.app), base_url="http://x") as http:
            return [http.get("/notes").status_code for _ in range(20)]

    assert outcomes(7) == outcomes(7)
    assert outcomes(7) != outcomes(8)


def test_invalid_fault_plan_is_refused_with_the_field_named(client: httpx.Client) -> None:
    response = client.post("/_sandbox/faults", json={"error_rate": 3})
    assert response.status_code == 400
    assert "error_rate" in response.json()["error"]


def test_expire_tokens_fault_invalidates_issued_tokens(sim: NotesSimulator) -> None:
    token = sim.issue_token("access", "demo", 3600)
    assert sim.valid_token(token.value)
    sim.set_faults(FaultPlan(expire_tokens=True))
    assert sim.valid_token(token.value) is None
    assert sim.valid_token(sim.issue_token("access", "demo", 3600).value)


def test_tokens_expire_on_the_simulator_clock(sim: NotesSimulator) -> None:
    token = sim.issue_token("access", "demo", 60)
    sim.clock.advance(61)
    assert sim.valid_token(token.value) is None


def test_rate_window_counts_down_and_resets() -> None:
    clock = SandboxClock()
    window = RateWindow(limit=2, window_s=10, clock=clock)
    assert [window.hit()[0] for _ in range(3)] == [True, True, False]
    clock.advance(10)
    assert window.hit() == (True, 1, 10.0)


def test_served_simulator_answers_on_loopback() -> None:
    with served(NotesSimulator()) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.base_url}/notes").json() == []


def test_a_served_reset_drops_the_connection_without_an_answer_or_the_write() -> None:
    sim = NotesSimulator()
    with served(sim) as server:
        sim.set_faults(FaultPlan(reset_rate=1.0))
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            httpx.post(f"{server.base_url}/notes", json={"text": "lost"}, timeout=5)
        sim.clear_faults()
        assert httpx.get(f"{server.base_url}/notes", timeout=5).json() == []


class _Receiver:
    """A webhook target that fails its first ``failures`` deliveries."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        self.headers: list[httpx.Headers] = []
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if self.failures:
                self.failures -= 1
                return httpx.Response(500)
            self.bodies.append(request.content)
            self.headers.append(request.headers)
        return httpx.Response(200)


def _dispatcher(sim: Simulator, receiver: _Receiver) -> WebhookDispatcher:
    def sign(body: bytes) -> dict[str, str]:
        return {"x-signature": base64.b64encode(body[:4]).decode()}

    sim.webhook_url = "http://receiver.local/webhooks/notes"
    return WebhookDispatcher(
        sim, sign, retry_delays_s=(1, 2), time_scale=0.001, transport=httpx.MockTransport(receiver.handle)
    )


def test_webhook_is_signed_and_retried_until_delivered(sim: NotesSimulator) -> None:
    receiver = _Receiver(failures=2)
    dispatcher = _dispatcher(sim, receiver)
    dispatcher.emit({"n": 1}, event_id="e1")
    assert dispatcher.flush(5)
    dispatcher.close()
    assert receiver.bodies == [b'{"n":1}']
    assert receiver.headers[0]["x-signature"]
    assert [d["outcome"] for d in sim.deliveries] == ["retrying", "retrying", "delivered"]


def test_webhook_gives_up_after_its_retry_schedule(sim: NotesSimulator) -> None:
    receiver = _Receiver(failures=10)
    dispatcher = _dispatcher(sim, receiver)
    dispatcher.emit({"n": 1}, event_id="e1")
    assert dispatcher.flush(5)
    dispatcher.close()
    assert sim.deliveries[-1]["outcome"] == "gave_up"
    assert receiver.bodies == []


def test_webhook_faults_drop_and_duplicate(sim: NotesSimulator) -> None:
    receiver = _Receiver()
    dispatcher = _dispatcher(sim, receiver)
    sim.set_faults(FaultPlan(webhook_drop_rate=1.0))
    dispatcher.emit({"n": 1}, event_id="dropped")
    sim.set_faults(FaultPlan(webhook_duplicate_rate=1.0))
    dispatcher.emit({"n": 2}, event_id="doubled")
    assert dispatcher.flush(5)
    dispatcher.close()
    assert receiver.bodies == [b'{"n":2}', b'{"n":2}']
    assert sim.deliveries[0]["outcome"] == "dropped"


def test_webhook_reorder_delivers_the_held_event_after_the_next(sim: NotesSimulator) -> None:
    receiver = _Receiver()
    dispatcher = _dispatcher(sim, receiver)
    sim.set_faults(FaultPlan(webhook_reorder_rate=1.0))
    dispatcher.emit({"n": 1}, event_id="first")
    dispatcher.emit({"n": 2}, event_id="second")
    assert dispatcher.flush(5)
    dispatcher.close()
    assert receiver.bodies == [b'{"n":2}', b'{"n":1}']


def test_a_closed_in_process_transport_leaves_no_thread_behind() -> None:
    async def app(scope: dict, receive: object, send: object) -> None:  # work in the loop's default executor
        import asyncio

        await asyncio.to_thread(lambda: None)
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    before = set(threading.enumerate())
    transport = InProcessTransport(app)
    with httpx.Client(transport=transport, base_url="http://x") as http:
        assert http.get("/").status_code == 204

    transport.close()

    assert [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive()] == []
