"""Acumatica's identity server and licence: OAuth 2.0 tokens, API sessions, and the API-user limit.

- ``POST /identity/connect/token`` (form): grants ``password`` (ROPC) and ``refresh_token``; the
  client authenticates with ``client_id`` (``<GUID>@<Tenant>``) and ``client_secret`` in the form or
  as HTTP Basic. Scopes ``api`` (needed by every API call) and ``offline_access`` (adds a refresh
  token). ``client_credentials`` is not a grant Acumatica offers; ``authorization_code`` needs a code
  from ``/identity/connect/authorize``, which the sandbox never hands out. Errors are RFC 6749
  bodies, 400 ``{"error": ...}``. Access tokens live 3600 s.
- **Sessions** A password grant opens an API session (one *API user* of the licence); a refresh
  grant reuses the session of its refresh token, as Acumatica does, and rotates the refresh token
  (the old one dies: IdentityServer's one-time-only usage — unconfirmed, and the strict choice).
  A session ends at ``POST /entity/auth/logout``, after ``session_timeout_s`` without a request,
  and — without ``offline_access`` — when its access token expires. A refresh token outlives an
  idle session and opens it again (if the licence has room).
- **Licence** ``api_users`` sessions at most (a trial allows 2): one more sign-in is refused with
  400 ``invalid_grant`` / ``API Login Limit`` (the cookie sign-in answers the same text; the exact
  OAuth body is unconfirmed). ``concurrent_requests`` API requests in flight at most: one more is
  answered 429 at once (the licence queue is not modelled).
- Discovery at ``GET /identity/.well-known/openid-configuration``.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from .simulator import AcumaticaSimulator

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "API_LOGIN_LIMIT",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_PASSWORD",
    "DEMO_SCOPE",
    "DEMO_USERNAME",
    "TRIAL",
    "ApiSession",
    "IdentityServer",
    "Licence",
]

DEMO_CLIENT_ID = "5E0A7C1B-93D4-4F2A-8B6E-2C9F1D7A4E36@Nordvik"
DEMO_CLIENT_SECRET = "sandbox-acumatica-client-secret-not-for-production"
DEMO_USERNAME = "mlconnector.api"
DEMO_PASSWORD = "sandbox-acumatica-password-not-for-production"
DEMO_SCOPE = "api offline_access"
ACCESS_TOKEN_TTL_S = 3600
REFRESH_TOKEN_TTL_S = 30 * 86_400  # sliding: every refresh starts a new lifetime
API_LOGIN_LIMIT = "API Login Limit"
_SCOPES = frozenset({"api", "offline_access", "openid", "profile", "email"})


@dataclass(frozen=True)
class Licence:
    """What the instance's licence allows the API (None: no limit)."""

    name: str = "Trial"
    api_users: int | None = 2
    concurrent_requests: int | None = None


TRIAL = Licence()


@dataclass
class ApiSession:
    """One signed-in API user."""

    id: str
    username: str
    offline: bool
    opened_at: float
    last_active: float
    closed_at: float | None = None


