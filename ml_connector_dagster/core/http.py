"""The one httpx client factory: explicit timeouts, retries, a shared rate budget, redaction.

Every vendor client is built with :func:`build_http_client`. Retries live in a wrapping transport
(:class:`RetryingTransport`), below httpx's auth layer, so an ``httpx.Auth`` flow (401 -> refresh the
token -> replay) still sees the final response of each attempt chain and composes with the retries.

Logging: this module logs to ``ml_connector.http`` with redacted URLs only. The ``httpx`` and
``httpcore`` loggers log full URLs (query strings included) at INFO/DEBUG, so
:func:`build_http_client` raises them to WARNING; never hand them to Dagster's managed loggers.

Tests replace the module-level :func:`default_sleep` (``monkeypatch.setattr(http, "default_sleep",
...)``) or pass ``sleep=`` so that nothing waits for real; the chaos harness also replaces
:func:`default_transport` to reach the simulators in-process from clients built deep inside Dagster ops.
"""

from __future__ import annotations

import email.utils
import logging
import math
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import pydantic

__all__ = [
    "DEFAULT_TIMEOUT",
    "ApiError",
    "AuthenticationFailed",
    "ClientError",
    "Conflict",
    "BudgetStore",
    "KeyedRateLimiter",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "RateLimiter",
    "RetryPolicy",
    "RetryingTransport",
    "ServerError",
    "TransportFailure",
    "build_http_client",
    "concurrent_pages",
    "default_sleep",
    "default_transport",
    "gcra_step",
    "pipelined_pages",
    "raise_for_api_error",
    "rate_cost",
    "rate_limiter_for",
    "redact",
    "redact_headers",
    "retry_after_seconds",
    "retry_safe",
]

logger = logging.getLogger("ml_connector.http")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=10.0)

Sleep = Callable[[float], None]


def default_sleep(seconds: float) -> None:
    """Block the calling thread; the single place where this module really waits (tests replace it)."""
    time.sleep(seconds)


def default_transport() -> httpx.BaseTransport:
    """The network transport of a client built without one (replaceable, like :func:`default_sleep`)."""
    return httpx.HTTPTransport()


def _sleep_with(sleep: Sleep | None, seconds: float) -> None:
    # Looked up at call time so a monkeypatched default_sleep reaches limiters built earlier.
    (sleep if sleep is not None else default_sleep)(seconds)


# --- redaction -------------------------------------------------------------------------------------

MASK = "***"

_SECRET_PARAM = r"(?:[\w.-]*(?:token|secret|password|passwd|api[_-]?key)|code)"
_QUERY_OR_FORM_SECRET = re.compile(rf"(?i)(?<![\w.-])({_SECRET_PARAM})=([^&\s\"'<>,;]+)")
_JSON_SECRET = re.compile(rf"(?i)(\"{_SECRET_PARAM}\"\s*:\s*\")((?:[^\"\\]|\\.)*)(\")")
_AUTH_CREDENTIALS = re.compile(r"(?i)\b(Bearer|Basic)(\s+)([A-Za-z0-9._~+/=-]{6,})")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)")

_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
_SENSITIVE_HEADER_PARTS = ("token", "secret", "signature", "key", "password")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Mask secret values in ``text`` (a URL, a header value, a body excerpt, an error message).

    Masks each given secret (also in its URL-encoded forms), the values of ``access_token=``,
    ``client_secret=``, ``refresh_token=``, ``code=``, ``password=``, ``token=``, ``api_key=`` /
    ``apikey=`` (and any ``*_token`` / ``*_secret`` key) in query strings, form bodies and JSON,
    Bearer/Basic credentials, and the password of a ``scheme://user:password@host`` URL.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, MASK)
    text = _AUTH_CREDENTIALS.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _QUERY_OR_FORM_SECRET.sub(lambda m: f"{m[1]}={MASK}", text)
    text = _JSON_SECRET.sub(lambda m: f"{m[1]}{MASK}{m[3]}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m[1]}{MASK}{m[3]}", text)


