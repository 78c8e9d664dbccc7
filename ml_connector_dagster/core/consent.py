"""OAuth 2.0 authorization-code consent, run from a terminal: the plumbing, vendor-free.

1. :meth:`CodeFlow.begin` makes the authorize URL with a fresh random ``state`` and remembers the
   request (state, redirect URI, scopes) in a :class:`~.oauth.TokenStore` (the Vault), so that the
   answer can be given later, by another process (``ml-connector auth <system> --code ...``).
2. The user consents in a browser, which is sent to ``redirect_uri?code=...&state=...``.
3. :meth:`CodeFlow.complete` takes that address, checks its ``state`` against the remembered one
   (constant-time), exchanges the code at the token endpoint and returns the grant; the caller
   stores the token the flow keeps (:meth:`CodeFlow.token_to_keep`) where the system's resource
   reads it: the refresh token where access tokens expire, the access token itself where they do
   not (and no refresh token exists).

A vendor contributes a :class:`CodeFlow` (its URLs, scopes and extra parameters) from
``systems/<vendor>/consent.py``.
"""

from __future__ import annotations

import hmac
import json
import secrets as pysecrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pydantic

from ml_connector_dagster.core.http import AuthenticationFailed, build_http_client, raise_for_api_error
from ml_connector_dagster.core.oauth import TokenStore

__all__ = ["LOCAL_REDIRECT_URI", "PENDING_TTL_S", "CodeFlow", "ConsentError", "ConsentGrant", "ConsentRequest"]

PENDING_TTL_S = 600  # authorization codes live about ten minutes at every vendor we know
# The callback URL to register on each vendor's app (nothing needs to listen there: the person
# copies the address the browser lands on).
LOCAL_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"


class ConsentError(RuntimeError):
    """The consent cannot be completed (no request pending, state mismatch, refused grant...)."""


class ConsentRequest(pydantic.BaseModel):
    """A consent in progress: what the answer must match."""

    url: str
    state: str = pydantic.Field(repr=False)
    redirect_uri: str
    scopes: list[str]
    created_at: float


class ConsentGrant(pydantic.BaseModel):
    """The useful part of the token endpoint's answer to the code."""

    access_token: pydantic.SecretStr
    refresh_token: pydantic.SecretStr | None = None
    scopes: list[str] = pydantic.Field(default_factory=list)
    expires_in: float | None = None


