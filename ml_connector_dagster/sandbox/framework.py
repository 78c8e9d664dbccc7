"""The shared machinery of every sandbox simulator.

A simulator is an ASGI app (Starlette) that speaks one vendor's wire format. This module gives each
of them the same inspection endpoints, request recording with secrets masked, a controllable
clock, issued-token bookkeeping, a sliding rate window, and deterministic fault injection:

- ``GET  /_sandbox/state``        the stored objects, as the vendor API would return them
- ``GET  /_sandbox/requests``     every request received (secrets masked); ``DELETE`` clears it
- ``GET  /_sandbox/credentials``  the demo credentials the simulator accepts
- ``POST /_sandbox/faults``       install a :class:`FaultPlan` (``DELETE`` removes it)
- ``GET  /_sandbox/deliveries``   the webhook deliveries it attempted

Faults are decided by a seeded RNG, so a failing schedule is reproducible from its seed. Every fault
a simulator injects is counted by kind in ``fault_counts`` (shown in ``GET /_sandbox/faults``), so a
chaos run can say what it survived.

A simulator is also a tenant that can outlive its process: :meth:`Simulator.save_state` writes the
attributes named in ``state_attributes`` to a file, :meth:`Simulator.restore_state` reads them back
into a fresh instance built with the same settings (anything else starts fresh, with a warning).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import random
import re
import secrets as secrets_module
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MASK = "***"
# Header names whose values are credentials or signatures in at least one vendor's protocol.
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|signature|api-?key|password", re.I)
_SECRET_FIELDS = frozenset(
    {"client_secret", "refresh_token", "access_token", "password", "code", "token", "secret", "api_key"}
)
FAULT_HEADER = "x-sandbox-fault"
# The envelope of a state file; a simulator's own ``state_version`` versions what is inside.
STATE_FORMAT = 1

logger = logging.getLogger(__name__)


class FaultPlan(BaseModel):
    """What can go wrong, and how often. Posted to ``/_sandbox/faults``; deterministic under ``seed``."""

    seed: int = 0
    latency_ms: float = Field(0, ge=0, description="Added to every request.")
    latency_jitter_ms: float = Field(0, ge=0)
    error_rate: float = Field(0, ge=0, le=1, description="Probability of a 5xx answer (nothing applied).")
    error_status: int = Field(503, ge=500, le=599)
    rate_limit_burst: int = Field(0, ge=0, description="The next N requests answer 429.")
    retry_after_s: float = Field(1, ge=0)
    timeout_before_rate: float = Field(0, ge=0, le=1, description="Hang without applying the request.")
    timeout_after_rate: float = Field(0, ge=0, le=1, description="Apply the request, then hang.")
    reset_rate: float = Field(0, ge=0, le=1, description="Drop the connection without applying.")
    hang_s: float = Field(31, ge=0, description="How long a served simulator hangs on a timeout fault.")
    expire_tokens: bool = Field(False, description="Every access token issued so far stops working now.")
    revoke_refresh_tokens: bool = Field(
        False, description="Every refresh token issued so far is revoked now (the user withdrew the app's access): "
        "only a new consent brings the client back.",
    )
    etag_race_rate: float = Field(
        0, ge=0, le=1, description="A conditional write (If-Match) meets a concurrent edit that landed just before "
        "it, and answers 412 (vendors with ETags).",
    )
    search_index_delay_s: float | None = Field(
        None, ge=0, description="While installed, a write stays invisible to search this long (vendors with a "
        "search index).",
    )
    action_interrupt_rate: float = Field(
        0, ge=0, le=1, description="A long-running action (Acumatica Release/Approve) is interrupted half-way: it "
        "fails without changing the document (vendors with actions).",
    )
    webhook_drop_rate: float = Field(0, ge=0, le=1)
    webhook_duplicate_rate: float = Field(0, ge=0, le=1)
    webhook_reorder_rate: float = Field(0, ge=0, le=1)
    paths: list[str] = Field(default_factory=list, description="Regexes; faults apply only to matching paths.")
    methods: list[str] = Field(default_factory=list, description="Faults apply only to these methods.")


class RecordedRequest(BaseModel):
    """One request as the simulator received it, secrets masked."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any = None
    received_at: datetime