def _is_sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or any(part in lowered for part in _SENSITIVE_HEADER_PARTS)


def redact_headers(
    headers: Mapping[str, str] | httpx.Headers | Iterable[tuple[str, str]], secrets: Sequence[str] = ()
) -> dict[str, str]:
    """Return a copy of ``headers`` fit for a log line.

    Authorization, Cookie, Set-Cookie, X-Api-Key and every header whose name contains token, secret,
    signature, key or password are masked whole; other values go through :func:`redact`.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {
        name: MASK if _is_sensitive_header(name) else redact(value, secrets) for name, value in items
    }


# --- errors ----------------------------------------------------------------------------------------

_DETAIL_CHARS = 300


class ApiError(Exception):
    """A call to an external system failed; every field is already redacted.

    ``str(error)`` reads ``"<system>: <METHOD> <url> -> <status>: <detail>"``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        system: str = "unknown",
        status_code: int | None = None,
        method: str = "",
        url: str = "",
        detail: str = "",
        secrets: Sequence[str] = (),
    ) -> None:
        self.system = system
        self.status_code = status_code
        self.method = method
        self.url = redact(url, secrets)
        self.detail = redact(detail, secrets)
        if not message:
            status = "" if status_code is None else f" -> {status_code}"
            message = f"{system}: {method} {self.url}{status}".rstrip()
            if self.detail:
                message = f"{message}: {self.detail}"
        super().__init__(redact(message, secrets))


class AuthenticationFailed(ApiError):
    """401/403, or a token endpoint refusing the credentials."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409."""


class PreconditionFailed(ApiError):
    """412: a stale ETag / If-Match."""


class ClientError(ApiError):
    """Any other 4xx: the request itself is wrong; retrying will not help."""


class RateLimited(ApiError):
    """429 still answered after the retries (or a Retry-After too long to wait for)."""

    def __init__(self, message: str = "", *, retry_after_s: float | None = None, **fields: Any) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, **fields)


class ServerError(ApiError):
    """5xx still answered after the retries."""


class TransportFailure(ApiError):
    """No response: connection error or timeout, after the retries that were allowed.

    ``may_have_been_applied`` is True when the request may have reached the server (a read timeout
    on a POST, say): the caller must look the record up before sending it again.
    """

    def __init__(self, message: str = "", *, may_have_been_applied: bool = True, **fields: Any) -> None:
        self.may_have_been_applied = may_have_been_applied
        super().__init__(message, **fields)


def _body_excerpt(response: httpx.Response) -> str:
    try:
        text = response.read().decode(response.encoding or "utf-8", errors="replace")
    except httpx.StreamError:
        return ""
    return " ".join(text.split())[:_DETAIL_CHARS]


def raise_for_api_error(response: httpx.Response, system: str, secrets: Sequence[str] = ()) -> None:
    """Raise the :class:`ApiError` subclass matching a 4xx/5xx ``response``; return on anything else."""
    status = response.status_code
    if status < 400:
        return
    error_class: type[ApiError]
    extra: dict[str, Any] = {}
    if status in (401, 403):
        error_class = AuthenticationFailed
    elif status == 404:
        error_class = NotFound
    elif status == 409:
        error_class = Conflict
    elif status == 412:
        error_class = PreconditionFailed
    elif status == 429:
        error_class = RateLimited
        extra["retry_after_s"] = retry_after_seconds(response)
    elif status >= 500:
        error_class = ServerError
    else:
        error_class = ClientError
    raise error_class(
        system=system,
        status_code=status,
        method=response.request.method,
        url=str(response.request.url),
        detail=_body_excerpt(response),
        secrets=secrets,
        **extra,
    )


# --- rate limiting ---------------------------------------------------------------------------------

_EPOCH_THRESHOLD = 1_000_000_000  # a "reset" this large is a Unix time, not a number of seconds


