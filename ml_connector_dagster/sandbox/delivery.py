"""Webhook deliveries from a simulator to the connector's receiver, with the vendor's retry habits.

Each simulator signs its own deliveries (``sign``) and states its retry schedule; this module
queues, retries, and applies the webhook faults of the installed plan: drop, duplicate, reorder.
Delays are multiplied by ``time_scale`` so tests can run a day of retries in milliseconds.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .framework import Simulator

Signer = Callable[[bytes], Mapping[str, str]]


@dataclass
class _Delivery:
    body: bytes
    headers: dict[str, str]
    event_id: str
    attempts: int = 0
    not_before: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    # Set when a vendor posts to per-subscription targets (e.g. URLs registered through its API),
    # each signed its own way; None means the simulator's webhook_url and the dispatcher's signer.
    url: str | None = None
    sign: Signer | None = None


class WebhookDispatcher:
    """Posts signed events to ``target_url`` from a background thread, retrying on failure."""

    def __init__(
        self,
        simulator: Simulator,
        sign: Signer,
        *,
        retry_delays_s: Sequence[float] = (1, 2, 4, 8, 16),
        time_scale: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.sim = simulator
        self.sign = sign
        self.retry_delays_s = tuple(retry_delays_s)
        self.time_scale = time_scale
        self._client = httpx.Client(transport=transport, timeout=timeout_s)
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._held: _Delivery | None = None
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def emit(
        self,
        event: Mapping[str, Any],
        event_id: str,
        extra_headers: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
        sign: Signer | None = None,
    ) -> None:
        """Queue one event; the fault plan may drop, duplicate or hold it back behind the next one.

        ``url`` and ``sign`` override the simulator's ``webhook_url`` and the dispatcher's signer for
        this event (subscriptions registered through a vendor API have their own target and secret).
        """
        url = url or self.sim.webhook_url
        if not url:
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", **(extra_headers or {})}
        delivery = _Delivery(body=body, headers=headers, event_id=event_id, url=url, sign=sign)
        plan = self.sim.fault_plan
        if self.sim.fault_roll(plan.webhook_drop_rate, "webhook_dropped"):
            self._record(delivery, outcome="dropped")
            return
        copies = 2 if self.sim.fault_roll(plan.webhook_duplicate_rate, "webhook_duplicated") else 1
        for _ in range(copies):
            self._enqueue(_Delivery(body=body, headers=dict(headers), event_id=event_id, url=url, sign=sign))

    def _enqueue(self, delivery: _Delivery) -> None:
        self._start()
        with self._idle:
            self._pending += 1
        if self._held is None and self.sim.fault_roll(self.sim.fault_plan.webhook_reorder_rate, "webhook_reordered"):
            self._held = delivery
            return
        self._queue.put(delivery)
        if self._held is not None:
            held, self._held = self._held, None
            self._queue.put(held)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued delivery has succeeded or given up. True if idle in time."""
        if self._held is not None:
            held, self._held = self._held, None
            self._queue.put(held)
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
        self._client.close()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"webhooks-{self.sim.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            delivery = self._queue.get()
            if delivery is None:
                return
            wait = delivery.not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._attempt(delivery)

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        headers = {**delivery.headers, **(delivery.sign or self.sign)(delivery.body)}
        try:
            response = self._client.post(str(delivery.url or self.sim.webhook_url), content=delivery.body, headers=headers)
            status: int | None = response.status_code
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as exc:
            status, ok = None, False
            delivery.history.append({"error": type(exc).__name__})
        if ok:
            self._record(delivery, outcome="delivered", status=status)
            self._done()
            return
        if delivery.attempts > len(self.retry_delays_s):
            self._record(delivery, outcome="gave_up", status=status)
            self._done()
            return
        delay = self.retry_delays_s[delivery.attempts - 1] * self.time_scale
        delivery.not_before = time.monotonic() + delay
        self._record(delivery, outcome="retrying", status=status)
        self._queue.put(delivery)

    def _record(self, delivery: _Delivery, *, outcome: str, status: int | None = None) -> None:
        with self.sim.lock:
            self.sim.deliveries.append(
                {
                    "event_id": delivery.event_id,
                    "attempt": delivery.attempts,
                    "outcome": outcome,
                    "status": status,
                    "at": self.sim.now().isoformat(),
                }
            )

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()
