"""Authentication: OAuth 2.0 (3LO) with rotating refresh tokens, and API-token basic auth."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets as secrets_module
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from ..framework import IssuedToken
from .records import (
    Caller,
    jira_error,
)
from .site import (
    ACCESS_TOKEN_TTL_S,
    AUTH_CODE_TTL_S,
    CLOUD_ID,
    DEMO_API_TOKEN,
    DEMO_EMAIL,
    DEMO_SCOPES,
    DEMO_USER,
    REFRESH_TOKEN_IDLE_S,
    SITE_NAME,
    User,
)


class OAuthEndpoints:
    """Mixed into the simulator: the 3LO endpoints and the authentication of API calls."""

    def _authenticate(self, request: Request, scope: str | None) -> Caller | Response:
        cloud_id = request.path_params.get("cloud_id")
        root = str(request.base_url).rstrip("/")
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and cloud_id is not None:
            token = self.valid_token(credential.strip(), "access")
            if token is None:
                return JSONResponse({"code": 401, "message": "Unauthorized"}, status_code=401)
            if cloud_id != CLOUD_ID:
                return JSONResponse({"code": 404, "message": "Not Found"}, status_code=404)
            if scope is not None and scope not in token.scopes:
                return JSONResponse({"code": 401, "message": "Unauthorized; scope does not match"}, status_code=401)
            return Caller(self.users[token.subject], "oauth", f"{root}/ex/jira/{CLOUD_ID}", token.extra.get("client_id"))
        if scheme.lower() == "basic":
            user = self._basic_user(credential.strip())
            if user is None:
                return PlainTextResponse("Client must be authenticated to access this resource.", status_code=401)
            if cloud_id is not None and cloud_id != CLOUD_ID:
                return JSONResponse({"code": 404, "message": "Not Found"}, status_code=404)
            base = f"{root}/ex/jira/{CLOUD_ID}" if cloud_id else root
            return Caller(user, "basic", base)
        if cloud_id is not None:
            return JSONResponse({"code": 401, "message": "Unauthorized"}, status_code=401)
        # The site itself does not take 3LO tokens (only api.atlassian.com does), nor anonymous calls.
        return jira_error(401, "You are not authenticated. Authentication required to perform this operation.")

    def _basic_user(self, credential: str) -> User | None:
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        email, _, api_token = decoded.partition(":")
        if hmac.compare_digest(email.encode(), DEMO_EMAIL.encode()) and hmac.compare_digest(
            api_token.encode(), DEMO_API_TOKEN.encode()
        ):
            return DEMO_USER
        return None

    def _remember_token(self, value: str, kind: str, ttl_s: float, scopes: Iterable[str], **extra: Any) -> str:
        now = self.clock.time()
        with self.lock:
            self.tokens[value] = IssuedToken(value, kind, DEMO_USER.account_id, now, now + ttl_s, tuple(scopes), dict(extra))
        return value

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        problems = []
        if q.get("audience") != "api.atlassian.com":
            problems.append("audience must be api.atlassian.com")
        if q.get("response_type") != "code":
            problems.append("response_type must be code")
        if q.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        if q.get("redirect_uri") not in self.redirect_uris:
            problems.append("redirect_uri does not match the app's callback URL")
        scopes = tuple((q.get("scope") or "").split())
        unknown = [s for s in scopes if s not in DEMO_SCOPES and s != "manage:jira-configuration"]
        if not scopes or unknown:
            problems.append("invalid scope")
        if problems:
            return JSONResponse({"error": "invalid_request", "error_description": "; ".join(problems)}, status_code=400)
        code = secrets_module.token_urlsafe(24)
        with self.lock:
            self.auth_codes[code] = {
                "redirect_uri": q["redirect_uri"],
                "scopes": scopes,
                "client_id": self.client_id,
                "expires_at": self.clock.time() + AUTH_CODE_TTL_S,
            }
        query = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(query)}", status_code=302)

    async def _token(self, request: Request) -> Response:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        try:
            if "json" in content_type:
                form = json.loads(raw or b"{}")
            else:
                form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        except ValueError:
            form = None
        if not isinstance(form, dict):
            return JSONResponse({"error": "invalid_request", "error_description": "Malformed request body"}, status_code=400)
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            str(form.get("client_secret", "")).encode(), self.app_secret.encode()
        ):
            return JSONResponse({"error": "access_denied", "error_description": "Unauthorized"}, status_code=401)
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                return self._grant_code(form)
            if grant == "refresh_token":
                return self._grant_refresh(form)
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": f"Unsupported grant type: {grant}"}, status_code=400
        )

    def _grant_code(self, form: Mapping[str, Any]) -> Response:
        grant = self.auth_codes.pop(str(form.get("code", "")), None)
        if grant is None or self.clock.time() > grant["expires_at"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid authorization code"}, status_code=403)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "redirect_uri is not the one the code was issued for"},
                status_code=403,
            )
        return self._token_response(grant["scopes"])

    def _grant_refresh(self, form: Mapping[str, Any]) -> Response:
        value = str(form.get("refresh_token", ""))
        token = self.valid_token(value, "refresh")
        now = self.clock.time()
        rotated_at = token.extra.get("rotated_at") if token else None
        if token is None or (rotated_at is not None and now > rotated_at + self.refresh_reuse_window_s):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}, status_code=403
            )
        if rotated_at is None:
            token.extra["rotated_at"] = now
        return self._token_response(token.scopes)

    def _token_response(self, scopes: Sequence[str]) -> Response:
        access = self.issue_token("access", DEMO_USER.account_id, ACCESS_TOKEN_TTL_S, scopes=scopes,
                                  client_id=self.client_id)
        body: dict[str, Any] = {
            "access_token": access.value,
            "expires_in": ACCESS_TOKEN_TTL_S,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }
        if "offline_access" in scopes:
            body["refresh_token"] = self.issue_token(
                "refresh", DEMO_USER.account_id, REFRESH_TOKEN_IDLE_S, scopes=scopes, client_id=self.client_id
            ).value
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _accessible_resources(self, request: Request) -> Response:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        token = self.valid_token(credential.strip(), "access") if scheme.lower() == "bearer" else None
        if token is None:
            return JSONResponse({"code": 401, "message": "Unauthorized"}, status_code=401)
        return JSONResponse(
            [
                {
                    "id": CLOUD_ID,
                    "name": SITE_NAME,
                    "url": self.site_url,
                    "scopes": [s for s in token.scopes if s != "offline_access"],
                    "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/rocket.png",
                }
            ]
        )
