"""Webhooks as monday.com runs them: the challenge at registration, then signed events.

``create_webhook(board_id, url, event, config)`` first POSTs ``{"challenge": "<random>"}`` to the
URL, which must answer 200 with the same JSON; otherwise the mutation fails and nothing is stored.
Events are ``{"event": {...}}`` bodies (``create_pulse``, ``update_column_value``, ``update_name``,
``archive_pulse``, ``delete_pulse``) with a ``triggerUuid``, POSTed to each matching subscription
with ``Authorization: <JWT>`` (HS256, the app's signing secret, fresh ``iat``/``exp`` per attempt);
a failed delivery is retried every minute for 30 minutes (times ``time_scale``).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from ml_connector_dagster.systems.monday.webhook import app_jwt

from ..delivery import WebhookDispatcher
from .errors import MondayFieldError
from .tenant import Board, Column, Item, Subscription
from .values import WEBHOOK_COLUMN_TYPE, webhook_value

if TYPE_CHECKING:
    from .simulator import MondaySimulator

__all__ = ["RETRY_DELAYS_S", "WebhookHub"]

RETRY_DELAYS_S = (60.0,) * 30  # every minute for 30 minutes
CHALLENGE_TIMEOUT_S = 10.0
# monday sends the event type of the subscription in each body under these names.
_EVENT_TYPE = {
    "create_item": "create_pulse", "change_column_value": "update_column_value",
    "change_specific_column_value": "update_column_value", "change_status_column_value": "update_column_value",
    "change_name": "update_name", "item_archived": "archive_pulse", "item_deleted": "delete_pulse",
}  # fmt: skip


class WebhookHub:
    """Registration (with its challenge) and delivery of one simulator's webhook subscriptions."""

    def __init__(self, sim: MondaySimulator, *, time_scale: float, transport: httpx.BaseTransport | None) -> None:
        self.sim = sim
        self.dispatcher = WebhookDispatcher(
            sim, lambda body: {}, retry_delays_s=RETRY_DELAYS_S, time_scale=time_scale, transport=transport
        )
        self._challenge_client = httpx.Client(transport=transport, timeout=CHALLENGE_TIMEOUT_S)

    def close(self) -> None:
        self.dispatcher.close()
        self._challenge_client.close()

    # -- registration ----------------------------------------------------------------------------
    def verify_url(self, url: str) -> None:
        """POST the challenge; the URL must echo it (MondayFieldError otherwise)."""
        challenge = secrets.token_urlsafe(36)
        try:
            response = self._challenge_client.post(url, json={"challenge": challenge})
            echoed = response.status_code == 200 and response.json() == {"challenge": challenge}
        except (httpx.HTTPError, ValueError):
            echoed = False
        if not echoed:
            raise MondayFieldError(
                "Failed to communicate with URL provided: the challenge was not returned",
                "InvalidUrlException", status_code=400, url=url,
            )

    # -- events --------------------------------------------------------------------------------
    def item_created(self, board: Board, item: Item, user_id: int) -> None:
        group = board.group(item.group_id)
        values = {column.id: webhook_value(column, item.values.get(column.id), self.sim.tenant.users)
                  for column in board.columns if column.id in item.values}  # fmt: skip
        self._emit(board, "create_item", None, {
            "pulseId": item.id, "pulseName": item.name, "groupId": item.group_id,
            "groupName": group.title if group else None, "groupColor": group.color if group else None,
            "isTopGroup": board.top_group().id == item.group_id, "columnValues": values,
        }, user_id)  # fmt: skip

    def column_changed(self, board: Board, item: Item, column: Column, previous: Any, current: Any,
                       user_id: int) -> None:  # fmt: skip
        users = self.sim.tenant.users
        self._emit(board, "change_column_value", column, {
            "pulseId": item.id, "pulseName": item.name, "groupId": item.group_id,
            "columnId": column.id, "columnType": WEBHOOK_COLUMN_TYPE.get(column.type, column.type),
            "columnTitle": column.title, "value": webhook_value(column, current, users),
            "previousValue": webhook_value(column, previous, users),
            "changedAt": self.sim.clock.time(), "isTopGroup": board.top_group().id == item.group_id,
        }, user_id)  # fmt: skip

    def name_changed(self, board: Board, item: Item, previous: str, user_id: int) -> None:
        self._emit(board, "change_name", None, {
            "pulseId": item.id, "groupId": item.group_id,
            "value": {"name": item.name}, "previousValue": {"name": previous},
        }, user_id)  # fmt: skip

    def item_removed(self, board: Board, item: Item, event: str, user_id: int) -> None:
        self._emit(board, event, None, {"itemId": item.id, "itemName": item.name, "pulseId": item.id}, user_id)

    def _emit(self, board: Board, event: str, column: Column | None, fields: Mapping[str, Any], user_id: int) -> None:
        trigger_uuid = str(uuid.uuid4())
        trigger_time = self.sim.now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for subscription in list(self.sim.tenant.subscriptions.values()):
            if subscription.board_id != board.id or not _matches(subscription, event, column, fields):
                continue
            body = {"event": {
                "app": "monday", "type": _EVENT_TYPE[subscription.event], "triggerTime": trigger_time,
                "subscriptionId": subscription.id, "isRetry": False, "userId": user_id,
                "originalTriggerUuid": None, "boardId": board.id, **fields, "triggerUuid": trigger_uuid,
            }}  # fmt: skip
            self.dispatcher.emit(body, f"{trigger_uuid}/{subscription.id}", url=subscription.url,
                                 sign=self._signer(subscription))  # fmt: skip

    def _signer(self, subscription: Subscription) -> Any:
        sim = self.sim

        def sign(body: bytes) -> dict[str, str]:
            token = app_jwt(sim.signing_secret, issued_at=sim.now(), ttl=timedelta(minutes=1),
                            accountId=sim.tenant.account_id, userId=sim.user_id, aud=subscription.url)  # fmt: skip
            return {"authorization": token}

        return sign


def _matches(subscription: Subscription, event: str, column: Column | None, fields: Mapping[str, Any]) -> bool:
    config = subscription.config or {}
    if subscription.event in ("item_archived", "item_deleted", "create_item", "change_name"):
        return subscription.event == event
    if event != "change_column_value" or column is None:
        return False
    if subscription.event == "change_column_value":
        return True
    if subscription.event == "change_specific_column_value":
        return config.get("columnId") == column.id
    if subscription.event == "change_status_column_value":
        if column.type != "status" or config.get("columnId", column.id) != column.id:
            return False
        wanted = config.get("columnValue", {}).get("index") if isinstance(config.get("columnValue"), dict) else None
        value = fields.get("value") or {}
        return wanted is None or (value.get("label") or {}).get("index") == wanted
    return False

