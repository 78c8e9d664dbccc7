"""Dynamic webhooks (OAuth apps, JWT-signed, 30-day expiry) and admin webhooks (X-Hub-Signature)."""

from __future__ import annotations

import hashlib
import hmac
import time as time_module
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt
from starlette.responses import JSONResponse, Response

from .jql import (
    WEBHOOK_JQL_FIELDS,
    JqlError,
    iter_clauses,
    parse_jql,
)
from .records import (
    AdminWebhook,
    Call,
    Caller,
    Comment,
    DynamicWebhook,
    Issue,
    jira_error,
)
from .site import (
    CLOUD_ID,
    DEMO_USER,
    SYSTEM_FIELDS,
    WEBHOOK_EVENTS,
    WEBHOOK_LIMIT,
    WEBHOOK_TTL_S,
    User,
    epoch_ms,
)


def _hub_signer(secret: str | None) -> Callable[[bytes], Mapping[str, str]]:
    """Admin webhooks with a secret: ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>``."""

    def sign(body: bytes) -> Mapping[str, str]:
        if not secret:
            return {}
        return {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}

    return sign


class WebhookEndpoints:
    """Mixed into the simulator: webhook registration and deliveries."""

    def _live_webhooks(self) -> list[DynamicWebhook]:
        now = self.clock.time()
        for webhook_id in [w.id for w in self.webhooks.values() if w.expires_at <= now]:
            del self.webhooks[webhook_id]
        return sorted(self.webhooks.values(), key=lambda w: w.id)

    def _app_webhooks(self, caller: Caller) -> list[DynamicWebhook]:
        return [w for w in self._live_webhooks()
                if w.client_id == caller.client_id and w.account_id == caller.user.account_id]

    def _webhook_check_jql(self, jql: Any) -> str | None:
        """Why ``jql`` is not a valid webhook filter, or None."""
        if not isinstance(jql, str) or not jql.strip():
            return "The JQL filter is required."
        try:
            query = parse_jql(jql)
        except JqlError as exc:
            return f"The JQL filter is invalid: {exc}"
        if query.order or query.where is None:
            return "The JQL filter is invalid: ORDER BY and empty filters are not supported."
        for clause in iter_clauses(query.where):
            lowered = clause.field.lower()
            if lowered.startswith("cf[") or lowered not in WEBHOOK_JQL_FIELDS:
                return (f"The JQL filter is invalid: the field '{clause.field}' is not supported. Supported fields: "
                        "issueKey, project, issuetype, status, assignee, reporter, issue.property and cf[id] "
                        "(the epic label field only).")
            if clause.op not in {"=", "!=", "in", "not in"}:
                return f"The JQL filter is invalid: the operator '{clause.op.upper()}' is not supported. Supported operators: =, !=, IN, NOT IN."
        try:
            self._check_jql(query, DEMO_USER)
        except JqlError as exc:
            return f"The JQL filter is invalid: {exc}"
        return None

    def _require_app(self, call: Call) -> Response | None:
        if call.caller.via != "oauth":
            return jira_error(403, "Only Connect and OAuth 2.0 apps can use this operation.")
        return None

    def _webhook_register(self, call: Call) -> Response:
        if (denied := self._require_app(call)) is not None:
            return denied
        body = call.body
        if (not isinstance(body, dict) or set(body) - {"url", "webhooks"} or not isinstance(body.get("url"), str)
                or not isinstance(body.get("webhooks"), list)):
            return jira_error(400, "Invalid request payload. Refer to the REST API documentation and try again.")
        url = body["url"]
        if urlsplit(url).scheme not in {"http", "https"} or not urlsplit(url).netloc:
            return jira_error(400, errors={"url": "The webhook URL is invalid."})
        results = []
        live = len(self._app_webhooks(call.caller))
        for spec in body["webhooks"]:
            problem = self._webhook_spec_problem(spec)
            if problem is None and live >= WEBHOOK_LIMIT:
                problem = f"Only {WEBHOOK_LIMIT} webhooks can be registered per app and user on a site."
            if problem is not None:
                results.append({"errors": [problem]})
                continue
            webhook = DynamicWebhook(
                next(self._webhook_ids), url, list(dict.fromkeys(spec["events"])), spec["jqlFilter"],
                list(spec["fieldIdsFilter"]) if "fieldIdsFilter" in spec else None,
                call.caller.client_id or "", call.caller.user.account_id, self.clock.time() + WEBHOOK_TTL_S,
            )
            self.webhooks[webhook.id] = webhook
            live += 1
            results.append({"createdWebhookId": webhook.id})
        return JSONResponse({"webhookRegistrationResult": results})

    def _webhook_spec_problem(self, spec: Any) -> str | None:
        allowed = {"events", "jqlFilter", "fieldIdsFilter", "issuePropertyKeysFilter"}
        if not isinstance(spec, dict) or set(spec) - allowed:
            return "Invalid webhook details."
        events = spec.get("events")
        if not isinstance(events, list) or not events:
            return "At least one event is required."
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown:
            return f"Unsupported event(s): {', '.join(map(str, unknown))}."
        fields = spec.get("fieldIdsFilter")
        if fields is not None:
            known = set(SYSTEM_FIELDS) | set(self.custom_fields)
            if not isinstance(fields, list) or any(f not in known for f in fields):
                return "fieldIdsFilter contains unknown field ids."
        return self._webhook_check_jql(spec.get("jqlFilter"))

    def _webhook_list(self, call: Call) -> Response:
        if (denied := self._require_app(call)) is not None:
            return denied
        start, size = self._paging(call, default=100, cap=100)
        mine = self._app_webhooks(call.caller)
        page = mine[start : start + size]
        return JSONResponse({
            "isLast": start + size >= len(mine),
            "maxResults": size,
            "startAt": start,
            "total": len(mine),
            "values": [self._webhook_json(w) for w in page],
        })

    def _webhook_ids_from(self, call: Call) -> list[int] | Response:
        ids = call.body.get("webhookIds") if isinstance(call.body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return jira_error(400, errors={"webhookIds": "The list of webhook IDs is required."})
        return ids

    def _webhook_delete(self, call: Call) -> Response:
        if (denied := self._require_app(call)) is not None:
            return denied
        ids = self._webhook_ids_from(call)
        if isinstance(ids, Response):
            return ids
        for webhook in self._app_webhooks(call.caller):
            if webhook.id in ids:
                del self.webhooks[webhook.id]
        return Response(status_code=202)

    def _webhook_refresh(self, call: Call) -> Response:
        if (denied := self._require_app(call)) is not None:
            return denied
        ids = self._webhook_ids_from(call)
        if isinstance(ids, Response):
            return ids
        expires = self.clock.time() + WEBHOOK_TTL_S
        for webhook in self._app_webhooks(call.caller):
            if webhook.id in ids:
                webhook.expires_at = expires
        return JSONResponse({"expirationDate": epoch_ms(expires)})

    def _admin_webhook_list(self, call: Call) -> Response:
        return JSONResponse([self._admin_webhook_json(w, call.caller.api_base) for w in self.admin_webhooks.values()])

    def _admin_webhook_create(self, call: Call) -> Response:
        body = call.body if isinstance(call.body, dict) else {}
        url, name, events = body.get("url"), body.get("name"), body.get("events") or []
        jql = (body.get("filters") or {}).get("issue-related-events-section", "") or ""
        errors = {}
        if not isinstance(name, str) or not name.strip():
            errors["name"] = "The webhook name is required."
        if not isinstance(url, str) or urlsplit(url).scheme not in {"http", "https"}:
            errors["url"] = "The webhook URL is invalid."
        if not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events):
            errors["events"] = "Unknown webhook event."
        if jql:
            try:
                self._check_jql(parse_jql(jql), call.caller.user)
            except JqlError as exc:
                errors["filters"] = str(exc)
        if errors:
            return jira_error(400, errors=errors)
        secret = body.get("secret")
        webhook_id = next(self._webhook_ids)
        webhook = AdminWebhook(webhook_id, name, url, list(events), jql, secret if isinstance(secret, str) else None,
                               self.clock.time())
        self.admin_webhooks[webhook_id] = webhook
        return JSONResponse(self._admin_webhook_json(webhook, call.caller.api_base), status_code=201)

    def _admin_webhook_delete(self, call: Call) -> Response:
        try:
            webhook_id = int(call.params["webhook_id"])
        except ValueError:
            webhook_id = -1
        if self.admin_webhooks.pop(webhook_id, None) is None:
            return jira_error(404, "Webhook not found.")
        return Response(status_code=204)

    def _emit(self, event: str, issue: Issue, actor: User, *, changelog: dict[str, Any] | None = None,
              comment: Comment | None = None, type_name: str | None = None) -> None:
        """Queue ``event`` to every live dynamic webhook and admin webhook whose filter matches."""
        live = self._live_webhooks()
        admin_hooks = [hook for hook in self.admin_webhooks.values() if event in hook.events]
        if not live and not admin_hooks:
            return  # nobody listens: the payload (the whole issue as JSON) is not worth building
        snapshot = issue.snapshot()
        changed = {item["fieldId"] for item in (changelog or {}).get("items", [])}
        matched: dict[str, list[DynamicWebhook]] = {}
        for webhook in live:
            if event not in webhook.events or not self._filter_matches(webhook.jql, snapshot, webhook.account_id):
                continue
            if event == "jira:issue_updated" and webhook.field_ids is not None and not changed & set(webhook.field_ids):
                continue
            matched.setdefault(webhook.url, []).append(webhook)
        admin_hooks = [hook for hook in admin_hooks
                       if not hook.jql or self._filter_matches(hook.jql, snapshot, DEMO_USER.account_id)]
        if not matched and not admin_hooks:
            return
        payload = self._event_payload(event, issue, actor, changelog=changelog, comment=comment, type_name=type_name)
        for url, webhooks in matched.items():
            body = {**payload, "matchedWebhookIds": [w.id for w in webhooks]}
            self._deliver(body, url, self._jwt_signer(url, webhooks[0].account_id))
        for admin_hook in admin_hooks:
            self._deliver(payload, admin_hook.url, _hub_signer(admin_hook.secret))

    def _event_payload(self, event: str, issue: Issue, actor: User, *, changelog: dict[str, Any] | None,
                       comment: Comment | None, type_name: str | None) -> dict[str, Any]:
        """The body Jira delivers for ``event``: the issue as it is now (and the comment, the changelog)."""
        base = self.site_url
        payload: dict[str, Any] = {"timestamp": epoch_ms(self.clock.time()), "webhookEvent": event}
        if event.startswith("jira:"):
            payload["issue_event_type_name"] = type_name
            payload["user"] = self._user_json(actor, base)
            payload["issue"] = self._issue_json(issue, base, "UTC")
            if changelog is not None:
                payload["changelog"] = changelog
            if comment is not None:
                payload["comment"] = self._comment_json(comment, base, "UTC")
        else:
            payload["comment"] = self._comment_json(comment, base, "UTC") if comment else None
            summary_fields = ("summary", "issuetype", "project", "assignee", "priority", "status")
            full = self._issue_fields(issue, base, "UTC")
            payload["issue"] = {"id": str(issue.id), "self": f"{base}/rest/api/3/issue/{issue.id}", "key": issue.key,
                                "fields": {k: full.get(k) for k in summary_fields}}
        return payload

    def _filter_matches(self, jql: str, snapshot: dict[str, Any], account_id: str) -> bool:
        try:
            return self._check_jql(parse_jql(jql), self.users[account_id])(snapshot)
        except JqlError:
            return False  # e.g. a key named in the filter was deleted since

    def _deliver(self, payload: dict[str, Any], url: str, sign: Callable[[bytes], Mapping[str, str]]) -> None:
        identifier = str(uuid.uuid4())
        headers = {"X-Atlassian-Webhook-Identifier": identifier, "User-Agent": "Atlassian Webhook HTTP Client"}
        self.dispatcher.emit(payload, identifier, headers, url=url, sign=sign)

    def _jwt_signer(self, url: str, account_id: str) -> Callable[[bytes], Mapping[str, str]]:
        """HS256 JWT with the app secret, bound to the delivery request by its query string hash."""
        parts = urlsplit(url)
        query = "&".join(sorted(p for p in parts.query.split("&") if p))
        qsh = hashlib.sha256(f"POST&{parts.path or '/'}&{query}".encode()).hexdigest()

        def sign(body: bytes) -> Mapping[str, str]:
            # Wall-clock claims: the receiver checks them against its own clock, not the sim's.
            now = int(time_module.time())
            claims = {"iss": f"jira:{CLOUD_ID}", "sub": account_id, "iat": now, "exp": now + 180, "qsh": qsh}
            return {"Authorization": f"Bearer {jwt.encode(claims, self.app_secret, algorithm='HS256')}"}

        return sign