def retry_after_seconds(response: httpx.Response, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asks us to wait (``Retry-After`` as seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _first_header(response: httpx.Response, *names: str) -> str | None:
    for name in names:
        if name in response.headers:
            return response.headers[name]
    return None


def rate_limit_reset_seconds(response: httpx.Response, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds until the quota resets when the response says none is left, else None.

    Reads ``X-RateLimit-Remaining``/``X-RateLimit-Reset`` (and the unprefixed ``RateLimit-*`` names).
    Reset is seconds-until-reset; a value that looks like a Unix time is accepted too.
    """
    remaining = _first_header(response, "X-RateLimit-Remaining", "RateLimit-Remaining")
    reset = _first_header(response, "X-RateLimit-Reset", "RateLimit-Reset")
    if remaining is None or reset is None:
        return None
    try:
        if float(remaining) > 0:
            return None
        seconds = float(reset)
    except ValueError:
        return None
    if seconds > _EPOCH_THRESHOLD:
        seconds -= now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def gcra_step(arrival: float, paused_until: float, now: float, tokens: int, interval: float,
              burst: int) -> tuple[float, float]:
    """One reservation of a GCRA bucket: ``(its new theoretical arrival time, when the tokens are free)``.

    The bucket's state is its theoretical arrival time and a pause learned from the server; both and
    ``now`` are on one clock. After a pause the bucket is full again, but nothing leaves it before the
    pause ends. Shared by the in-process bucket and a bucket kept in a database (:class:`BudgetStore`).
    """
    start = max(arrival, now, paused_until)
    ready_at = max(start + (tokens - burst) * interval, paused_until, now)
    return start + tokens * interval, ready_at


class BudgetStore(Protocol):
    """Where a rate budget shared by several processes keeps its state (``core.shared_budgets``).

    Times are wall-clock seconds (``time.time()``): every process of a deployment reads one clock.
    """

    @property
    def identity(self) -> str:
        """Which store this is (a database URL with its password hidden): one limiter per system and store."""
        ...

    def reserve(self, budget: str, tokens: int, interval: float, burst: int, clock: Callable[[], float]) -> float:
        """Reserve ``tokens`` of ``budget`` atomically (:func:`gcra_step`, ``clock`` read inside the
        transaction: a reservation that waited for its lock is not granted a slot in the past); when
        they are free."""
        ...

    def pause(self, budget: str, until: float) -> None:
        """Let no token of ``budget`` out before ``until``, for every process."""
        ...


_STORE_RETRY_S = 60.0  # how long a limiter whose store failed keeps to its own bucket before trying again


class RateLimiter:
    """A thread-safe token bucket that also learns the server's view of the budget.

    Implemented as GCRA (the "virtual scheduling" form of a token bucket): a theoretical arrival time
    moves by ``1/rate_per_s`` per token and may run ``burst`` tokens ahead of the clock. ``observe``
    pauses the bucket until a server-announced time (Retry-After, or a quota reset when none is left);
    after a pause the full burst is available again, as the server's quota has been refilled.

    With a ``store`` the bucket lives there under ``name`` instead of in this process, so every process
    of a deployment (each Dagster run is one) spends one budget; pauses are shared too. Should the store
    fail, the limiter says so once and goes on with its in-process bucket for a minute before trying the
    store again: a request is never refused for want of the budget's bookkeeping.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep | None = None,
        max_pause_s: float = 3600.0,
        store: BudgetStore | None = None,
        name: str = "",
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._max_pause_s = max_pause_s
        self._theoretical_arrival = clock()
        self._paused_until = 0.0
        self._store = store
        self._store_failed = False
        self._store_again_at = 0.0  # after a failure, the store is left alone for a while
        self.name = name
        self.configure(rate_per_s, burst)

    def configure(self, rate_per_s: float, burst: int) -> None:
        """Change the rate and burst (kept: any pause learned from the server)."""
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        with self._lock:
            self.rate_per_s = rate_per_s
            self.burst = burst
            self._interval = 1.0 / rate_per_s

    def acquire(self, tokens: int = 1) -> float:
        """Block until ``tokens`` are free (a request the server counts as several); return the seconds waited.

        Thread-safe: each caller reserves its slot under the lock (or in the store's transaction) and
        sleeps outside it, so callers on many threads, or in many processes sharing a store, together
        never exceed ``burst`` at once nor ``rate_per_s`` on average. A request costing more than the
        burst waits until the tokens beyond it have been earned.
        """
        if tokens < 1:
            raise ValueError("tokens must be >= 1")
        wait = self._shared_wait(tokens) if self._store is not None else None
        if wait is None:
            with self._lock:
                now = self._clock()
                self._theoretical_arrival, ready_at = gcra_step(
                    self._theoretical_arrival, self._paused_until, now, tokens, self._interval, self.burst
                )
            wait = ready_at - now
        if wait > 0:
            _sleep_with(self._sleep, wait)
        return max(0.0, wait)

    def _shared_wait(self, tokens: int) -> float | None:
        """Seconds until ``tokens`` reserved in the store are free; None when the store cannot say."""
        assert self._store is not None
        if self._clock() < self._store_again_at:
            return None
        try:
            ready_at = self._store.reserve(self.name, tokens, self._interval, self.burst, self._wall_clock)
        except Exception as exc:  # noqa: BLE001 - any store failure falls back to this process's bucket
            self._store_unavailable(exc)
            return None
        # From the clock after the transaction: however long it took, the request leaves at its slot.
        return ready_at - self._wall_clock()

    def _store_unavailable(self, exc: Exception) -> None:
        # A database that is down may take its connect timeout to say so: not on every request.
        self._store_again_at = self._clock() + _STORE_RETRY_S
        if not self._store_failed:
            self._store_failed = True
            logger.warning("rate budget %s: its shared store failed (%s); this process keeps its own budget",
                           self.name, type(exc).__name__)

    def for_request(self, request: httpx.Request) -> RateLimiter:
        """The budget ``request`` draws on: this one (a :class:`KeyedRateLimiter` picks one per key)."""
        return self

    def pause_for(self, seconds: float) -> None:
        """Let no token out for ``seconds`` from now (capped at ``max_pause_s``), in every process sharing it."""
        seconds = min(max(0.0, seconds), self._max_pause_s)
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
        if self._store is not None and seconds > 0 and self._clock() >= self._store_again_at:
            try:
                self._store.pause(self.name, self._wall_clock() + seconds)
            except Exception as exc:  # noqa: BLE001 - the in-process pause above still holds
                self._store_unavailable(exc)

    def observe(self, response: httpx.Response) -> None:
        """Learn from a response's ``Retry-After`` and ``X-RateLimit-Remaining``/``-Reset`` headers."""
        pauses = [
            retry_after_seconds(response, now=self._wall_clock),
            rate_limit_reset_seconds(response, now=self._wall_clock),
        ]
        longest = max((p for p in pauses if p is not None), default=None)
        if longest:
            self.pause_for(longest)

    def __repr__(self) -> str:
        shared = f", shared={self.name!r}" if self._store is not None else ""
        return f"RateLimiter(rate_per_s={self.rate_per_s}, burst={self.burst}{shared})"


class KeyedRateLimiter(RateLimiter):
    """One budget per key of a request, each with the same rate and burst (a server counting per endpoint).

    ``key`` names the budget a request draws on (e.g. its method and path template); requests it
    maps to None draw on this limiter's own budget. Each key's budget is a :class:`RateLimiter`, so
    it is thread-safe and learns pauses (Retry-After) on its own: a 429 of one endpoint holds back
    that endpoint only. :meth:`configure` and :meth:`pause_for` apply to every budget. With a
    ``store``, each key's budget is kept there as ``<name>:<key>``.
    """

    def __init__(self, rate_per_s: float, burst: int, key: Callable[[httpx.Request], str | None], *,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 sleep: Sleep | None = None, max_pause_s: float = 3600.0, store: BudgetStore | None = None,
                 name: str = "") -> None:
        self._key = key
        self._keyed: dict[str, RateLimiter] = {}
        super().__init__(rate_per_s, burst, clock=clock, wall_clock=wall_clock, sleep=sleep, max_pause_s=max_pause_s,
                         store=store, name=name)  # fmt: skip

    def for_request(self, request: httpx.Request) -> RateLimiter:
        name = self._key(request)
        if name is None:
            return self
        with self._lock:
            limiter = self._keyed.get(name)
            if limiter is None:
                limiter = self._keyed[name] = RateLimiter(
                    self.rate_per_s, self.burst, clock=self._clock, wall_clock=self._wall_clock, sleep=self._sleep,
                    max_pause_s=self._max_pause_s, store=self._store, name=f"{self.name}:{name}",
                )  # fmt: skip
            return limiter

    def configure(self, rate_per_s: float, burst: int) -> None:
        super().configure(rate_per_s, burst)
        for limiter in self._budgets():
            limiter.configure(rate_per_s, burst)

    def pause_for(self, seconds: float) -> None:
        super().pause_for(seconds)
        for limiter in self._budgets():
            limiter.pause_for(seconds)

    def _budgets(self) -> list[RateLimiter]:
        with self._lock:
            return list(self._keyed.values())

    def __repr__(self) -> str:
        shared = f", shared={self.name!r}" if self._store is not None else ""
        return f"KeyedRateLimiter(rate_per_s={self.rate_per_s}, burst={self.burst}, budgets={len(self._keyed)}{shared})"


DEFAULT_RATE_PER_S = 10.0
DEFAULT_BURST = 10

_limiters: dict[tuple[str, str | None], RateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter_for(system: str, rate_per_s: float | None = None, burst: int | None = None, *,
                     per: Callable[[httpx.Request], str | None] | None = None,
                     store: BudgetStore | None = None) -> RateLimiter:
    """The process-wide limiter of ``system``: every client of one system shares one budget.

    The first call creates it (defaults: 10/s, burst 10), a :class:`KeyedRateLimiter` when ``per``
    says which budget a request draws on (a system that counts per endpoint); a later call that
    passes ``rate_per_s`` or ``burst`` reconfigures the same limiter rather than creating a second budget.
    With a ``store`` the budget is kept there, named after ``system``, and spent by every process
    using that store (one limiter per system and store).
    """
    key = (system, store.identity if store is not None else None)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            rate, size = rate_per_s or DEFAULT_RATE_PER_S, burst or DEFAULT_BURST
            limiter = (RateLimiter(rate, size, store=store, name=system) if per is None
                       else KeyedRateLimiter(rate, size, per, store=store, name=system))  # fmt: skip
            _limiters[key] = limiter
            return limiter
    if rate_per_s is not None or burst is not None:
        limiter.configure(rate_per_s or limiter.rate_per_s, burst or limiter.burst)
    return limiter


# --- retries ---------------------------------------------------------------------------------------

RETRY_SAFE_EXTENSION = "ml_connector.retry_safe"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Failures before a single byte reached the server: retrying them cannot apply a request twice.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


RATE_COST_EXTENSION = "ml_connector.rate_cost"


def rate_cost(tokens: int) -> dict[str, Any]:
    """Request extensions saying the request spends ``tokens`` of its rate budget (the server counts
    each action of a batch, say). Combine with :func:`retry_safe` by merging the dicts."""
    return {RATE_COST_EXTENSION: max(1, int(tokens))}


def retry_safe() -> dict[str, Any]:
    """Request extensions marking a POST/PATCH as safe to send again (e.g. a search, or an upsert).

    Usage: ``client.post(url, json=..., extensions=retry_safe())``.
    """
    return {RETRY_SAFE_EXTENSION: True}


def _is_replayable(request: httpx.Request) -> bool:
    return request.method in IDEMPOTENT_METHODS or bool(request.extensions.get(RETRY_SAFE_EXTENSION))


class RetryPolicy(pydantic.BaseModel):
    """How often and how patiently to retry 429, 5xx and transport failures."""

    model_config = pydantic.ConfigDict(frozen=True)

    max_attempts: int = pydantic.Field(default=5, ge=1)
    base_delay_s: float = pydantic.Field(default=0.5, ge=0)
    max_delay_s: float = pydantic.Field(default=60.0, ge=0)
    jitter: bool = True
    # A Retry-After longer than this is not slept through: the RateLimited error goes to the caller.
    max_retry_after_s: float = pydantic.Field(default=300.0, ge=0)

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt number ``attempt`` (1-based): exponential, capped, jittered.

        With jitter the delay is uniform in [ceiling/2, ceiling] ("equal jitter"): spread out, yet
        still growing, so retries from many workers neither align nor collapse to zero.
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)


class RetryingTransport(httpx.BaseTransport):
    """Wraps a transport: acquire the rate budget, send, observe, retry what may be retried."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        system: str,
        policy: RetryPolicy,
        limiter: RateLimiter,
        secrets: Sequence[str] = (),
        sleep: Sleep | None = None,
    ) -> None:
        self._inner = inner
        self._system = system
        self._policy = policy
        self._limiter = limiter
        self._secrets = tuple(secrets)
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # buffer the body so that every attempt sends the same bytes
        replayable = _is_replayable(request)
        url = redact(str(request.url), self._secrets)
        attempts = self._policy.max_attempts
        limiter = self._limiter.for_request(request)
        cost = int(request.extensions.get(RATE_COST_EXTENSION, 1))
        for attempt in range(1, attempts + 1):
            limiter.acquire(cost)
            try:
                response = self._inner.handle_request(request)
            except _RETRYABLE_ERRORS as exc:
                never_sent = isinstance(exc, _NEVER_SENT)
                if attempt == attempts or not (replayable or never_sent):
                    raise self._transport_failure(request, exc, attempt, never_sent) from exc
                delay = self._policy.backoff_s(attempt)
                self._warn_retry(request.method, url, type(exc).__name__, delay, attempt)
                _sleep_with(self._sleep, delay)
                continue
            limiter.observe(response)
            logger.debug("%s %s -> %s (attempt %d)", request.method, url, response.status_code, attempt)
            delay = self._delay_before_retry(response, attempt) if replayable else None
            if delay is None or attempt == attempts:
                return response
            response.close()
            self._warn_retry(request.method, url, str(response.status_code), delay, attempt)
            _sleep_with(self._sleep, delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay_before_retry(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying ``response``, or None when it must go to the caller."""
        if response.status_code not in RETRYABLE_STATUS:
            return None
        server_wait = max(retry_after_seconds(response) or 0.0, rate_limit_reset_seconds(response) or 0.0)
        if server_wait > self._policy.max_retry_after_s:
            return None
        return max(self._policy.backoff_s(attempt), server_wait)

    def _warn_retry(self, method: str, url: str, outcome: str, delay: float, attempt: int) -> None:
        logger.warning(
            "%s %s %s -> %s; retrying in %.2fs (attempt %d of %d)",
            self._system, method, url, outcome, delay, attempt, self._policy.max_attempts,
        )

    def _transport_failure(
        self, request: httpx.Request, exc: httpx.TransportError, attempt: int, never_sent: bool
    ) -> TransportFailure:
        detail = f"{type(exc).__name__} after {attempt} attempt(s)"
        if not never_sent:
            detail += "; the request may have been applied"
        return TransportFailure(
            system=self._system,
            method=request.method,
            url=str(request.url),
            detail=detail,
            secrets=self._secrets,
            may_have_been_applied=not never_sent,
        )

    def close(self) -> None:
        self._inner.close()


def _quiet_httpx_loggers() -> None:
    # httpx logs every request line with its full URL (query string included) at INFO.
    for name in ("httpx", "httpcore"):
        library_logger = logging.getLogger(name)
        if library_logger.level < logging.WARNING:
            library_logger.setLevel(logging.WARNING)


def build_http_client(
    system: str,
    base_url: str,
    *,
    auth: httpx.Auth | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: httpx.Timeout | None = None,
    retry: RetryPolicy | None = None,
    rate_limiter: RateLimiter | None = None,
    secrets: Sequence[str] = (),
    sleep: Sleep | None = None,
) -> httpx.Client:
    """A sync ``httpx.Client`` for ``system``: timeouts, retries, the shared rate budget, redaction.

    Retried: 429, 500/502/503/504 and connection errors/timeouts, with jittered exponential backoff
    that never waits less than Retry-After or the announced quota reset. GET/PUT/DELETE/HEAD/OPTIONS
    are retried; POST/PATCH only with ``extensions=retry_safe()``, except when the connection failed
    before anything was sent. A response still failing after the retries is returned as it is: call
    :func:`raise_for_api_error`. A connection error or timeout that is not (or no longer) retried
    raises :class:`TransportFailure`; other httpx errors (a bad URL scheme, say) propagate unchanged.

    ``rate_limiter`` defaults to :func:`rate_limiter_for(system) <rate_limiter_for>`; ``secrets`` are
    masked in every log line and error; ``sleep`` replaces :func:`default_sleep` for the retries.
    """
    _quiet_httpx_loggers()
    retrying = RetryingTransport(
        transport if transport is not None else default_transport(),
        system=system,
        policy=retry or RetryPolicy(),
        limiter=rate_limiter if rate_limiter is not None else rate_limiter_for(system),
        secrets=secrets,
        sleep=sleep,
    )
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers=headers,
        transport=retrying,
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
        follow_redirects=False,
    )


Request = TypeVar("Request")
Page = TypeVar("Page")
Item = TypeVar("Item")


def pipelined_pages(fetch: Callable[[Request], Page], first: Request,
                    step: Callable[[Page], tuple[list[Item], Request | None]], *, name: str) -> Iterator[list[Item]]:
    """The items of each page, in order, with the next page already asked for while the caller works on this one.

    ``step`` reads a page: its items for the caller and the request of the next page (None: it was
    the last); it runs before the caller sees the page, so a cursor that depends on what a page
    holds (a keyset) is as good as an offset. One request is in flight at a time: pages stay in
    order, and a vendor's concurrency limit is spent once by this reader.
    """
    with ThreadPoolExecutor(1, thread_name_prefix=name) as prefetch:
        coming = prefetch.submit(fetch, first)
        while coming is not None:
            items, following = step(coming.result())
            coming = None if following is None else prefetch.submit(fetch, following)
            if items:
                yield items


_WALK_DONE = object()


def concurrent_pages(fetch: Callable[[Request], Page],
                     walks: Sequence[tuple[Request, Callable[[Page], tuple[list[Item], Request | None]]]], *,
                     name: str) -> Iterator[list[Item]]:
    """The items of several independent page walks, each in a thread of its own, as their pages come.

    A walk is its first request and a ``step`` as in :func:`pipelined_pages`. Pages of one walk stay
    in order; walks interleave. Memory stays bounded (at most two pages per walk wait for the
    caller). The first error of any walk ends the read for the caller; the other walks stop after
    the request they are making, and closing the iterator early stops them the same way.
    """
    pages: queue.Queue[Any] = queue.Queue(maxsize=2 * len(walks))
    stop = threading.Event()

    def hand_on(item: Any) -> None:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def walk(following: Request | None, step: Callable[[Page], tuple[list[Item], Request | None]]) -> None:
        try:
            while following is not None and not stop.is_set():
                items, following = step(fetch(following))
                if items:
                    hand_on(items)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, raised there
            hand_on(error)
        finally:
            hand_on(_WALK_DONE)

    with ThreadPoolExecutor(max(1, len(walks)), thread_name_prefix=name) as pool:
        for first, step in walks:
            pool.submit(walk, first, step)
        try:
            running = len(walks)
            while running:
                item = pages.get()
                if item is _WALK_DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
