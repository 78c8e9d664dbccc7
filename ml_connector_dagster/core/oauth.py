"""Token providers as ``httpx.Auth`` flows: client credentials, rotating refresh tokens, static tokens.

An ``httpx.Auth`` flow sits above the retrying transport of :func:`~.http.build_http_client`: it
sets the Authorization header, sees the final response, and on a 401 fetches a fresh token once and
replays the request. Token endpoints are called through a short-lived client from the same factory,
so they get the same timeouts, retries and redaction.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
import pydantic

from ml_connector_dagster.core.http import (
    AuthenticationFailed,
    build_http_client,
    raise_for_api_error,
    retry_safe,
)

__all__ = [
    "ClientCredentialsAuth",
    "ConsentRequired",
    "MemoryTokenStore",
    "RotatingRefreshTokenAuth",
    "StaticTokenAuth",
    "SwappingTokenStore",
    "TokenStore",
]

logger = logging.getLogger("ml_connector.oauth")

Clock = Callable[[], float]


class TokenStore(Protocol):
    """Where long-lived credentials (refresh tokens) survive a process restart."""

    def load(self, name: str) -> str | None:
        """The stored value, or None."""
        ...

    def save(self, name: str, value: str) -> None:
        """Store ``value`` atomically (a reader sees the old or the new value, never a mix)."""
        ...


@runtime_checkable
class SwappingTokenStore(TokenStore, Protocol):
    """A store that can replace a value only if it is still the expected one (e.g. the Vault)."""

    def compare_and_swap(self, name: str, expected: str | None, new: str) -> bool:
        """Store ``new`` if the current value equals ``expected``; True when it did."""
        ...


class MemoryTokenStore:
    """A process-local TokenStore for the sandbox and tests."""

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._values = dict(initial or {})
        self._lock = threading.Lock()

    def load(self, name: str) -> str | None:
        with self._lock:
            return self._values.get(name)

    def save(self, name: str, value: str) -> None:
        with self._lock:
            self._values[name] = value

    def compare_and_swap(self, name: str, expected: str | None, new: str) -> bool:
        with self._lock:
            if self._values.get(name) != expected:
                return False
            self._values[name] = new
            return True

    def __repr__(self) -> str:
        return f"MemoryTokenStore(names={sorted(self._values)})"


class ConsentRequired(AuthenticationFailed):
    """The stored grant is missing, expired or revoked: only a person consenting again helps, never a retry."""


class _TokenResponse(pydantic.BaseModel):
    """The fields of an RFC 6749 token response that we use."""

    access_token: pydantic.SecretStr
    token_type: str = "Bearer"
    expires_in: float | None = None
    refresh_token: pydantic.SecretStr | None = None


@dataclass(frozen=True)
class _AccessToken:
    value: str = field(repr=False)
    refresh_at: float  # clock time from which the token is treated as expired


def _oauth_error(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or ""), str(body.get("error_description") or "")


class _CachedBearerAuth(httpx.Auth):
    """A cached bearer token, refreshed before expiry and once on a 401; one refresh at a time."""

    requires_request_body = True  # the body must be replayable after a 401

    def __init__(self, token_url: str, *, system: str | None, clock: Clock, refresh_margin_s: float,
                 transport: httpx.BaseTransport | None) -> None:
        self._token_url = token_url
        self._system = system or urlsplit(token_url).hostname or "oauth"
        self._clock = clock
        self._refresh_margin_s = refresh_margin_s
        self._transport = transport
        self._lock = threading.Lock()
        self._token: _AccessToken | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_token(rejected=None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = self._valid_token(rejected=token)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request

    def _valid_token(self, rejected: str | None) -> str:
        """The cached token if still fresh and not ``rejected`` by the API, else a new one.

        A thread that waited on the lock while another refreshed finds the new token here and uses
        it, instead of refreshing (and, for rotating tokens, spending the refresh token) again.
        """
        with self._lock:
            current = self._token
            if current is not None and current.value != rejected and self._clock() < current.refresh_at:
                return current.value
            self._token = self._fetch_token()
            return self._token.value

    def _fetch_token(self) -> _AccessToken:
        raise NotImplementedError

    def _token_client(self, secrets: tuple[str, ...]) -> httpx.Client:
        return build_http_client(
            f"{self._system}.token", "", transport=self._transport, secrets=secrets
        )

    def _access_token(self, parsed: _TokenResponse, issued_at: float) -> _AccessToken:
        lifetime = parsed.expires_in if parsed.expires_in is not None else math.inf
        # A short-lived token is refreshed at half its life rather than never used.
        margin = min(self._refresh_margin_s, lifetime / 2)
        return _AccessToken(parsed.access_token.get_secret_value(), issued_at + lifetime - margin)

    def _parse(self, response: httpx.Response, secrets: tuple[str, ...]) -> _TokenResponse:
        try:
            return _TokenResponse.model_validate_json(response.content)
        except pydantic.ValidationError:
            raise AuthenticationFailed(
                system=self._system, status_code=response.status_code, method="POST",
                url=self._token_url, detail="the token endpoint answered without an access_token",
                secrets=secrets,
            ) from None

    def _raise_token_error(self, response: httpx.Response, secrets: tuple[str, ...], hint: str = "",
                           error_class: type[AuthenticationFailed] = AuthenticationFailed) -> None:
        if response.status_code == 429 or response.status_code >= 500:
            raise_for_api_error(response, self._system, secrets)  # transient: not a credentials problem
        error, description = _oauth_error(response)
        detail = ": ".join(part for part in (error, description) if part) or "token request refused"
        raise error_class(
            system=self._system, status_code=response.status_code, method="POST", url=self._token_url,
            detail=f"{detail}{hint}", secrets=secrets,
        )


class ClientCredentialsAuth(_CachedBearerAuth):
    """OAuth 2.0 client credentials: no refresh token, so a new access token is fetched
    ``refresh_margin_s`` before ``expires_in`` runs out, and once when the API answers 401."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        refresh_margin_s: float = 60,
        clock: Clock = time.time,
        system: str | None = None,
    ) -> None:
        super().__init__(token_url, system=system, clock=clock, refresh_margin_s=refresh_margin_s,
                         transport=transport)
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._extra_params = dict(extra_params or {})

    def _fetch_token(self) -> _AccessToken:
        form: dict[str, Any] = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            **({"scope": self._scope} if self._scope else {}),
            **self._extra_params,
        }
        secrets = (self._client_secret,)
        issued_at = self._clock()
        # Asking for a token twice is harmless, so the POST may be retried.
        with self._token_client(secrets) as client:
            response = client.post(self._token_url, data=form, extensions=retry_safe())
            if response.status_code != 200:
                self._raise_token_error(response, secrets)
            parsed = self._parse(response, secrets)
        logger.debug("%s: fetched a client-credentials token", self._system)
        return self._access_token(parsed, issued_at)

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(token_url={self._token_url!r}, client_id={self._client_id!r})"


