"""Authentication: personal access tokens, and OAuth 2.0 at ``/-/oauth_authorize`` and ``/-/oauth_token``.

Access tokens live one hour; refresh tokens never expire and do not rotate (the same one keeps
working until the grant is revoked). The token endpoint takes a form body only, and answers the
RFC 6749 error shape (``invalid_client`` 401, ``invalid_grant`` 400).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as secrets_module
from base64 import urlsafe_b64encode
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..framework import IssuedToken
from .calls import Answer, Caller
from .render import error_body
from .tenant import Tenant

ACCESS_TOKEN_TTL_S = 3600
AUTH_CODE_TTL_S = 600
SCOPES = frozenset({
    "default", "openid", "email", "profile", "attachments:read", "attachments:write", "attachments:delete",
    "custom_fields:read", "custom_fields:write", "goals:read", "jobs:read", "tasks:read", "tasks:write",
    "tasks:delete", "project_templates:read", "projects:read", "projects:write", "projects:delete", "users:read",
    "teams:read", "stories:read", "stories:write", "tags:read", "tags:write", "webhooks:read", "webhooks:write",
    "webhooks:delete", "workspaces:read",
})


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class OAuthEndpoints:
    """Mixed into the simulator: who is calling, and the OAuth grant endpoints."""

    tenant: Tenant

    def _authenticate(self, authorization: str | None) -> Caller | Answer:
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return Answer(401, error_body("Not Authorized"))
        for pat, user_gid in self.pats.items():
            if hmac.compare_digest(credential.encode(), pat.encode()):
                return Caller(user_gid, _bucket(credential), ("default",), "pat")
        token = self.valid_token(credential, "access")
        if token is None:
            return Answer(401, error_body("Not Authorized"))
        return Caller(token.subject, _bucket(credential), token.scopes, "oauth")

    def _remember_refresh_token(self, value: str, scopes: tuple[str, ...]) -> str:
        with self.lock:
            self.tokens[value] = IssuedToken(value, "refresh", self.tenant.me, self.clock.time(), None, scopes,
                                             {"client_id": self.client_id})
        return value

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        problems = []
        if q.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        if q.get("redirect_uri") not in self.redirect_uris:
            problems.append("redirect_uri does not match the app's registered redirect URL")
        if q.get("response_type") != "code":
            problems.append("response_type must be code")
        scopes = tuple((q.get("scope") or "default").split())
        if any(s not in SCOPES for s in scopes):
            problems.append("invalid scope")
        if problems:
            return _oauth_error(400, "invalid_request", "; ".join(problems))
        code = secrets_module.token_urlsafe(24)
        with self.lock:
            self.tenant.auth_codes[code] = {
                "redirect_uri": q["redirect_uri"], "scopes": scopes, "expires_at": self.clock.time() + AUTH_CODE_TTL_S,
                "challenge": q.get("code_challenge"), "user": self.tenant.me,
            }
        query = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(query)}", status_code=302)

    async def _token(self, request: Request) -> Response:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return _oauth_error(400, "invalid_request", "The token request must be form encoded")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            return _oauth_error(401, "invalid_client", "The client is unknown or its secret is wrong")
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                return self._grant_code(form)
            if grant == "refresh_token":
                refresh = self.valid_token(form.get("refresh_token"), "refresh")
                if refresh is None:
                    return _oauth_error(400, "invalid_grant", "The refresh token is invalid or was revoked")
                return self._token_answer(refresh.subject, refresh.scopes, refresh_token=None)
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")

    def _grant_code(self, form: dict[str, str]) -> Response:
        grant = self.tenant.auth_codes.pop(form.get("code", ""), None)
        if grant is None or self.clock.time() > grant["expires_at"]:
            return _oauth_error(400, "invalid_grant", "The authorization code is invalid or expired")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return _oauth_error(400, "invalid_grant", "redirect_uri is not the one the code was issued for")
        if grant["challenge"]:
            verifier = form.get("code_verifier", "")
            digest = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not hmac.compare_digest(digest, grant["challenge"]):
                return _oauth_error(400, "invalid_grant", "code_verifier does not match the code_challenge")
        refresh = self.issue_token("refresh", grant["user"], None, scopes=grant["scopes"], client_id=self.client_id)
        return self._token_answer(grant["user"], grant["scopes"], refresh_token=refresh.value)

    def _token_answer(self, user_gid: str, scopes: tuple[str, ...], refresh_token: str | None) -> Response:
        access = self.issue_token("access", user_gid, ACCESS_TOKEN_TTL_S, scopes=scopes, prefix="2/",
                                  client_id=self.client_id)
        user = self.tenant.users[user_gid]
        body: dict[str, Any] = {
            "access_token": access.value, "expires_in": ACCESS_TOKEN_TTL_S, "token_type": "bearer",
            "data": {"id": int(user.gid), "gid": user.gid, "name": user.name, "email": user.email},
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _bucket(credential: str) -> str:
    """The rate-limit bucket of a token, without keeping the token itself around."""
    return hashlib.sha256(credential.encode()).hexdigest()[:16]