def _oauth_error(error: str, description: str | None = None) -> JSONResponse:
    body = {"error": error, **({"error_description": description} if description else {})}
    return JSONResponse(body, status_code=400, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class IdentityServer:
    """Token endpoint, discovery and the session bookkeeping of one simulator."""

    def __init__(self, sim: AcumaticaSimulator, licence: Licence, session_timeout_s: float) -> None:
        self.sim = sim
        self.licence = licence
        self.session_timeout_s = session_timeout_s
        self.sessions: dict[str, ApiSession] = {}

    # -- sessions ----------------------------------------------------------------------------
    def is_active(self, session: ApiSession, now: float) -> bool:
        if session.closed_at is not None:
            return False
        if now - session.last_active >= self.session_timeout_s:
            return False
        return session.offline or now < session.opened_at + ACCESS_TOKEN_TTL_S

    def active_sessions(self) -> list[ApiSession]:
        now = self.sim.clock.time()
        return [session for session in self.sessions.values() if self.is_active(session, now)]

    def _room_for_one_more(self) -> bool:
        limit = self.licence.api_users
        return limit is None or len(self.active_sessions()) < limit

    def authenticate(self, authorization: str | None) -> ApiSession | None:
        """The active session of a Bearer token with the ``api`` scope, touched; None otherwise."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = self.sim.valid_token(authorization[7:].strip())
        if token is None or "api" not in token.scopes:
            return None
        session = self.sessions.get(token.extra.get("session", ""))
        now = self.sim.clock.time()
        if session is None or not self.is_active(session, now):
            return None
        session.last_active = now
        return session

    def sign_out(self, session: ApiSession) -> None:
        """End ``session`` and revoke every token issued for it."""
        with self.sim.lock:
            session.closed_at = self.sim.clock.time()
            for token in self.sim.tokens.values():
                if token.extra.get("session") == session.id:
                    self.sim.revoke_token(token.value)

    # -- HTTP --------------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        issuer = f"{request.url.scheme}://{request.url.netloc}{self.sim.site_path}/identity"
        return JSONResponse({
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/openid-configuration/jwks",
            "authorization_endpoint": f"{issuer}/connect/authorize",
            "token_endpoint": f"{issuer}/connect/token",
            "userinfo_endpoint": f"{issuer}/connect/userinfo",
            "end_session_endpoint": f"{issuer}/connect/endsession",
            "revocation_endpoint": f"{issuer}/connect/revocation",
            "scopes_supported": sorted(_SCOPES),
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "grant_types_supported": ["authorization_code", "password", "refresh_token", "implicit", "hybrid"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        })

    async def token(self, request: Request) -> Response:
        if "x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return _oauth_error("invalid_request", "the token request must be a form post")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return _oauth_error("invalid_client")
        if client_id != DEMO_CLIENT_ID or not hmac.compare_digest(client_secret or "", DEMO_CLIENT_SECRET):
            return _oauth_error("invalid_client")
        grant = form.get("grant_type")
        with self.sim.lock:
            if grant == "password":
                return self._password_grant(form)
            if grant == "refresh_token":
                return self._refresh_grant(form)
            if grant == "authorization_code":
                return _oauth_error("invalid_grant")
        return _oauth_error("unsupported_grant_type")

    def _password_grant(self, form: dict[str, str]) -> Response:
        scopes = form.get("scope", "api").split()
        if not scopes or any(scope not in _SCOPES for scope in scopes):
            return _oauth_error("invalid_scope")
        password_ok = hmac.compare_digest(form.get("password", ""), DEMO_PASSWORD)
        if form.get("username") != DEMO_USERNAME or not password_ok:
            return _oauth_error("invalid_grant", "invalid_username_or_password")
        if not self._room_for_one_more():
            return _oauth_error("invalid_grant", API_LOGIN_LIMIT)
        now = self.sim.clock.time()
        session = ApiSession(id=self.sim.new_id("session"), username=DEMO_USERNAME,
                             offline="offline_access" in scopes, opened_at=now, last_active=now)
        self.sessions[session.id] = session
        return self._issue(session, scopes)

    def _refresh_grant(self, form: dict[str, str]) -> Response:
        spent = self.sim.valid_token(form.get("refresh_token"), kind="refresh")
        session = None if spent is None else self.sessions.get(spent.extra.get("session", ""))
        if spent is None or session is None or session.closed_at is not None:
            return _oauth_error("invalid_grant")
        now = self.sim.clock.time()
        if not self.is_active(session, now):
            if not self._room_for_one_more():
                return _oauth_error("invalid_grant", API_LOGIN_LIMIT)
            session.opened_at = now
        session.last_active = now
        self.sim.revoke_token(spent.value)
        return self._issue(session, list(spent.scopes))

    def _issue(self, session: ApiSession, scopes: list[str]) -> Response:
        access = self.sim.issue_token("access", session.username, ACCESS_TOKEN_TTL_S, scopes=scopes,
                                      session=session.id)
        body: dict[str, Any] = {"access_token": access.value, "expires_in": ACCESS_TOKEN_TTL_S,
                                "token_type": "Bearer", "scope": " ".join(scopes)}
        if session.offline:
            refresh = self.sim.issue_token("refresh", session.username, REFRESH_TOKEN_TTL_S, scopes=scopes,
                                           session=session.id)
            body["refresh_token"] = refresh.value
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