class RotatingRefreshTokenAuth(_CachedBearerAuth):
    """OAuth 2.0 refresh tokens that rotate on every use (Atlassian 3LO style).

    The refresh token lives in ``store`` under ``store_key`` (seeded by the consent step). Each
    refresh returns a new refresh token, which is saved before the new access token is used, so a
    crash right after the refresh loses nothing and a new instance on the same store carries on.
    With a :class:`SwappingTokenStore` (the Vault) the save is a compare-and-swap, so two processes
    that refreshed concurrently do not overwrite each other's token blindly.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        store: TokenStore,
        store_key: str,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
        refresh_margin_s: float = 60,
        system: str | None = None,
    ) -> None:
        super().__init__(token_url, system=system, clock=clock, refresh_margin_s=refresh_margin_s,
                         transport=transport)
        self._client_id = client_id
        self._client_secret = client_secret
        self._store = store
        self._store_key = store_key
        self._consent_hint = f"run `ml-connector auth {system or store_key}` to consent again"

    def _fetch_token(self) -> _AccessToken:
        refresh_token = self._store.load(self._store_key)
        if not refresh_token:
            raise ConsentRequired(
                system=self._system, method="POST", url=self._token_url,
                detail=f"no refresh token stored under {self._store_key!r}; {self._consent_hint}",
            )
        body = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": refresh_token,
        }
        secrets = (self._client_secret, refresh_token)
        issued_at = self._clock()
        # Not retry-safe: a lost answer may already have rotated the token; the error goes up instead.
        with self._token_client(secrets) as client:
            response = client.post(self._token_url, json=body)
            if response.status_code != 200:
                error, _ = _oauth_error(response)
                if error == "invalid_grant":
                    self._raise_token_error(response, secrets, f" (the refresh token is no longer valid; {self._consent_hint})",
                                            ConsentRequired)
                self._raise_token_error(response, secrets)
            parsed = self._parse(response, secrets)
        if parsed.refresh_token is not None:
            self._keep_refresh_token(refresh_token, parsed.refresh_token.get_secret_value())
        logger.debug("%s: refreshed the access token", self._system)
        return self._access_token(parsed, issued_at)

    def _keep_refresh_token(self, spent: str, new: str) -> None:
        if new == spent:
            return
        if isinstance(self._store, SwappingTokenStore):
            if not self._store.compare_and_swap(self._store_key, spent, new):
                logger.warning(
                    "%s: another process rotated %r first; keeping the token it saved",
                    self._system, self._store_key,
                )
            return
        self._store.save(self._store_key, new)

    def __repr__(self) -> str:
        return (
            f"RotatingRefreshTokenAuth(token_url={self._token_url!r}, client_id={self._client_id!r}, "
            f"store_key={self._store_key!r})"
        )


class StaticTokenAuth(httpx.Auth):
    """A personal access token or API token sent as-is on every request.

    ``scheme=None`` sends the raw token in Authorization (Monday.com). For user:token basic auth use
    ``httpx.BasicAuth``.
    """

    def __init__(self, token: str, *, scheme: str | None = "Bearer") -> None:
        if not token:
            raise ValueError("StaticTokenAuth needs a non-empty token (is the environment variable set?)")
        self._scheme = scheme
        self._header = f"{scheme} {token}" if scheme else token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return f"StaticTokenAuth(scheme={self._scheme!r})"

