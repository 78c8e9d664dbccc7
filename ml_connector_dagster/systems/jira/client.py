"""The Jira Cloud REST v3 client: OAuth 2.0 (3LO) or API-token auth, typed, paged, batched.

Jira's traps, handled here so that no flow meets them:

- 3LO calls go to ``{base_url}/ex/jira/{cloudId}/rest/api/3/``; the cloudId is resolved once, at
  connect time, from ``/oauth/token/accessible-resources``. Refresh tokens rotate on every use and
  are kept in a :class:`~ml_connector_dagster.core.oauth.TokenStore` (the Vault in production).
- Search is ``POST /search/jql`` paged by ``nextPageToken`` to the end (the old ``/search`` is gone);
  the index is eventually consistent, so lookups of just-written issues pass ``reconcileIssues``.
- Bulk create takes at most 50 issues and answers per element (201 with some errors, 400 with all
  failed): both come back as a :class:`BulkCreateResult`, indexed like the caller's sequence. A
  create is never retried blindly: a lost answer raises :class:`BulkCreateInterrupted`.
- Dynamic webhooks expire after 30 days and must not be registered twice: :meth:`ensure_webhook`.
- JQL dates without a zone are read in the account's timezone: :func:`jql_datetime` sends epoch
  milliseconds, which no timezone can change.
- Burst limits count per endpoint and method (``POST /issue/{id}/transitions`` has its own 100/s):
  :func:`rate_budget` gives every endpoint its own share of the configured rate, so creates never
  wait behind transitions.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn, Self
from urllib.parse import quote

import httpx
import orjson

from ml_connector_dagster.core.http import (
    ApiError,
    BudgetStore,
    ClientError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    TransportFailure,
    build_http_client,
    raise_for_api_error,
    rate_limiter_for,
    retry_after_seconds,
    retry_safe,
)
from ml_connector_dagster.core.oauth import RotatingRefreshTokenAuth, SwappingTokenStore, TokenStore

from .models import (
    AccessibleResource,
    BulkCreateResult,
    Comment,
    CreatedIssue,
    FailedElement,
    JiraField,
    JiraIssue,
    JiraUser,
    Transition,
    Webhook,
    WebhookRegistration,
    parse_jira_datetime,
)

__all__ = [
    "BULK_CREATE_LIMIT",
    "REFRESH_TOKEN_KEY",
    "BulkCreateInterrupted",
    "CloudIdNotFound",
    "FieldNotFound",
    "JiraClient",
    "StatusUnreachable",
    "jql_datetime",
    "jql_field",
    "jql_string",
    "rate_budget",
    "seed_refresh_token",
]

logger = logging.getLogger("ml_connector.jira")

SYSTEM = "jira"
REFRESH_TOKEN_KEY = "jira.refresh_token"
BULK_CREATE_LIMIT = 50  # Jira refuses more issueUpdates per request
RECONCILE_LIMIT = 50  # Jira's maximum of reconcileIssues ids per search
EXTERNAL_ID_BATCH = 40  # ids per lookup query: keeps the JQL well under Jira's length limits
SEARCH_PAGE_SIZE = 100
_THROTTLED_WRITE_ATTEMPTS = 5
_CUSTOM_FIELD_ID = re.compile(r"customfield_(\d+)")
_KEY_OR_ID_SEGMENT = re.compile(r"/(?:[A-Z][A-Z0-9_]*-\d+|\d+)(?=/|$)")


class CloudIdNotFound(LookupError):
    """The OAuth grant reaches no Jira site, or not the configured one."""


class FieldNotFound(LookupError):
    """No Jira field has the configured name (or the name is ambiguous)."""


class StatusUnreachable(LookupError):
    """No transition available on the issue leads to the wanted status."""


class BulkCreateInterrupted(TransportFailure):
    """A bulk-create chunk got no answer: its issues may or may not exist.

    ``result`` holds the outcome of the chunks answered before it; ``in_doubt`` the caller's indexes
    of the unanswered chunk (look them up by external id before sending them again); ``not_sent``
    the indexes of the chunks after it, which were never sent.
    """

    def __init__(
        self, cause: TransportFailure, *, result: BulkCreateResult, in_doubt: list[int], not_sent: list[int]
    ) -> None:
        super().__init__(
            system=cause.system, method=cause.method, url=cause.url,
            detail=f"{cause.detail}; {len(in_doubt)} issue(s) in doubt, {len(not_sent)} not sent",
            may_have_been_applied=cause.may_have_been_applied,
        )
        self.result = result
        self.in_doubt = in_doubt
        self.not_sent = not_sent


# --- rate budgets ----------------------------------------------------------------------------------


def endpoint_of(request: httpx.Request) -> str | None:
    """The burst budget a request draws on: its method and path template (``POST /rest/api/3/issue/{id}/transitions``).

    Calls outside the REST API (the OAuth gateway's) draw on the system's own budget (None).
    """
    _, found, rest = request.url.path.partition("/rest/")
    if not found:
        return None
    root, _, tail = rest.partition("/")  # api, webhooks ...
    version, _, tail = tail.partition("/")  # 3, 1.0 ...: not an id
    folded = _KEY_OR_ID_SEGMENT.sub("/{id}", f"/{tail}") if tail else ""
    return f"{request.method} /rest/{root}/{version}{folded}"


def rate_budget(rate_per_s: float | None = None, burst: int | None = None, *,
                store: BudgetStore | None = None) -> RateLimiter:
    """Jira's budget: ``rate_per_s`` and ``burst`` for each endpoint and method, kept in ``store`` when given
    (every process of the deployment spends it together), else in this process."""
    return rate_limiter_for(SYSTEM, rate_per_s, burst, per=endpoint_of, store=store)


# --- JQL -------------------------------------------------------------------------------------------


def jql_string(value: str) -> str:
    """``value`` as a double-quoted JQL string literal (backslashes and quotes escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def jql_phrase(value: str) -> str:
    """A JQL literal for ``field ~ literal`` that matches ``value`` as one exact phrase.

    The text-search operand is parsed twice: as a JQL string, then as a Lucene-style query in which
    an inner quoted phrase keeps the words together and in order.
    """
    inner = value.replace("\\", "\\\\").replace('"', '\\"')
    return jql_string(f'"{inner}"')


def jql_field(field_id: str) -> str:
    """How JQL names a field: ``customfield_10050`` -> ``cf[10050]``; system fields as they are."""
    match = _CUSTOM_FIELD_ID.fullmatch(field_id)
    return f"cf[{match[1]}]" if match else field_id


def jql_datetime(moment: datetime) -> str:
    """An aware datetime for a JQL date comparison, as epoch milliseconds.

    A ``"yyyy-MM-dd HH:mm"`` literal is read in the *account's* timezone and drops the seconds;
    a number of milliseconds since the epoch means the same instant in every zone.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("jql_datetime needs a timezone-aware datetime (JQL would read a naive one in the account's zone)")
    return str(int(moment.timestamp() * 1000))


def _has_restriction(jql: str) -> bool:
    where = re.split(r"(?i)\border\s+by\b", jql, maxsplit=1)[0]
    return bool(where.strip())


# --- credentials -----------------------------------------------------------------------------------


def seed_refresh_token(store: TokenStore, initial: str | None, key: str = REFRESH_TOKEN_KEY) -> bool:
    """Put ``initial`` (e.g. ``$JIRA_REFRESH_TOKEN``, or the sandbox's pre-consented token) into
    ``store`` only if it holds none yet; return True when it did.

    Once rotated, the stored token is the live one and the seed in the environment is dead: seeding
    again on every start would overwrite the live token and force a re-consent.
    """
    if not initial:
        return False
    if isinstance(store, SwappingTokenStore):
        return store.compare_and_swap(key, None, initial)
    if store.load(key):
        return False
    store.save(key, initial)
    return True


def _pick_resource(resources: list[AccessibleResource], cloud_id: str | None, site_url: str | None) -> AccessibleResource:
    if not resources:
        raise CloudIdNotFound("the Jira OAuth grant reaches no site; consent again with `ml-connector auth jira`")
    if cloud_id:
        chosen = [r for r in resources if r.id == cloud_id]
    elif site_url:
        wanted = site_url.rstrip("/").lower()
        chosen = [r for r in resources if r.url.rstrip("/").lower() == wanted]
    else:
        if len(resources) > 1:
            logger.warning("jira: the grant reaches %d sites; using the first, %s", len(resources), resources[0].url)
        return resources[0]
    if not chosen:
        sites = ", ".join(f"{r.url} ({r.id})" for r in resources)
        wanted_text = f"cloud_id {cloud_id}" if cloud_id else f"site {site_url}"
        raise CloudIdNotFound(f"the Jira OAuth grant does not reach {wanted_text}; it reaches: {sites}")
    return chosen[0]


def _jira_error_detail(response: httpx.Response) -> str:
    """Jira's ``errorMessages`` and ``errors`` on one line ("" when the body is not Jira's shape)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    messages = [str(m) for m in body.get("errorMessages") or []]
    errors = body.get("errors")
    if isinstance(errors, dict):
        messages += [f"{name}: {text}" for name, text in sorted(errors.items())]
    elif isinstance(errors, list):
        messages += [str(e) for e in errors]
    for key in ("message", "error_description", "error"):
        if not messages and body.get(key):
            messages.append(str(body[key]))
    return "; ".join(messages)


def _created_issue(index: int, issue: Mapping[str, Any]) -> CreatedIssue:
    """One element of a bulk-create answer, with the outcome of the transition it asked for."""
    moved = issue.get("transition") if isinstance(issue.get("transition"), dict) else {}
    status = moved.get("status")
    errors = moved.get("errorCollection") or {}
    messages = [str(m) for m in errors.get("errorMessages") or []]
    messages += [f"{name}: {text}" for name, text in sorted((errors.get("errors") or {}).items())]
    return CreatedIssue(index=index, id=str(issue["id"]), key=issue["key"], self_url=issue.get("self"),
                        transition_status=status if isinstance(status, int) else None,
                        transition_error="; ".join(messages) or None)


_JSON_CONTENT = {"Content-Type": "application/json"}


def _refuse_non_finite_numbers(issue_updates: Sequence[Mapping[str, Any]]) -> None:
    """httpx's ``json=`` refuses a non-finite number, orjson writes it as null: a number field holding
    one is refused here, by name (numbers are field values, never inside a document)."""
    for update in issue_updates:
        for name, value in (update.get("fields") or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"field {name!r} is {value}: JSON has no such number")


def _bulk_body(issue_updates: Sequence[Mapping[str, Any]]) -> bytes:
    """A bulk create's body as httpx's ``json=`` writes it, but by orjson: 50 described issues are a
    few hundred kB of small ADF objects, which the standard encoder takes milliseconds over."""
    return orjson.dumps({"issueUpdates": [dict(update) for update in issue_updates]})


def _in_chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


class _Borrowed(httpx.BaseTransport):
    """A transport lent to the token endpoint's short-lived clients, which must not close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        return None


# --- the client ------------------------------------------------------------------------------------


class JiraClient:
    """Jira Cloud REST v3 over one ``httpx.Client`` from :func:`build_http_client` (system ``jira``).

    Build it with :meth:`connect_oauth` or :meth:`connect_api_token`; use it as a context manager or
    call :meth:`close`. Every non-2xx answer raises the matching
    :class:`~ml_connector_dagster.core.http.ApiError` with Jira's error messages in its detail.
    """

    def __init__(self, http: httpx.Client, *, site: AccessibleResource | None = None, secrets: Sequence[str] = ()) -> None:
        """Wrap a client whose ``base_url`` already ends in ``/rest/api/3/``."""
        self._http = http
        self.site = site
        self._secrets = tuple(s for s in secrets if s)
        self._field_cache: list[JiraField] | None = None

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def connect_oauth(
        cls,
        base_url: str,
        auth_url: str,
        client_id: str,
        client_secret: str,
        store: TokenStore,
        *,
        cloud_id: str | None = None,
        site_url: str | None = None,
        store_key: str = REFRESH_TOKEN_KEY,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> Self:
        """OAuth 2.0 (3LO): resolve the cloudId, then call ``{base_url}/ex/jira/{cloudId}/rest/api/3/``.

        The refresh token is read from ``store[store_key]`` and every rotated one is saved there
        before its access token is used; seed the store once with :func:`seed_refresh_token`.
        The site is the one matching ``cloud_id``, else ``site_url``, else the first the grant reaches.
        """
        base = base_url.rstrip("/")
        auth = RotatingRefreshTokenAuth(
            f"{auth_url.rstrip('/')}/oauth/token", client_id, client_secret, store=store, store_key=store_key,
            transport=_Borrowed(transport) if transport is not None else None, system=SYSTEM,
        )  # fmt: skip
        secrets = (client_secret,)
        http = build_http_client(
            SYSTEM, base, auth=auth, transport=transport, timeout=timeout, retry=retry,
            rate_limiter=rate_limiter or rate_budget(), secrets=secrets,
            headers={"Accept": "application/json"},
        )  # fmt: skip
        try:
            response = http.get(f"{base}/oauth/token/accessible-resources")
            _raise_for_jira_error(response, secrets)
            resources = [AccessibleResource.model_validate(r) for r in response.json()]
            site = _pick_resource(resources, cloud_id, site_url)
        except BaseException:
            http.close()
            raise
        http.base_url = httpx.URL(f"{base}/ex/jira/{quote(site.id, safe='')}/rest/api/3/")
        logger.info("jira: connected to %s (cloudId %s)", site.url or site.name, site.id)
        return cls(http, site=site, secrets=secrets)

    @classmethod
    def connect_api_token(
        cls,
        site_url: str,
        email: str,
        api_token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> Self:
        """API-token basic auth against ``{site_url}/rest/api/3/``."""
        if not email or not api_token:
            raise ValueError("Jira api_token auth needs an email and an API token (are JIRA_EMAIL / JIRA_API_TOKEN set?)")
        site = site_url.rstrip("/")
        secrets = (api_token,)
        http = build_http_client(
            SYSTEM, f"{site}/rest/api/3/", auth=httpx.BasicAuth(email, api_token), transport=transport,
            timeout=timeout, retry=retry, rate_limiter=rate_limiter or rate_budget(),
            secrets=secrets, headers={"Accept": "application/json"},
        )  # fmt: skip
        return cls(http, site=AccessibleResource(id="", name=site, url=site), secrets=secrets)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JiraClient(base_url={str(self._http.base_url)!r})"

    @property
    def api_base_url(self) -> str:
        """The REST v3 root every call is relative to."""
        return str(self._http.base_url)

    def browse_url(self, key: str) -> str | None:
        """The issue's page in the Jira UI, when the site URL is known."""
        return f"{self.site.url.rstrip('/')}/browse/{key}" if self.site and self.site.url else None

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for_jira_error(response, self._secrets)
        return response

    def _write(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A non-idempotent write: resent only after a 429, which Jira answers before applying anything."""
        for attempt in range(1, _THROTTLED_WRITE_ATTEMPTS + 1):
            response = self._http.request(method, path, **kwargs)
            if response.status_code != 429 or attempt == _THROTTLED_WRITE_ATTEMPTS:
                return response
            wait = retry_after_seconds(response) or 0.0
            if wait > RetryPolicy().max_retry_after_s:
                return response
            # The shared limiter has seen Retry-After and holds the next request back until then.
            logger.warning("jira: %s %s throttled (429); resending after %.1fs", method, path, wait)
        raise AssertionError("unreachable")

    # -- user, fields --------------------------------------------------------------------------

    def myself(self) -> JiraUser:
        """The user the credentials act as (its ``timeZone`` is the one JQL literals are read in)."""
        return JiraUser.model_validate(self._call("GET", "myself").json())

    def fields(self, *, refresh: bool = False) -> list[JiraField]:
        """Every field (system and custom); cached for the life of the client."""
        if self._field_cache is None or refresh:
            self._field_cache = [JiraField.model_validate(f) for f in self._call("GET", "field").json()]
        return list(self._field_cache)

    def field_id(self, name: str) -> str:
        """The id of the field called ``name`` (``"Visma ID"`` -> ``"customfield_10050"``).

        An id is accepted as is. Raises :class:`FieldNotFound` naming the field when Jira has none,
        or several, by that name.
        """
        fields = self.fields()
        if any(f.id == name for f in fields):
            return name
        matches = [f for f in fields if f.name == name] or [f for f in fields if f.name.casefold() == name.casefold()]
        if len(matches) == 1:
            return matches[0].id
        if not matches:
            custom = sorted(f.name for f in fields if f.custom)
            raise FieldNotFound(
                f"Jira has no field named {name!r}; create it (a text custom field) or fix the configured "
                f"name. Custom fields on this site: {', '.join(custom) or 'none'}"
            )
        ids = ", ".join(f.id for f in matches)
        raise FieldNotFound(f"Jira has {len(matches)} fields named {name!r} ({ids}); configure the id instead")

    # -- issues --------------------------------------------------------------------------------

    def get_issue(self, key_or_id: str, fields: Sequence[str] | None = None) -> JiraIssue:
        """One issue; ``fields`` limits what is returned (default: Jira's navigable fields)."""
        params = {"fields": ",".join(fields)} if fields else None
        return JiraIssue.model_validate(self._call("GET", f"issue/{quote(key_or_id, safe='')}", params=params).json())

    def update_issue(self, key: str, fields: Mapping[str, Any], *, notify_users: bool = False) -> None:
        """Set ``fields`` on the issue (ADF for description and textarea fields)."""
        self._call(
            "PUT", f"issue/{quote(key, safe='')}", json={"fields": dict(fields)},
            params={"notifyUsers": "false"} if not notify_users else None,
        )  # fmt: skip

    def bulk_create(self, issue_updates: Sequence[Mapping[str, Any]]) -> BulkCreateResult:
        """Create issues, 50 per request; indexes in the result are positions in ``issue_updates``.

        Elements Jira refuses come back in ``failed`` (Jira answers 201 when some were created and 400
        when none were; neither raises). An element may carry ``{"transition": {"id": ...}}``: Jira
        moves the new issue at once and answers how that went in its ``transition_status``. Not
        retried: when a chunk's answer is lost, :class:`BulkCreateInterrupted` says which indexes are in doubt.
        """
        _refuse_non_finite_numbers(issue_updates)  # before any chunk is sent
        result = BulkCreateResult()
        for start, chunk in _in_chunks(issue_updates, BULK_CREATE_LIMIT):
            try:
                response = self._write("POST", "issue/bulk", content=_bulk_body(chunk),
                                       headers=_JSON_CONTENT)
            except TransportFailure as exc:
                indexes = list(range(start, start + len(chunk)))
                rest = list(range(start + len(chunk), len(issue_updates)))
                if not exc.may_have_been_applied:
                    rest, indexes = [*indexes, *rest], []
                raise BulkCreateInterrupted(exc, result=result, in_doubt=indexes, not_sent=rest) from exc
            result = result.merged(self._parse_bulk(response, start, len(chunk)))
        return result

    def _parse_bulk(self, response: httpx.Response, start: int, size: int) -> BulkCreateResult:
        body: Any = None
        if response.status_code in (200, 201, 400):
            try:
                body = response.json()
            except ValueError:
                body = None
        if not (isinstance(body, dict) and isinstance(body.get("errors"), list) and "issues" in body):
            _raise_for_jira_error(response, self._secrets)
            raise self._protocol_error(response, "the bulk-create answer has neither issues nor errors")
        failed: list[FailedElement] = []
        for error in body["errors"]:
            position = error.get("failedElementNumber")
            if not isinstance(position, int) or not 0 <= position < size:
                raise self._protocol_error(response, f"failedElementNumber {position!r} is outside the chunk of {size}")
            element = error.get("elementErrors") or {}
            failed.append(FailedElement(
                index=start + position, status=error.get("status"),
                errors={str(k): str(v) for k, v in (element.get("errors") or {}).items()},
                error_messages=[str(m) for m in element.get("errorMessages") or []],
            ))  # fmt: skip
        failed_positions = {f.index - start for f in failed}
        # Jira lists the created issues in request order without their element numbers.
        succeeded = [start + i for i in range(size) if i not in failed_positions]
        issues = body["issues"] or []
        if len(issues) != len(succeeded):
            raise self._protocol_error(
                response, f"{len(issues)} issues created for {len(succeeded)} accepted elements; "
                "look the records up by external id before creating them again",
            )  # fmt: skip
        created = [_created_issue(index, issue) for index, issue in zip(succeeded, issues, strict=True)]
        return BulkCreateResult(created=created, failed=sorted(failed, key=lambda f: f.index))

    def _protocol_error(self, response: httpx.Response, detail: str) -> ApiError:
        return ApiError(
            system=SYSTEM, status_code=response.status_code, method=response.request.method,
            url=str(response.request.url), detail=detail, secrets=self._secrets,
        )  # fmt: skip

    # -- search --------------------------------------------------------------------------------

    def search(
        self,
        jql: str,
        fields: Sequence[str] | None = None,
        *,
        max_results: int = SEARCH_PAGE_SIZE,
        reconcile_ids: Sequence[int | str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every issue matching ``jql`` (raw dicts), page after page until Jira says it was the last.

        ``jql`` must restrict the search (e.g. ``project = FIN AND ...``): Jira refuses unbounded
        queries. Without ``fields`` Jira returns ids only. ``reconcile_ids`` (at most 50 issue ids)
        makes the result consistent with writes to those issues that the index has not caught up with.
        """
        if not _has_restriction(jql):
            raise ValueError(f"unbounded JQL {jql!r}: add a restriction such as `project = KEY`")
        body: dict[str, Any] = {"jql": jql, "maxResults": max_results}
        if fields:
            body["fields"] = list(fields)
        if reconcile_ids:
            if len(reconcile_ids) > RECONCILE_LIMIT:
                raise ValueError(f"Jira reconciles at most {RECONCILE_LIMIT} issue ids per search, got {len(reconcile_ids)}")
            body["reconcileIssues"] = [int(i) for i in reconcile_ids]
        seen_tokens: set[str] = set()
        while True:
            page = self._call("POST", "search/jql", json=body, extensions=retry_safe()).json()
            yield from page.get("issues") or []
            token = page.get("nextPageToken")
            if not token or page.get("isLast") is True:
                return
            if token in seen_tokens:
                raise ApiError(system=SYSTEM, method="POST", url=f"{self.api_base_url}search/jql",
                               detail="Jira repeated a nextPageToken; stopping instead of looping")
            seen_tokens.add(token)
            body["nextPageToken"] = token

    def find_by_external_ids(
        self,
        project_key: str,
        field_id: str,
        external_ids: Sequence[str],
        reconcile_ids: Sequence[int | str] | None = None,
        *,
        fields: Sequence[str] = (),
        batch_size: int = EXTERNAL_ID_BATCH,
    ) -> dict[str, JiraIssue]:
        """The issues of ``project_key`` whose text field ``field_id`` equals one of ``external_ids``.

        One search per batch of ids (``cf[N] ~ "\\"id\\"" OR ...``). A text field only supports the
        phrase match ``~``, which may over-match (``INV-1`` in ``INV-1-A``), so only exact values are
        kept. When two issues carry the same id the oldest (lowest id) wins and a warning is logged.
        """
        wanted = list(dict.fromkeys(i for i in external_ids if i))
        if not 1 <= batch_size <= 100:
            raise ValueError("batch_size must be between 1 and 100")
        wanted_fields = list(dict.fromkeys([field_id, "summary", "status", "resolution", "labels", "updated", *fields]))
        found: dict[str, JiraIssue] = {}
        for _, batch in _in_chunks(wanted, batch_size):
            batch_set = set(batch)
            clauses = " OR ".join(f"{jql_field(field_id)} ~ {jql_phrase(i)}" for i in batch)
            jql = f"project = {jql_string(project_key)} AND ({clauses})"
            for raw in self.search(jql, wanted_fields, reconcile_ids=reconcile_ids):
                issue = JiraIssue.model_validate(raw)
                value = issue.fields.get(field_id)
                if not isinstance(value, str) or value not in batch_set:
                    continue
                current = found.get(value)
                if current is not None:
                    logger.warning("jira: issues %s and %s both carry external id %r", current.key, issue.key, value)
                    if int(current.id) <= int(issue.id):
                        continue
                found[value] = issue
        return found

    # -- workflow, comments --------------------------------------------------------------------

    def transitions(self, key: str) -> list[Transition]:
        """The transitions available on the issue now."""
        body = self._call("GET", f"issue/{quote(key, safe='')}/transitions").json()
        return [Transition.model_validate(t) for t in body.get("transitions") or []]

    def transition(self, key: str, transition_id: str) -> None:
        """Apply a transition by id."""
        response = self._write("POST", f"issue/{quote(key, safe='')}/transitions", json={"transition": {"id": str(transition_id)}})
        _raise_for_jira_error(response, self._secrets)

    def transition_to_status(self, key: str, status_name: str) -> Transition | None:
        """Move the issue to the status called ``status_name`` (case-insensitive).

        Returns the transition applied, or None when the issue is already there. Raises
        :class:`StatusUnreachable` naming the reachable statuses when no transition leads there.
        """
        wanted = status_name.casefold()
        available = self.transitions(key)
        for candidate in available:
            if (candidate.to_status or "").casefold() == wanted:
                self.transition(key, candidate.id)
                return candidate
        current = self.get_issue(key, ["status"]).status_name
        if (current or "").casefold() == wanted:
            return None
        reachable = ", ".join(sorted({t.to_status or t.name for t in available})) or "none"
        raise StatusUnreachable(
            f"issue {key} is in status {current!r} and no transition leads to {status_name!r}; reachable: {reachable}"
        )

    def add_comment(self, key: str, adf_body: Mapping[str, Any]) -> Comment:
        """Add a comment whose body is an ADF document."""
        response = self._write("POST", f"issue/{quote(key, safe='')}/comment", json={"body": dict(adf_body)})
        _raise_for_jira_error(response, self._secrets)
        return Comment.model_validate(response.json())

    def comments(self, key: str) -> list[Comment]:
        """Every comment of the issue, oldest first."""
        comments: list[Comment] = []
        while True:
            params = {"startAt": len(comments), "maxResults": 100, "orderBy": "created"}
            page = self._call("GET", f"issue/{quote(key, safe='')}/comment", params=params).json()
            batch = page.get("comments") or []
            comments.extend(Comment.model_validate(c) for c in batch)
            total = page.get("total")
            if not batch or (isinstance(total, int) and len(comments) >= total):
                return comments

    # -- webhooks ------------------------------------------------------------------------------

    def list_webhooks(self) -> list[Webhook]:
        """The dynamic webhooks this app registered on the site."""
        webhooks: list[Webhook] = []
        while True:
            page = self._call("GET", "webhook", params={"startAt": len(webhooks), "maxResults": 100}).json()
            values = page.get("values") or []
            webhooks.extend(Webhook.model_validate(v) for v in values)
            if not values or page.get("isLast", True):
                return webhooks

    def register_webhook(self, url: str, events: Sequence[str], jql_filter: str) -> int:
        """Register one dynamic webhook; return its id. Prefer :meth:`ensure_webhook`."""
        body = {"url": url, "webhooks": [{"events": list(events), "jqlFilter": jql_filter}]}
        response = self._write("POST", "webhook", json=body)
        _raise_for_jira_error(response, self._secrets)
        results = [WebhookRegistration.model_validate(r) for r in response.json().get("webhookRegistrationResult") or []]
        if len(results) != 1 or results[0].created_webhook_id is None:
            reasons = "; ".join(e for r in results for e in r.errors) or "no webhook id in the answer"
            raise ClientError(system=SYSTEM, status_code=response.status_code, method="POST",
                              url=str(response.request.url), detail=f"webhook not registered: {reasons}")
        return results[0].created_webhook_id

    def refresh_webhooks(self, ids: Sequence[int]) -> datetime:
        """Extend the life of the webhooks (30 days from now); return their new expiry."""
        body = self._call("PUT", "webhook/refresh", json={"webhookIds": [int(i) for i in ids]}).json()
        expiration = parse_jira_datetime(body.get("expirationDate"))
        if expiration is None:
            raise ApiError(system=SYSTEM, method="PUT", url=f"{self.api_base_url}webhook/refresh",
                           detail="the refresh answer has no expirationDate")
        return expiration

    def delete_webhooks(self, ids: Sequence[int]) -> None:
        """Unregister webhooks by id."""
        self._call("DELETE", "webhook", json={"webhookIds": [int(i) for i in ids]})

    def ensure_webhook(self, url: str, events: Sequence[str], jql_filter: str) -> tuple[int, datetime]:
        """Make sure exactly one webhook (url, events, JQL) exists and is fresh; return (id, expiry).

        Idempotent across restarts: a matching registration is refreshed rather than duplicated,
        extra duplicates left by earlier runs are deleted, and one is created only when none exists.
        """
        matching = sorted((w for w in self.list_webhooks() if w.matches(url, list(events), jql_filter)), key=lambda w: w.id)
        if matching:
            keep, duplicates = matching[0], matching[1:]
            if duplicates:
                logger.warning("jira: deleting %d duplicate webhook registration(s)", len(duplicates))
                self.delete_webhooks([w.id for w in duplicates])
            return keep.id, self.refresh_webhooks([keep.id])
        webhook_id = self.register_webhook(url, events, jql_filter)
        return webhook_id, self.refresh_webhooks([webhook_id])


def _raise_for_jira_error(response: httpx.Response, secrets: Sequence[str]) -> None:
    """Raise the ApiError matching a non-2xx ``response``, with Jira's error messages as the detail."""
    if response.status_code < 400:
        return
    try:
        raise_for_api_error(response, SYSTEM, secrets)
    except ApiError as exc:
        detail = _jira_error_detail(response)
        if not detail:
            raise
        _reraise_with_detail(exc, detail, response, secrets)


def _reraise_with_detail(exc: ApiError, detail: str, response: httpx.Response, secrets: Sequence[str]) -> NoReturn:
    extra: dict[str, Any] = {"retry_after_s": exc.retry_after_s} if isinstance(exc, RateLimited) else {}
    raise type(exc)(
        system=SYSTEM, status_code=response.status_code, method=response.request.method,
        url=str(response.request.url), detail=detail, secrets=secrets, **extra,
    ) from None  # fmt: skip
