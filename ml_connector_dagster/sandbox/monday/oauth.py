"""monday.com's OAuth app flow, at ``auth.monday.com``'s paths: ``/oauth2/authorize`` and ``/oauth2/token``.

The authorize page consents at once for the demo user (a person would pick the account and click
Authorize) and redirects to ``redirect_uri?code=...&state=...``. A ``client_id`` the account does
not know, or a ``redirect_uri`` not registered on the app, gets an error page (400) and no
redirect: an address nobody registered is never sent a code. A scope monday does not have is
refused by redirecting with ``error=invalid_scope``. Without ``redirect_uri`` the app's first
registered one is used; without ``scope``, the app's configured scopes.

The token endpoint (form or JSON body: ``client_id``, ``client_secret``, ``code``, ``redirect_uri``)
answers ``{"access_token", "token_type": "Bearer", "scope"}``: the token never expires (it lives
until the app is uninstalled) and there is no refresh token. An unknown client or a wrong secret:
401 ``invalid_client``; a code that is unknown, expired, already spent or issued for another
``redirect_uri``: 400 ``invalid_grant``. An OAuth token is then sent to ``/v2`` exactly like a
personal token: raw in ``Authorization``.
"""

from __future__ import annotations

import hmac
import json
import secrets as secrets_module
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import SandboxClock

__all__ = [
    "APP_SCOPES",
    "AUTHORIZE_PATH",
    "AUTH_CODE_TTL_S",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_REDIRECT_URI",
    "SCOPES",
    "TOKEN_PATH",
    "MondayOAuth",
]

AUTHORIZE_PATH = "/oauth2/authorize"
TOKEN_PATH = "/oauth2/token"
AUTH_CODE_TTL_S = 600
DEMO_CLIENT_ID = "6f3b1c0e2d9a4b7c8e1f0a2b3c4d5e6f"
DEMO_CLIENT_SECRET = "sandbox-monday-client-secret-not-for-production"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"  # where `ml-connector auth` sends the browser
# Every permission scope monday documents.
SCOPES = frozenset({
    "account:read", "assets:read", "boards:read", "boards:write", "docs:read", "docs:write", "me:read",
    "notifications:write", "tags:read", "teams:read", "updates:read", "updates:write", "users:read", "users:write",
    "webhooks:read", "webhooks:write", "workspaces:read", "workspaces:write",
})
# What the demo app is configured with in the Developer Center (granted when the request names none).
APP_SCOPES = ("me:read", "boards:read", "boards:write", "users:read", "webhooks:read", "webhooks:write",
              "workspaces:read")


def _token_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class MondayOAuth:
    """The app's authorization codes and the two OAuth endpoints; tokens go to ``issue(scopes)``."""

    def __init__(self, clock: SandboxClock, issue: Callable[[tuple[str, ...]], str], *, client_id: str = DEMO_CLIENT_ID,
                 client_secret: str = DEMO_CLIENT_SECRET, redirect_uris: Sequence[str] = (DEMO_REDIRECT_URI,)) -> None:
        """``issue(scopes) -> str`` mints a never-expiring access token for the demo user."""
        self.clock = clock
        self.issue = issue
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def routes(self) -> list[BaseRoute]:
        """The endpoints, at auth.monday.com's paths."""
        return [Route(AUTHORIZE_PATH, self.authorize, methods=["GET"]),
                Route(TOKEN_PATH, self.token, methods=["POST"])]

    async def authorize(self, request: Request) -> Response:
        """Consent as the demo user and redirect with a code (or an error page, or an error redirect)."""
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return PlainTextResponse("invalid_client: no app has this client_id", status_code=400)
        redirect_uri = q.get("redirect_uri") or self.redirect_uris[0]
        if redirect_uri not in self.redirect_uris:
            return PlainTextResponse("invalid_request: redirect_uri is not one of the app's redirect URLs",
                                     status_code=400)
        state = {"state": q["state"]} if "state" in q else {}
        scopes = tuple((q.get("scope") or " ".join(APP_SCOPES)).split())
        unknown = [scope for scope in scopes if scope not in SCOPES]
        if unknown:
            query = {"error": "invalid_scope", "error_description": f"Unknown scope: {' '.join(unknown)}", **state}
            return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)
        code = secrets_module.token_urlsafe(24)
        with self._lock:
            self.codes[code] = {"redirect_uri": redirect_uri, "scopes": scopes,
                                "expires_at": self.clock.time() + AUTH_CODE_TTL_S}
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, **state})}", status_code=302)

    async def token(self, request: Request) -> Response:
        """Trade a code for the account's access token."""
        form = _parsed(await request.body(), request.headers.get("content-type", ""))
        if form is None:
            return _token_error(400, "invalid_request", "Malformed request body")
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            str(form.get("client_secret", "")).encode(), self.client_secret.encode()
        ):
            return _token_error(401, "invalid_client", "Client authentication failed")
        with self._lock:
            grant = self.codes.pop(str(form.get("code", "")), None)  # spent by its first use, good or bad
        if grant is None or self.clock.time() > grant["expires_at"]:
            return _token_error(400, "invalid_grant", "The authorization code is invalid, expired or already used")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return _token_error(400, "invalid_grant", "redirect_uri does not match the one the code was issued for")
        access_token = self.issue(grant["scopes"])
        return JSONResponse({"access_token": access_token, "token_type": "Bearer", "scope": " ".join(grant["scopes"])},
                            headers={"Cache-Control": "no-store"})


def _parsed(raw: bytes, content_type: str) -> Mapping[str, Any] | None:
    try:
        if "json" in content_type:
            body = json.loads(raw or b"{}")
            return body if isinstance(body, dict) else None
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    except ValueError:
        return None