@dataclass
class IssuedToken:
    """An access or refresh token the simulator handed out."""

    value: str = field(repr=False)
    kind: str
    subject: str
    issued_at: float
    expires_at: float | None
    scopes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    revoked_at: float | None = None


class SandboxClock:
    """Wall-clock UTC, shiftable by tests (``advance``) so expiry can be exercised without waiting."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    @property
    def offset(self) -> float:
        """Seconds this clock runs ahead of the wall clock."""
        return self._offset

    @offset.setter
    def offset(self, seconds: float) -> None:
        self._offset = float(seconds)


class RateWindow:
    """A fixed-window request counter: what ``X-RateLimit-*`` headers report."""

    def __init__(self, limit: int, window_s: float, clock: SandboxClock) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._window_start = clock.time()
        self._count = 0
        self._lock = threading.Lock()

    def hit(self) -> tuple[bool, int, float]:
        """Count one request; return (allowed, remaining, seconds until the window resets)."""
        with self._lock:
            now = self._clock.time()
            if now - self._window_start >= self.window_s:
                self._window_start, self._count = now, 0
            reset = max(0.0, self.window_s - (now - self._window_start))
            if self._count >= self.limit:
                return False, 0, reset
            self._count += 1
            return True, self.limit - self._count, reset


def mask_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header dict with credential-bearing values masked (the scheme word is kept for Authorization)."""
    masked: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if _SECRET_HEADER.search(name):
            scheme = value.split(" ", 1)[0] if name == "authorization" and " " in value else ""
            value = f"{scheme} {MASK}".strip()
        masked[name] = value
    return masked


