"""How a handler sees one API call, how it answers, and Asana's offset paging.

Handlers are plain functions ``(Call) -> Answer`` so that ``POST /batch`` can run them as
actions; they raise :class:`AsanaError` for anything Asana answers with an error body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from .render import Expander, error_body, parse_opt_fields, project_fields

MAX_LIMIT = 100
# Past this many records an unpaginated list is refused, as Asana does.
UNPAGINATED_CAP = 1000


class AsanaError(Exception):
    """An error answer: status and messages in Asana's ``{"errors": [...]}`` shape."""

    def __init__(self, status: int, *messages: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(messages[0] if messages else str(status))
        self.status = status
        self.messages = messages or ("Error",)
        self.headers = dict(headers or {})

    def answer(self) -> Answer:
        return Answer(self.status, error_body(*self.messages), self.headers)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Caller:
    user_gid: str
    token_key: str  # the rate-limit bucket: one per token
    scopes: tuple[str, ...]  # ("default",) = every scope
    via: str  # pat | oauth


@dataclass
class Call:
    """One API request (or one batch action)."""

    caller: Caller
    method: str
    path: str  # relative to /api/1.0
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    base_url: str  # https://app.asana.com/api/1.0 as the caller reached it
    expand: Expander | None = None  # full records of nested references, for dotted opt_fields

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` member of the body (Asana wraps every request body in it)."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict) or not isinstance(self.body.get("data", {}), dict):
            raise AsanaError(400, "Request data must be a JSON object, not an array or a scalar")
        return self.body.get("data") or {}

    @property
    def opt_fields(self) -> list[str] | None:
        values = self.query.get("opt_fields")
        return parse_opt_fields(values) if values else None

    def shaped(self, record: dict[str, Any], default: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
        """``record`` as the caller asked for it: its opt_fields, else the default representation."""
        fields = self.opt_fields
        if fields is not None:
            return project_fields(record, fields, self.expand)
        return default(record) if default else record


def created(body: Any, location: str) -> Answer:
    return Answer(201, {"data": body}, {"Location": location})


def ok(body: Any) -> Answer:
    return Answer(200, {"data": body})


def required(data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None or value == "":
        raise AsanaError(400, f"{name}: Missing input")
    return value


def bool_arg(call: Call, name: str) -> bool | None:
    value = call.arg(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise AsanaError(400, f"{name}: Not a boolean: {value}")
    return value == "true"


class Pager:
    """Offset paging: ``limit`` 1..100, opaque ``next_page.offset`` tokens that expire.

    A token names the last gid of its page and the query it belongs to, signed so it cannot be
    forged; it dies ``ttl_s`` after it was issued (as Asana's do, "as data may have changed").
    """

    def __init__(self, secret: bytes, clock: Callable[[], float], ttl_s: float) -> None:
        self._secret = secret
        self._clock = clock
        self.ttl_s = ttl_s

    def page(self, call: Call, records: Sequence[Any], render: Callable[[Any], dict[str, Any]],
             gid: Callable[[Any], str] = attrgetter("gid")) -> Answer:
        """One page of ``records`` (in list order; ``gid`` names each) for ``call``."""
        limit_arg = call.arg("limit")
        offset = call.arg("offset")
        if limit_arg is None:
            if offset is not None:
                raise AsanaError(400, "offset: You must specify a limit to use an offset")
            if len(records) > UNPAGINATED_CAP:
                raise AsanaError(400, "The result is too large. You should use pagination (may require specifying a workspace)!")
            return ok([render(r) for r in records])
        try:
            limit = int(limit_arg)
        except ValueError:
            raise AsanaError(400, f"limit: Not an integer: {limit_arg}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise AsanaError(400, f"limit: The value must be between 1 and {MAX_LIMIT}, inclusive")
        fingerprint = self._fingerprint(call)
        start = 0
        if offset is not None:
            after = self._read(offset, fingerprint)
            if after is None:
                raise AsanaError(400, "offset: Your pagination token is invalid or has expired. Start again from the first page.")
            gids = [gid(r) for r in records]
            start = next((i + 1 for i, g in enumerate(gids) if g == after), None) or sum(
                1 for g in gids if int(g) <= int(after))
        page = records[start : start + limit]
        body: dict[str, Any] = {"data": [render(r) for r in page], "next_page": None}
        if start + limit < len(records) and page:
            token = self._token(fingerprint, gid(page[-1]))
            query = [(k, v) for k, vs in call.query.items() if k != "offset" for v in vs] + [("offset", token)]
            path = call.path + "?" + "&".join(f"{k}={v}" for k, v in query)
            body["next_page"] = {"offset": token, "path": path, "uri": f"{call.base_url}{path}"}
        return Answer(200, body)

    def _fingerprint(self, call: Call) -> str:
        query = sorted((k, v) for k, vs in call.query.items() if k not in {"offset", "limit", "opt_fields"} for v in vs)
        return hashlib.sha256(json.dumps([call.path, query]).encode()).hexdigest()[:16]

    def _token(self, fingerprint: str, after_gid: str) -> str:
        payload = base64.urlsafe_b64encode(json.dumps([fingerprint, after_gid, int(self._clock())]).encode()).rstrip(b"=")
        signature = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        return (payload + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    def _read(self, token: str, fingerprint: str) -> str | None:
        try:
            payload, _, signature = token.encode().partition(b".")
            expected = base64.urlsafe_b64encode(hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]).rstrip(b"=")
            if not hmac.compare_digest(signature, expected):
                return None
            query, after, issued = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (ValueError, TypeError, binascii.Error):
            return None
        if query != fingerprint or self._clock() - issued > self.ttl_s:
            return None
        return str(after)


def shaped_list(call: Call, default_fields: Sequence[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The renderer of list items: compact (``default_fields``) unless opt_fields says otherwise."""
    def render(record: dict[str, Any]) -> dict[str, Any]:
        fields = call.opt_fields
        if fields is not None:
            return project_fields(record, fields, call.expand)
        return {k: record[k] for k in default_fields if k in record}

    return render
