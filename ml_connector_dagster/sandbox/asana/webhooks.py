"""Webhooks: the ``X-Hook-Secret`` handshake inside ``POST /webhooks``, then signed event deliveries.

Registration POSTs the handshake to the target *while* the create call is in flight; unless the
target answers 200/204 echoing the secret, nothing is created and the call fails. Events then go out
as ``{"events": [...]}`` signed with ``X-Hook-Signature`` = hex HMAC-SHA256(body, secret), at most
once: no replay. A delivery without a 2xx within 10 s is retried with backoff for up to 24 hours,
after which Asana deletes the webhook (all delays times ``time_scale``).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets as secrets_module
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from ml_connector_dagster.systems.asana.webhook import sign

from ..delivery import WebhookDispatcher, _Delivery
from ..framework import Simulator
from .calls import Answer, AsanaError, Call, ok, required, shaped_list
from .render import webhook_json
from .tenant import Task, Tenant, Webhook, iso

HANDSHAKE_FAILED = "The remote server did not respond with the handshake secret."
DELIVERY_TIMEOUT_S = 10.0
RETRY_WINDOW_S = 24 * 3600


def retry_delays(window_s: float = RETRY_WINDOW_S) -> tuple[float, ...]:
    """Backoff from one minute, doubling up to an hour per step, until the 24 h window is spent."""
    delays: list[float] = []
    step = 60.0
    while sum(delays) < window_s:
        delays.append(step)
        step = min(step * 2, 3600.0)
    return tuple(delays)


class AsanaDispatcher(WebhookDispatcher):
    """The framework dispatcher, telling the simulator how each delivery attempt went."""

    def __init__(self, simulator: Simulator, on_outcome: Callable[[str, str, int | None], None], **settings: Any) -> None:
        super().__init__(simulator, lambda _body: {}, **settings)
        self._on_outcome = on_outcome

    def _record(self, delivery: _Delivery, *, outcome: str, status: int | None = None) -> None:
        super()._record(delivery, outcome=outcome, status=status)
        self._on_outcome(delivery.event_id, outcome, status)


def _signer(secret: str) -> Callable[[bytes], Mapping[str, str]]:
    return lambda body: {"X-Hook-Signature": sign(body, secret)}


class WebhookEndpoints:
    """Mixed into the simulator: webhook registration, events and their deliveries."""

    tenant: Tenant

    def _webhook_create(self, call: Call) -> Answer:
        data = call.data
        resource_gid = str(required(data, "resource"))
        target = str(required(data, "target"))
        kind = "project" if resource_gid in self.tenant.projects else "task" if resource_gid in self.tenant.tasks else None
        if kind is None:
            if resource_gid == self.tenant.workspace_gid:
                raise AsanaError(400, "resource: Webhooks on a workspace need filters for a supported resource type")
            raise AsanaError(400, f"resource: Not a recognized ID: {resource_gid}")
        self._check_target(target)
        filters = self._filters(data.get("filters"))
        secret = secrets_module.token_hex(32)
        if not self._handshake(target, secret):
            raise AsanaError(400, HANDSHAKE_FAILED)
        webhook = Webhook(self.tenant.mint(), resource_gid, kind, target, secret, self.clock.time(), filters,
                          call.caller.user_gid)
        self.tenant.webhooks[webhook.gid] = webhook
        # The spec's example answers the secret beside the data, as the handshake carried it.
        return Answer(201, {"data": call.shaped(webhook_json(webhook, self.tenant)), "X-Hook-Secret": secret},
                      {"Location": f"/webhooks/{webhook.gid}"})

    def _check_target(self, target: str) -> None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AsanaError(400, f"target: Not a valid URL: {target}")
        host = parts.hostname.lower()
        if host == "localhost" or host.endswith(".localhost"):
            raise AsanaError(403, f"target: Invalid hostname: {host}")
        if not self.allow_loopback_targets:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return
            if address.is_loopback or address.is_private:
                raise AsanaError(403, f"target: Invalid hostname: {host}")

    @staticmethod
    def _filters(filters: Any) -> list[dict[str, Any]]:
        if filters is None:
            return []
        allowed = {"resource_type", "resource_subtype", "action", "fields"}
        if not isinstance(filters, list) or not all(
            isinstance(f, dict) and isinstance(f.get("resource_type"), str) and not set(f) - allowed for f in filters
        ):
            raise AsanaError(400, "filters: Each filter needs a resource_type (and may have resource_subtype, action, fields)")
        return [dict(f) for f in filters]

    def _handshake(self, target: str, secret: str) -> bool:
        """POST the handshake to ``target``; True when it echoed the secret with 200 or 204."""
        try:
            response = self.handshake_client.post(target, headers={"X-Hook-Secret": secret}, content=b"")
            status: int | None = response.status_code
            echoed = response.headers.get("X-Hook-Secret", "")
            ok_ = status in (200, 204) and hmac.compare_digest(echoed.encode(), secret.encode())
        except httpx.HTTPError:
            status, ok_ = None, False
        self.deliveries.append({"event_id": "handshake", "attempt": 1, "outcome": "handshake" if ok_ else "handshake_failed",
                                "status": status, "at": self.now().isoformat()})
        return ok_

    def _webhook_list(self, call: Call) -> Answer:
        self._workspace(call.arg("workspace"))
        resource = call.arg("resource")
        hooks = [w for w in self.tenant.webhooks.values() if resource is None or w.resource_gid == resource]
        render = shaped_list(call, ("gid", "resource_type", "active", "resource", "target"))
        return self.pager.page(call, hooks, lambda w: render(webhook_json(w, self.tenant)))

    def _webhook(self, gid: str) -> Webhook:
        webhook = self.tenant.webhooks.get(gid)
        if webhook is None:
            raise AsanaError(404, f"webhook: Not a recognized ID: {gid}")
        return webhook

    def _webhook_get(self, call: Call) -> Answer:
        return ok(call.shaped(webhook_json(self._webhook(call.params["webhook_gid"]), self.tenant)))

    def _webhook_update(self, call: Call) -> Answer:
        webhook = self._webhook(call.params["webhook_gid"])
        webhook.filters = self._filters(required(call.data, "filters"))
        return ok(call.shaped(webhook_json(webhook, self.tenant)))

    def _webhook_delete(self, call: Call) -> Answer:
        self.tenant.webhooks.pop(self._webhook(call.params["webhook_gid"]).gid)
        return ok({})

    # -- events --------------------------------------------------------------------------------

    def _task_projects(self, task: Task) -> set[str]:
        projects, seen = set(task.project_gids), {task.gid}
        parent = self.tenant.tasks.get(task.parent or "")
        while parent is not None and parent.gid not in seen:
            seen.add(parent.gid)
            projects |= set(parent.project_gids)
            parent = self.tenant.tasks.get(parent.parent or "")
        return projects

    def _event(self, actor: str, action: str, resource: dict[str, Any], parent: dict[str, Any] | None,
               change: dict[str, Any] | None = None) -> dict[str, Any]:
        event = {"user": {"gid": actor, "resource_type": "user"}, "created_at": iso(self.clock.time()),
                 "action": action, "resource": resource, "parent": parent}
        if change is not None:
            event["change"] = change
        return event

    @staticmethod
    def _task_ref(task: Task) -> dict[str, Any]:
        return {"gid": task.gid, "resource_type": "task", "resource_subtype": task.resource_subtype}

    def _task_added(self, task: Task, actor: str) -> None:
        context = self._task_projects(task)
        for project in task.project_gids:
            self._queue(self._event(actor, "added", self._task_ref(task), {"gid": project, "resource_type": "project"}),
                        context, {task.gid})
        if task.parent:
            parent = {"gid": task.parent, "resource_type": "task", "resource_subtype": "default_task"}
            self._queue(self._event(actor, "added", self._task_ref(task), parent), context, {task.gid, task.parent})

    def _task_changed(self, task: Task, before: dict[str, Any], actor: str) -> None:
        after = task.snapshot()
        context = self._task_projects(task)
        for name in ("name", "notes", "completed", "assignee"):
            if before[name] != after[name]:
                self._queue(self._event(actor, "changed", self._task_ref(task), None,
                                        {"field": name, "action": "changed"}), context, {task.gid})
        for gid in sorted(set(before["custom"]) | set(after["custom"])):
            if before["custom"].get(gid) != after["custom"].get(gid):
                change = {"field": "custom_fields", "action": "changed",
                          "new_value": {"gid": gid, "resource_type": "custom_field"}}
                self._queue(self._event(actor, "changed", self._task_ref(task), None, change), context, {task.gid})

    def _task_deleted(self, task: Task, actor: str) -> None:
        self._queue(self._event(actor, "deleted", self._task_ref(task), None), self._task_projects(task),
                    {task.gid, task.parent or ""})

    def _story_added(self, task: Task, actor: str, story_gid: str) -> None:
        resource = {"gid": story_gid, "resource_type": "story", "resource_subtype": "comment_added"}
        self._queue(self._event(actor, "added", resource, self._task_ref(task)), self._task_projects(task), {task.gid})

    def _queue(self, event: dict[str, Any], projects: set[str], tasks: set[str]) -> None:
        for webhook in self.tenant.webhooks.values():
            watched = projects if webhook.resource_type == "project" else tasks
            if webhook.resource_gid in watched and self._passes(webhook, event):
                self.outbox.setdefault(webhook.gid, []).append(event)

    @staticmethod
    def _passes(webhook: Webhook, event: dict[str, Any]) -> bool:
        if not webhook.filters:
            return True
        resource, change = event["resource"], event.get("change") or {}
        return any(
            f["resource_type"] == resource["resource_type"]
            and f.get("resource_subtype") in (None, resource.get("resource_subtype"))
            and f.get("action") in (None, event["action"])
            and (not f.get("fields") or change.get("field") in f["fields"])
            for f in webhook.filters
        )

    def _flush_outbox(self) -> None:
        """Send what the last call queued: one delivery per webhook, its events in order."""
        outbox, self.outbox = self.outbox, {}
        for gid, events in outbox.items():
            webhook = self.tenant.webhooks.get(gid)
            if webhook is not None:
                self._deliver(webhook, events)

    def _deliver(self, webhook: Webhook, events: list[dict[str, Any]]) -> None:
        delivery_id = str(uuid.uuid4())
        self.delivery_hooks[delivery_id] = webhook.gid
        self.dispatcher.emit({"events": events}, delivery_id, {"User-Agent": "Asana"}, url=webhook.target,
                             sign=_signer(webhook.secret))

    def _delivery_outcome(self, delivery_id: str, outcome: str, status: int | None) -> None:
        with self.lock:
            webhook = self.tenant.webhooks.get(self.delivery_hooks.get(delivery_id, ""))
            if webhook is None:
                return
            now = self.clock.time()
            if outcome == "delivered":
                webhook.last_success_at, webhook.delivery_retry_count = now, 0
            elif outcome in ("retrying", "gave_up"):
                webhook.last_failure_at = now
                webhook.last_failure_content = f"HTTP {status}" if status else "no answer within 10 seconds"
                webhook.delivery_retry_count += 1
                if outcome == "gave_up":
                    # 24 hours without a 2xx: Asana deletes the webhook.
                    del self.tenant.webhooks[webhook.gid]
            if outcome != "retrying":
                self.delivery_hooks.pop(delivery_id, None)