@dataclass(frozen=True)
class CodeFlow:
    """One app's authorization-code flow: where to send the user and where to trade the code."""

    system: str
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    extra_params: Mapping[str, str] = field(default_factory=dict)
    token_body: Literal["json", "form"] = "form"
    keeps: Literal["refresh_token", "access_token"] = "refresh_token"

    @property
    def kept_name(self) -> str:
        """What the kept token is called in messages ("refresh token", "access token")."""
        return self.keeps.replace("_", " ")

    def token_to_keep(self, grant: ConsentGrant) -> str:
        """The secret to store: the grant's refresh token, or its access token when that never expires."""
        token = grant.refresh_token if self.keeps == "refresh_token" else grant.access_token
        if token is None:  # _exchange refuses such a grant; kept for the type checker
            raise ConsentError(f"{self.system}: the grant holds no {self.kept_name}")
        return token.get_secret_value()

    @property
    def pending_key(self) -> str:
        """Where the request in progress is remembered."""
        return f"{self.system}.consent_request"

    def begin(self, store: TokenStore, *, clock: float | None = None) -> ConsentRequest:
        """A new authorize URL with a random ``state``, remembered in ``store`` (replacing any older one)."""
        state = pysecrets.token_urlsafe(24)
        params = {**self.extra_params, "client_id": self.client_id, "scope": " ".join(self.scopes),
                  "redirect_uri": self.redirect_uri, "state": state, "response_type": "code"}
        request = ConsentRequest(url=f"{self.authorize_url}?{urlencode(params)}", state=state,
                                 redirect_uri=self.redirect_uri, scopes=list(self.scopes),
                                 created_at=time.time() if clock is None else clock)
        store.save(self.pending_key, request.model_dump_json())
        return request

    def pending(self, store: TokenStore, *, clock: float | None = None) -> ConsentRequest:
        """The request in progress, or :class:`ConsentError` when there is none (or it is too old)."""
        raw = store.load(self.pending_key)
        again = f"run `ml-connector auth {self.system}` to start one"
        if not raw:
            raise ConsentError(f"no {self.system} consent is in progress: {again}")
        try:
            request = ConsentRequest.model_validate(json.loads(raw))
        except (ValueError, pydantic.ValidationError):
            raise ConsentError(f"the {self.system} consent in progress is unreadable: {again}") from None
        now = time.time() if clock is None else clock
        if now - request.created_at > PENDING_TTL_S:
            raise ConsentError(f"the {self.system} consent started more than {PENDING_TTL_S // 60} minutes ago "
                               f"has expired: {again}")
        return request

    def complete(self, store: TokenStore, answer: str, *, transport: httpx.BaseTransport | None = None,
                 clock: float | None = None) -> ConsentGrant:
        """Check ``answer`` (the address the browser was sent to) against the pending request, then
        exchange its code. The pending request is spent either way: a code is good for one try."""
        request = self.pending(store, clock=clock)
        store.save(self.pending_key, "")
        code = _code_from(answer, request.state, self.system)
        return self._exchange(code, request.redirect_uri, transport)

    def _exchange(self, code: str, redirect_uri: str, transport: httpx.BaseTransport | None) -> ConsentGrant:
        body = {"grant_type": "authorization_code", "client_id": self.client_id, "client_secret": self.client_secret,
                "code": code, "redirect_uri": redirect_uri}
        secrets = (self.client_secret, code)
        # Not retried: a code is spent by its first use, so a replay could only fail.
        with build_http_client(f"{self.system}.token", "", transport=transport, secrets=secrets) as client:
            if self.token_body == "json":
                response = client.post(self.token_url, json=body)
            else:
                response = client.post(self.token_url, data=body)
            if response.status_code != 200:
                if response.status_code in (400, 401, 403):
                    raise AuthenticationFailed(system=self.system, status_code=response.status_code, method="POST",
                                               url=self.token_url, detail=_oauth_detail(response), secrets=secrets)
                raise_for_api_error(response, self.system, secrets)
            try:
                answer = response.json()
                grant = ConsentGrant(
                    refresh_token=answer.get("refresh_token"), access_token=answer.get("access_token"),
                    scopes=str(answer.get("scope") or "").split(), expires_in=answer.get("expires_in"),
                )
            except (ValueError, AttributeError, pydantic.ValidationError):
                raise ConsentError(f"{self.system}: the token endpoint answered without an access token") from None
        if self.keeps == "refresh_token" and grant.refresh_token is None:
            raise ConsentError(
                f"{self.system}: the token endpoint answered without a refresh token; the app must ask for "
                "offline access (e.g. the offline_access scope)"
            )
        return grant


def _code_from(answer: str, expected_state: str, system: str) -> str:
    """The code in the redirect address (or its query string), once its state is the expected one."""
    text = answer.strip()
    query = urlsplit(text).query if "://" in text else text.lstrip("?")
    params = {key: values[0] for key, values in parse_qs(query).items() if values}
    if "error" in params:
        reason = params.get("error_description") or params["error"]
        raise ConsentError(f"{system} refused the consent: {reason}")
    code, state = params.get("code"), params.get("state")
    if not code or state is None:
        raise ConsentError(
            "paste the whole address your browser was sent to after consenting: it carries both code and state"
        )
    if not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise ConsentError(
            f"the state in that address is not the one this consent sent: it answers another (or a forged) "
            f"request. Run `ml-connector auth {system}` again and use the new address"
        )
    return code


def _oauth_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "token request refused"
    if not isinstance(body, dict):
        return "token request refused"
    return ": ".join(str(part) for part in (body.get("error"), body.get("error_description")) if part) or \
        "token request refused"