def mask_body(body: Any) -> Any:
    """Recursively mask secret-named fields of a parsed body."""
    if isinstance(body, dict):
        return {k: (MASK if k.lower() in _SECRET_FIELDS else mask_body(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [mask_body(v) for v in body]
    return body


def parse_body(raw: bytes, content_type: str) -> Any:
    """Parse a request body the way the recorder shows it: JSON, form fields, or text."""
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return raw.decode("utf-8", "replace")


def query_dict(query_string: bytes) -> dict[str, Any]:
    """Query string as an object; a repeated parameter becomes a list."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in result:
            existing = result[key]
            result[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            result[key] = value
    return result


class Simulator:
    """Base of every vendor simulator.

    Subclasses set ``name`` and ``default_port``, implement :meth:`vendor_routes`, :meth:`collections`
    and :meth:`credentials`, and may override :meth:`rate_limited_response` / :meth:`server_error_response`
    to answer in their vendor's error shape.
    """

    name: ClassVar[str] = "sandbox"
    default_port: ClassVar[int] = 8800
    # The mutable attributes that make up the tenant, restored in this order (properties may stand
    # in for state that is kept in another shape). Locks, threads, dispatchers, the app, fault plans,
    # rate windows and the request/delivery recorders are not tenant state.
    state_attributes: ClassVar[tuple[str, ...]] = ("clock_offset_s", "tokens")
    # Bump when the shape of a simulator's state attributes changes: older files then start fresh.
    state_version: ClassVar[int] = 1

    def __init__(self, *, seed: int = 0, webhook_url: str | None = None) -> None:
        self.seed = seed
        self.webhook_url = webhook_url
        self.clock = SandboxClock()
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.deliveries: list[dict[str, Any]] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.fault_plan = FaultPlan()
        self._fault_rng = random.Random(0)
        self._burst_left = 0
        self._tokens_expired_at: float | None = None
        self.fault_counts: Counter[str] = Counter()
        # True when served on a socket: timeouts then hang for real instead of signalling the transport.
        self.served = False
        self._app: Starlette | None = None

    # -- to be provided by each vendor ---------------------------------------------------------
    def vendor_routes(self) -> list[BaseRoute]:
        """The vendor API's routes (auth endpoints included, at their real paths)."""
        raise NotImplementedError

    def collections(self) -> dict[str, Any]:
        """Stored objects by snake_case plural collection name, each record as the API returns it."""
        raise NotImplementedError

    def credentials(self) -> dict[str, Any]:
        """The demo credentials this simulator accepts."""
        raise NotImplementedError

    def secret_values(self) -> list[str]:
        """Every secret value the simulator knows (masked wherever it could be echoed)."""
        return [t.value for t in self.tokens.values()]

    def rate_limited_response(self, retry_after_s: float) -> Response:
        return JSONResponse(
            {"message": "Too many requests"},
            status_code=429,
            headers={"Retry-After": _seconds_header(retry_after_s)},
        )

    def server_error_response(self, status_code: int) -> Response:
        return JSONResponse({"message": "Service unavailable"}, status_code=status_code)

    def close(self) -> None:
        """Stop background work (webhook deliveries); subclasses with threads extend this."""

    # -- persistence ---------------------------------------------------------------------------
    @property
    def clock_offset_s(self) -> float:
        """How far the simulator's clock runs ahead of the wall clock (persisted with the tenant)."""
        return self.clock.offset

    @clock_offset_s.setter
    def clock_offset_s(self, seconds: float) -> None:
        self.clock.offset = seconds

    def state_identity(self) -> dict[str, Any]:
        """The constructor settings a saved tenant must share with this instance to be restored into it.

        Values are compared, never shown: a mismatch warning names the settings only.
        """
        return {"seed": self.seed}

    def save_state(self, path: Path) -> None:
        """Write the tenant (``state_attributes``) to ``path`` atomically: a crash leaves the old file."""
        with self.lock:
            envelope = {
                "format": STATE_FORMAT,
                "simulator": self.name,
                "version": self.state_version,
                "identity": self.state_identity(),
                "state": {attribute: getattr(self, attribute) for attribute in self.state_attributes},
            }
            payload = pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)
        _write_atomically(path, payload)

    def restore_state(self, path: Path) -> bool:
        """Load the tenant saved at ``path``; False (and a fresh tenant) when there is none to use.

        A file that is unreadable, of another simulator or version, or saved with other settings is
        left alone with a warning: the sandbox starts fresh rather than refusing to start.
        """
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.warning("sandbox %s: cannot read %s (%s); starting fresh", self.name, path, exc.strerror)
            return False
        try:
            envelope = pickle.loads(raw)  # noqa: S301 - the sandbox's own file, written by save_state
            problem = self._state_problem(envelope)
        except Exception as exc:  # noqa: BLE001 - any damage to the file means "start fresh"
            problem = f"unreadable ({type(exc).__name__})"
        if problem is not None:
            logger.warning("sandbox %s: saved state %s is %s; starting fresh", self.name, path, problem)
            return False
        with self.lock:
            current = {attribute: getattr(self, attribute) for attribute in self.state_attributes}
            try:
                for attribute in self.state_attributes:
                    setattr(self, attribute, envelope["state"][attribute])
            except Exception as exc:  # noqa: BLE001 - half a tenant is worse than a fresh one
                for attribute, value in current.items():
                    setattr(self, attribute, value)
                logger.warning("sandbox %s: saved state %s does not fit (%s); starting fresh",
                               self.name, path, type(exc).__name__)
                return False
        return True

    def _state_problem(self, envelope: Any) -> str | None:
        """Why ``envelope`` cannot be restored into this instance, or None."""
        if not isinstance(envelope, dict) or envelope.get("format") != STATE_FORMAT:
            return "not a sandbox state file of this format"
        if envelope.get("simulator") != self.name:
            return f"of the {envelope.get('simulator')!r} simulator"
        if envelope.get("version") != self.state_version:
            return f"of state version {envelope.get('version')!r}, not {self.state_version}"
        saved, mine = envelope.get("identity") or {}, self.state_identity()
        differing = sorted(key for key in saved.keys() | mine.keys() if saved.get(key) != mine.get(key))
        if differing:
            return f"saved with other settings ({', '.join(differing)})"
        if not isinstance(envelope.get("state"), dict):
            return "missing its state"
        return None

    # -- shared helpers for vendors ------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def issue_token(
        self,
        kind: str,
        subject: str,
        ttl_s: float | None,
        *,
        scopes: Iterable[str] = (),
        prefix: str = "",
        **extra: Any,
    ) -> IssuedToken:
        """Mint an opaque token and remember it."""
        now = self.clock.time()
        token = IssuedToken(
            value=prefix + secrets_module.token_urlsafe(24),
            kind=kind,
            subject=subject,
            issued_at=now,
            expires_at=None if ttl_s is None else now + ttl_s,
            scopes=tuple(scopes),
            extra=dict(extra),
        )
        with self.lock:
            self.tokens[token.value] = token
        return token

    def valid_token(self, value: str | None, kind: str = "access") -> IssuedToken | None:
        """The token if it was issued, is of ``kind``, not revoked, not expired, not killed by a fault."""
        if not value:
            return None
        token = self.tokens.get(value)
        now = self.clock.time()
        if token is None or token.kind != kind or token.revoked_at is not None:
            return None
        if token.expires_at is not None and now >= token.expires_at:
            return None
        # ``expire_tokens`` models access tokens dying early; refresh tokens must survive it, or the
        # client could never recover by refreshing.
        expired_early = self._tokens_expired_at is not None and token.issued_at <= self._tokens_expired_at
        if expired_early and token.kind != "refresh":
            return None
        return token

    def revoke_token(self, value: str) -> None:
        with self.lock:
            token = self.tokens.get(value)
            if token is not None and token.revoked_at is None:
                token.revoked_at = self.clock.time()

    def revoke_refresh_tokens(self) -> int:
        """Revoke every live refresh token (a user withdrawing the app's access); how many were live."""
        with self.lock:
            live = [t.value for t in self.tokens.values() if t.kind == "refresh" and t.revoked_at is None]
            for value in live:
                self.revoke_token(value)
            return len(live)

    # -- faults --------------------------------------------------------------------------------
    def set_faults(self, plan: FaultPlan) -> None:
        """Install a fault plan (replacing the previous one); its seed restarts the RNG."""
        with self.lock:
            self.fault_plan = plan
            self._fault_rng = random.Random(plan.seed)
            self._burst_left = plan.rate_limit_burst
            if plan.expire_tokens:
                self._tokens_expired_at = self.clock.time()
                self.count_fault("token_expiry")
            if plan.revoke_refresh_tokens and self.revoke_refresh_tokens():
                self.count_fault("refresh_token_revoked")

    def count_fault(self, kind: str) -> None:
        """Count one injected fault of ``kind`` (what ``GET /_sandbox/faults`` reports)."""
        with self.lock:
            self.fault_counts[kind] += 1

    def clear_faults(self) -> None:
        self.set_faults(FaultPlan())

    def fault_roll(self, probability: float, kind: str | None = None) -> bool:
        """One deterministic draw from the fault RNG; a hit is counted under ``kind`` when given."""
        if probability <= 0:
            return False
        with self.lock:
            hit = self._fault_rng.random() < probability
            if hit and kind is not None:
                self.fault_counts[kind] += 1
            return hit

    def _faults_apply_to(self, method: str, path: str) -> bool:
        plan = self.fault_plan
        if plan.methods and method.upper() not in {m.upper() for m in plan.methods}:
            return False
        return not plan.paths or any(re.search(p, path) for p in plan.paths)

    # -- the ASGI app --------------------------------------------------------------------------
    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            routes = [
                Route("/_sandbox/state", self._state_endpoint, methods=["GET"]),
                Route("/_sandbox/requests", self._requests_endpoint, methods=["GET", "DELETE"]),
                Route("/_sandbox/credentials", self._credentials_endpoint, methods=["GET"]),
                Route("/_sandbox/faults", self._faults_endpoint, methods=["GET", "POST", "DELETE"]),
                Route("/_sandbox/deliveries", self._deliveries_endpoint, methods=["GET"]),
                *self.vendor_routes(),
            ]
            self._app = Starlette(routes=routes)
        return _FaultAndRecordMiddleware(self._app, self)

    async def _state_endpoint(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse(json.loads(json.dumps(self.collections(), default=str)))

    async def _requests_endpoint(self, request: Request) -> Response:
        with self.lock:
            if request.method == "DELETE":
                self.requests.clear()
                return Response(status_code=204)
            return JSONResponse([r.model_dump(mode="json") for r in self.requests])

    async def _credentials_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.credentials())

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                plan = FaultPlan.model_validate(await request.json())
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            self.set_faults(plan)
        elif request.method == "DELETE":
            self.clear_faults()
        with self.lock:
            return JSONResponse({**self.fault_plan.model_dump(), "injected": dict(self.fault_counts)})

    async def _deliveries_endpoint(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse(json.loads(json.dumps(self.deliveries, default=str)))


def _write_atomically(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` in one rename (readers see the old or the new file, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: a private (0600) file with a unique name, so concurrent saves never share one.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _seconds_header(seconds: float) -> str:
    return str(max(0, int(seconds + 0.999)))


class _FaultAndRecordMiddleware:
    """Records every vendor request (masked) and applies the installed fault plan around it."""

    def __init__(self, app: ASGIApp, simulator: Simulator) -> None:
        self.app = app
        self.sim = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox/"):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        sim = self.sim
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=query_dict(scope.get("query_string", b"")),
            headers=mask_headers(headers),
            body=mask_body(parse_body(raw, content_type)),
            received_at=sim.now(),
        )
        with sim.lock:
            sim.requests.append(record)
        replay = _replay_receive(raw)
        plan = sim.fault_plan
        if not sim._faults_apply_to(scope["method"], scope["path"]):
            await self.app(scope, replay, send)
            return
        if plan.latency_ms or plan.latency_jitter_ms:
            jitter = sim._fault_rng.uniform(-plan.latency_jitter_ms, plan.latency_jitter_ms)
            await asyncio.sleep(max(0.0, plan.latency_ms + jitter) / 1000)
        with sim.lock:
            burst = sim._burst_left > 0
            if burst:
                sim._burst_left -= 1
                sim.fault_counts["rate_limit_429"] += 1
        if burst:
            await sim.rate_limited_response(plan.retry_after_s)(scope, replay, send)
            return
        if sim.fault_roll(plan.reset_rate, "connection_reset"):
            await self._reset(send)
            return
        if sim.fault_roll(plan.timeout_before_rate, "timeout_before_apply"):
            await self._hang_or_signal(send, "timeout")
            return
        if sim.fault_roll(plan.error_rate, "server_error_5xx"):
            await sim.server_error_response(plan.error_status)(scope, replay, send)
            return
        if sim.fault_roll(plan.timeout_after_rate, "timeout_after_apply"):
            # The write is applied; only the answer is lost.
            await self.app(scope, replay, _discard)
            await self._hang_or_signal(send, "timeout")
            return
        await self.app(scope, replay, send)

    async def _hang_or_signal(self, send: Send, kind: str) -> None:
        if self.sim.served:
            await asyncio.sleep(self.sim.fault_plan.hang_s)
        await self._signal(send, kind)

    async def _reset(self, send: Send) -> None:
        # Served, the connection really drops (the client sees no answer at all, as after a TCP reset):
        # an HTTP answer, even a 599, would be a response the client had to read. uvicorn's cycle owns
        # the socket; once the loop has seen the close, returning without a response logs nothing.
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if not self.sim.served or transport is None:
            await self._signal(send, "reset")
            return
        transport.close()
        for _ in range(3):
            await asyncio.sleep(0)

    @staticmethod
    async def _signal(send: Send, kind: str) -> None:
        # In-process, InProcessTransport turns this marker into the httpx exception a real client would
        # see; served, a client has normally given up long before it arrives.
        await send({"type": "http.response.start", "status": 599, "headers": [(FAULT_HEADER.encode(), kind.encode())]})
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay_receive(raw: bytes) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


async def _discard(message: Message) -> None:
    return None


def utc_iso(moment: datetime) -> str:
    """ISO 8601 with milliseconds and explicit offset, as most vendors write timestamps."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


__all__ = [
    "FAULT_HEADER",
    "MASK",
    "FaultPlan",
    "IssuedToken",
    "RateWindow",
    "RecordedRequest",
    "STATE_FORMAT",
    "SandboxClock",
    "Simulator",
    "mask_body",
    "mask_headers",
    "parse_body",
    "query_dict",
    "utc_iso",
]
