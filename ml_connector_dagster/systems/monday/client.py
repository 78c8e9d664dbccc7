"""The monday.com GraphQL client: gql over the project's httpx factory, complexity-aware, batched.

monday's traps, handled here so that no flow meets them:

- Auth is the raw token in ``Authorization`` (no ``Bearer``), and every request pins ``API-Version``;
  every document is validated against that version's SDL *before* it is sent (gql local schema).
- App errors come back as HTTP 200 with ``errors[]`` next to partial ``data``. Writes go several to
  a request as aliases (``c0: create_item(...)``), and each alias is answered on its own: one
  ``ColumnValueException`` fails its draft only (:class:`BatchResult`, in the caller's order).
- Complexity: every document asks ``complexity { before after query reset_in_x_seconds }``; the
  :class:`ComplexityBudget` learns the token's remaining points from it, sizes each batch to what is
  left (and under the 5M per-query cap) and waits for the reset *before* the budget runs out. A
  ``COMPLEXITY_BUDGET_EXHAUSTED`` answer (nothing applied) is retried after ``retry_in_seconds``;
  a 429 (request rate, concurrency) after ``Retry-After``; ``RESOURCE_LOCKED`` (another mutation on
  the board) with a short backoff, for that alias alone. A write whose answer is lost raises
  :class:`BatchInterrupted` naming what is in doubt: creates are never retried blind.
- Paging: ``items_page`` then ``next_items_page`` with the cursor, to the end (500 a page);
  ``items_page_by_column_values`` looks many values up per request (dedupe on a Visma-id column).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Self

import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError
from gql.transport.httpx import HTTPXTransport
from graphql import DocumentNode, GraphQLError, parse

from ml_connector_dagster.core import http as core_http
from ml_connector_dagster.core.http import (
    ApiError,
    ClientError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    ServerError,
    TransportFailure,
    build_http_client,
    raise_for_api_error,
    retry_safe,
)
from ml_connector_dagster.core.oauth import StaticTokenAuth
from ml_connector_dagster.core.quotas import LocalQuotas, QuotaReading, QuotaStore

from .models import (
    AliasOutcome,
    ApiVersion,
    BatchResult,
    Board,
    Complexity,
    Item,
    ItemDraft,
    ItemUpdate,
    MondayError,
    MondayUser,
    Webhook,
)
from .sdl import CURRENT_VERSION, sdl_schema

__all__ = [
    "API_PATH",
    "BatchInterrupted",
    "ComplexityBudget",
    "CursorExpired",
    "InvalidDocument",
    "MondayApiError",
    "MondayClient",
    "complexity_budget_for",
]

logger = logging.getLogger("ml_connector.monday")

SYSTEM = "monday"
API_PATH = "/v2"
PER_QUERY_LIMIT = 5_000_000
PERSONAL_TOKEN_BUDGET = 10_000_000  # points per minute (app tokens: 5M read + 5M write)
ITEM_WRITE_COST = 10_100  # create_item / change_multiple_column_values ~10,000 + the fields read back
WRITE_ITSELF_COST = 10_000  # what an item write costs before anything is read back
READ_COST_ESTIMATE = 50_000  # a 500-item page with its column values
MAX_PAGE_SIZE = 500
LOOKUP_CHUNK = 100  # values per items_page_by_column_values request
ITEMS_BY_ID_LIMIT = 100
DEFAULT_MAX_BATCH = 25
_MAX_ATTEMPTS = 8
RESET_MARGIN_S = 1.0  # monday rounds reset_in_x_seconds; arriving a second late beats a refusal
SAME_WINDOW_S = 2.0  # answers of one window agree on its reset to within monday's rounding
_LOCKED_BACKOFF_S = 0.25
_RETRY_ALIAS_CODES = frozenset({"RESOURCE_LOCKED", "COMPLEXITY_BUDGET_EXHAUSTED"})
COMPLEXITY_FIELDS = "complexity { before after query reset_in_x_seconds }"
_KEY_FIELDS = "id name column_values(ids: $keys) { id type text value }"  # an item's identity, for dedupe
ITEM_FIELDS = """
fragment ItemFields on Item {
  id
  name
  state
  created_at
  updated_at
  board { id }
  group { id }
  column_values { id type text value ... on DropdownValue { values { label } } }
}"""
BOARD_FIELDS = """
fragment BoardFields on Board {
  id
  name
  url
  state
  workspace_id
  items_count
  columns { id title type settings description archived }
  groups { id title position archived }
}"""


class MondayApiError(ClientError):
    """monday answered ``errors[]`` for a read (or for a whole request): ``code`` is the first one's."""

    def __init__(self, errors: Sequence[MondayError], *, detail: str = "") -> None:
        self.errors = list(errors)
        self.code = self.errors[0].code if self.errors else None
        summary = "; ".join(f"{e.code}: {e.message}" if e.code else e.message for e in self.errors[:3])
        super().__init__(system=SYSTEM, method="POST", url=API_PATH, detail=detail or summary)


class InvalidDocument(ClientError):
    """A document the pinned API version's SDL refuses (caught before sending)."""


class CursorExpired(MondayApiError):
    """A page cursor outlived its 60 minutes: list again from the first page."""


class BatchInterrupted(TransportFailure):
    """A write request got no (usable) answer: its drafts may or may not have been applied.

    ``result`` holds the outcomes known so far; ``in_doubt`` the caller's indexes of the unanswered
    request (look them up, e.g. by their Visma id, before sending them again); ``not_sent`` the
    indexes never sent.
    """

    def __init__(self, cause: ApiError, *, result: BatchResult, in_doubt: list[int], not_sent: list[int]) -> None:
        super().__init__(system=SYSTEM, method="POST", url=API_PATH,
                         detail=f"{cause.detail or cause}; {len(in_doubt)} write(s) in doubt, {len(not_sent)} not sent")  # fmt: skip
        self.result = result
        self.in_doubt = in_doubt
        self.not_sent = not_sent


class ComplexityBudget:
    """The token's complexity points, as monday last reported them, shared by every client of the token.

    ``reserve`` takes a request's cost before it is sent (sleeping until the reset first when it does
    not fit); ``observe`` learns ``after``/``reset_in_x_seconds`` from the answer and gives the
    reservation back, ``release`` gives back that of a request that got no answer; ``exhausted`` records
    a refusal. ``affordable`` says how many writes of a cost fit now; ``wait_for`` sleeps until the reset
    when a cost does not fit. The reading lives in ``quotas``: this process's (:class:`LocalQuotas`), or
    the ledger's, where every run of the deployment spends it together; reservations let a run see what
    another has in flight, which monday's own figure does not show yet.
    """

    def __init__(self, per_minute: int = PERSONAL_TOKEN_BUDGET, *, clock: Callable[[], float] = time.time,
                 quotas: QuotaStore | None = None, name: str = SYSTEM) -> None:  # fmt: skip
        self.per_minute = per_minute
        self._clock = clock
        self._quotas = quotas or LocalQuotas()
        self._name = name

    def _current(self, reading: QuotaReading | None) -> QuotaReading | None:
        return None if reading is None or self._clock() >= reading.resets_at else reading

    def observe(self, complexity: Complexity, *, reserved: int = 0) -> None:
        """Learn what monday says is left (``reserved``: what the answered request had taken)."""
        resets_at = self._clock() + complexity.reset_in_x_seconds

        def change(stored: QuotaReading | None) -> tuple[QuotaReading, None]:
            current = self._current(stored)
            if current is None:
                return QuotaReading(remaining=complexity.after, resets_at=resets_at), None
            # Within a window the points only go down: an answer overtaken by a later one says more.
            same_window = abs(current.resets_at - resets_at) <= SAME_WINDOW_S
            remaining = min(current.remaining, complexity.after) if same_window else complexity.after
            return QuotaReading(remaining=remaining, resets_at=resets_at,
                                in_flight=max(0, current.in_flight - reserved)), None  # fmt: skip

        self._quotas.update_quota(self._name, change)

    def release(self, reserved: int) -> None:
        """Give back what a request took that monday did not answer (refused at the door, lost)."""
        if reserved:
            self._quotas.update_quota(self._name, lambda stored: (
                stored and stored.model_copy(update={"in_flight": max(0, stored.in_flight - reserved)}), None))

    def exhausted(self, retry_in_seconds: float) -> None:
        """monday refused a request for want of points: none are left until ``retry_in_seconds``."""
        resets_at = self._clock() + retry_in_seconds
        self._quotas.update_quota(self._name, lambda _: (QuotaReading(remaining=0, resets_at=resets_at), None))

    def remaining(self) -> int | None:
        """Points a new request may take, or None when unknown (nothing observed, or a reset has passed)."""
        reading = self._quotas.update_quota(self._name, lambda stored: (self._current(stored),) * 2)
        return None if reading is None else reading.available

    def affordable(self, cost: int) -> int | None:
        """How many requests of ``cost`` the known budget still pays for (None: unknown, go ahead)."""
        remaining = self.remaining()
        return None if remaining is None else max(0, remaining) // max(1, cost)

    def reserve(self, cost: int, sleep: Callable[[float], None]) -> int:
        """Take ``cost`` for a request about to be sent, sleeping until the reset first if it does not
        fit; what was taken (0 when nothing is known to take it from: go ahead)."""

        def change(stored: QuotaReading | None) -> tuple[QuotaReading | None, QuotaReading | int]:
            current = self._current(stored)
            if current is None:
                return None, 0
            if cost > current.available:
                return current, current
            return current.model_copy(update={"in_flight": current.in_flight + cost}), cost

        for _ in range(2):  # after a wait the budget is whole, or unknown: the second pass takes or goes
            taken = self._quotas.update_quota(self._name, change)
            if isinstance(taken, int):
                return taken
            self._sleep_out(taken, cost, sleep)
        return 0

    def wait_for(self, cost: int, sleep: Callable[[float], None]) -> float:
        """Sleep until the reset if ``cost`` exceeds what is left; return the seconds slept."""
        reading = self._quotas.update_quota(self._name, lambda stored: (self._current(stored),) * 2)
        if reading is None or cost <= reading.available:
            return 0.0
        return self._sleep_out(reading, cost, sleep)

    def _sleep_out(self, short: QuotaReading, cost: int, sleep: Callable[[float], None]) -> float:
        wait = max(0.0, short.resets_at - self._clock()) + RESET_MARGIN_S
        logger.info("monday complexity budget low (%d left, %d needed): waiting %.1fs", short.available, cost, wait)
        sleep(wait)
        # Whole again (monday says otherwise if not): forget the reading waited out, unless another
        # client has learnt a newer one meanwhile.
        self._quotas.update_quota(self._name, lambda stored: (None if stored == short else stored, None))
        return wait

    def __repr__(self) -> str:
        return f"ComplexityBudget(per_minute={self.per_minute}, quotas={self._quotas!r})"


_budgets: dict[tuple[str, int], ComplexityBudget] = {}
_budgets_lock = threading.Lock()


def complexity_budget_for(api_token: str, per_minute: int = PERSONAL_TOKEN_BUDGET, *,
                          quotas: QuotaStore | None = None) -> ComplexityBudget:  # fmt: skip
    """The budget of a token (named by a digest: the token itself is never kept), kept in ``quotas`` (the
    ledger's: every run of the deployment spends it together) or, when None, by this process."""
    name = f"{SYSTEM}:{hashlib.sha256(api_token.encode()).hexdigest()[:16]}"
    if quotas is not None:
        return ComplexityBudget(per_minute, quotas=quotas, name=name)
    with _budgets_lock:
        budget = _budgets.get((name, per_minute))
        if budget is None:
            budget = _budgets[(name, per_minute)] = ComplexityBudget(per_minute, name=name)
        return budget


class _FactoryTransport(HTTPXTransport):
    """gql's httpx transport on a client from :func:`build_http_client`; non-2xx raise our errors."""

    def __init__(self, url: str, make_client: Callable[[], httpx.Client], secrets: Sequence[str]) -> None:
        super().__init__(url)
        self._make_client = make_client
        self._secrets = tuple(secrets)

    def connect(self) -> None:
        if self.client is None:
            self.client = self._make_client()

    def _prepare_result(self, response: httpx.Response) -> Any:
        raise_for_api_error(response, SYSTEM, self._secrets)
        return super()._prepare_result(response)


@lru_cache(maxsize=256)
def _document(text: str) -> DocumentNode:
    return parse(text)


@dataclass(frozen=True)
class _Answer:
    data: dict[str, Any]
    errors: list[MondayError]

    def error_for(self, alias: str) -> MondayError | None:
        return next((e for e in self.errors if e.alias == alias), None)

    def whole_request_errors(self) -> list[MondayError]:
        return [e for e in self.errors if e.alias is None]


class MondayClient:
    """monday.com's API for one token and one pinned API version. Use :meth:`connect`."""

    def __init__(
        self,
        client: Client,
        *,
        api_version: str,
        budget: ComplexityBudget,
        sleep: Callable[[float], None] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._client = client
        self._session = client.connect_sync()
        self.api_version = api_version
        self.budget = budget
        self._sleep = sleep
        self.max_batch = max(1, max_batch)  # also capped, request by request, by the 5M points of one query
        self._write_cost = ITEM_WRITE_COST
        self.last_complexity: Complexity | None = None

    @classmethod
    def connect(
        cls,
        base_url: str,
        api_token: str,
        *,
        api_version: str = CURRENT_VERSION,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        budget: ComplexityBudget | None = None,
        sleep: Callable[[float], None] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> MondayClient:
        """A client for ``base_url`` (``https://api.monday.com``; ``/v2`` is appended).

        ``budget`` defaults to a fresh one (the resource passes the token's process-wide budget);
        ``sleep`` replaces the waits (tests); ``transport`` lets tests talk to an in-process simulator.
        """
        secrets = (api_token,)

        def make_client() -> httpx.Client:
            return build_http_client(
                SYSTEM, base_url.rstrip("/"), auth=StaticTokenAuth(api_token, scheme=None),
                headers={"API-Version": api_version}, transport=transport, timeout=timeout, retry=retry,
                rate_limiter=rate_limiter, secrets=secrets, sleep=sleep,
            )  # fmt: skip

        transport_ = _FactoryTransport(base_url.rstrip("/") + API_PATH, make_client, secrets)
        client = Client(transport=transport_, schema=sdl_schema(api_version), fetch_schema_from_transport=False)
        return cls(client, api_version=api_version, budget=budget or ComplexityBudget(), sleep=sleep, max_batch=max_batch)

    def close(self) -> None:
        self._client.close_sync()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MondayClient(api_version={self.api_version!r}, max_batch={self.max_batch})"

    # -- the one way out -------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        (self._sleep or core_http.default_sleep)(seconds)

    def _run(self, document: str, variables: Mapping[str, Any] | None = None, *, write: bool,
             cost: int = READ_COST_ESTIMATE) -> _Answer:  # fmt: skip
        """Send one document; retry what monday did not apply (budget, 429); return data and errors."""
        request = GraphQLRequest(_document(document), variable_values=dict(variables or {}))
        extra = {} if write else {"extensions": retry_safe()}
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            reserved = self.budget.reserve(cost, self._wait)
            try:
                data, raw_errors = self._execute(request, extra)
            except RateLimited as exc:  # 429: rate or concurrency limit, nothing was applied
                self.budget.release(reserved)
                if attempt == _MAX_ATTEMPTS:
                    raise
                self._wait(exc.retry_after_s if exc.retry_after_s is not None else 2.0**attempt)
                continue
            except BaseException:
                self.budget.release(reserved)  # no answer to learn what it cost
                raise
            errors = [MondayError.from_entry(entry) for entry in raw_errors if isinstance(entry, Mapping)]
            if not self._learn_complexity(data, reserved):
                self.budget.release(reserved)
            exhausted = next((e for e in errors if e.alias is None and e.code == "COMPLEXITY_BUDGET_EXHAUSTED"), None)
            if exhausted is not None and attempt < _MAX_ATTEMPTS:
                # Refused whole, nothing applied: the next attempt's reserve sleeps until the reset.
                retry_in = exhausted.retry_in_seconds or 60.0
                self.budget.exhausted(retry_in)
                logger.info("monday complexity budget exhausted: retrying in %.0fs", retry_in)
                continue
            return _Answer(data or {}, errors)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _execute(self, request: GraphQLRequest, extra: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Any]]:
        """One request: its data and raw ``errors[]`` (app errors come with HTTP 200); transport errors raise ours."""
        try:
            result = self._session.execute(request, get_execution_result=True, extra_args=dict(extra))
            return result.data, []
        except TransportQueryError as exc:
            return exc.data, list(exc.errors or [])
        except GraphQLError as exc:
            raise InvalidDocument(system=SYSTEM, method="POST", url=API_PATH,
                                  detail=f"refused by the {self.api_version} schema: {exc.message}") from None  # fmt: skip
        except TransportConnectionFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiError):
                raise cause from None
            raise TransportFailure(system=SYSTEM, method="POST", url=API_PATH, detail=str(exc)) from None

    def _learn_complexity(self, data: Mapping[str, Any] | None, reserved: int) -> bool:
        """Learn the budget from an answer's ``complexity`` (giving back what the request took); False: none."""
        raw = (data or {}).get("complexity")
        if not isinstance(raw, Mapping):
            return False
        self.last_complexity = Complexity.model_validate(raw)
        self.budget.observe(self.last_complexity, reserved=reserved)
        return True

    def _read(self, document: str, variables: Mapping[str, Any] | None = None, *, cost: int = READ_COST_ESTIMATE) -> dict[str, Any]:
        answer = self._run(document, variables, write=False, cost=cost)
        if answer.errors:
            if any(e.code == "CursorExpiredError" for e in answer.errors):
                raise CursorExpired(answer.errors)
            raise MondayApiError(answer.errors)
        return answer.data

    # -- reads -----------------------------------------------------------------------------------
    def query(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A read of your own: validated against the pinned SDL, budget-aware; ``errors[]`` raise."""
        return self._read(document, variables)

    def version(self) -> ApiVersion:
        """The API version the requests are answered in (``version { value kind }``)."""
        data = self._read(f"query Version {{ {COMPLEXITY_FIELDS} version {{ value kind display_name }} }}", cost=10)
        return ApiVersion.model_validate(data["version"])

    def me(self) -> MondayUser:
        data = self._read(f"query Me {{ {COMPLEXITY_FIELDS} me {{ id name email }} }}", cost=10)
        return MondayUser.model_validate(data["me"])

    def boards(self, ids: Sequence[str] | None = None, *, workspace_ids: Sequence[str] | None = None) -> list[Board]:
        """Active boards (all of them, page by page), with columns in board order and groups."""
        document = (
            "query Boards($ids: [ID!], $workspaces: [ID], $limit: Int, $page: Int) {"
            f" {COMPLEXITY_FIELDS} boards(ids: $ids, workspace_ids: $workspaces, limit: $limit, page: $page)"
            " { ...BoardFields } }" + BOARD_FIELDS
        )
        boards: list[Board] = []
        limit = 50 if not ids else max(1, len(ids))
        for page in range(1, 1000):
            variables = {"ids": list(ids) if ids else None, "workspaces": list(workspace_ids) if workspace_ids else None,
                         "limit": limit, "page": page}  # fmt: skip
            batch = self._read(document, variables)["boards"] or []
            boards.extend(Board.model_validate(b) for b in batch if b is not None)
            if len(batch) < limit or ids:
                break
        return boards

    def board(self, board_id: str) -> Board:
        """One board (MondayApiError ``InvalidBoardIdException`` when it does not exist)."""
        found = self.boards([str(board_id)])
        if not found:
            raise MondayApiError([MondayError(message="Board not found", code="InvalidBoardIdException")])
        return found[0]

    def iter_items(self, board_id: str, *, page_size: int = MAX_PAGE_SIZE,
                   query_params: Mapping[str, Any] | None = None) -> Iterator[Item]:  # fmt: skip
        """Every item of a board (``query_params``: monday's ``ItemsQuery`` filter), page by page."""
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        document = (
            "query ItemsPage($board: ID!, $limit: Int!, $query: ItemsQuery) {"
            f" {COMPLEXITY_FIELDS} boards(ids: [$board]) {{ items_page(limit: $limit, query_params: $query)"
            " { cursor items { ...ItemFields } } } }" + ITEM_FIELDS
        )
        data = self._read(document, {"board": str(board_id), "limit": page_size, "query": dict(query_params) if query_params else None})
        boards = data.get("boards") or []
        if not boards:
            raise MondayApiError([MondayError(message="Board not found", code="InvalidBoardIdException")])
        yield from self._follow(boards[0]["items_page"], page_size)

    def _follow(self, page: Mapping[str, Any], page_size: int, *, key_only: bool = False,
                keys: Sequence[str] = ()) -> Iterator[Item]:  # fmt: skip
        fields, fragment = _item_selection(key_only)
        document = (
            "query NextItemsPage($cursor: String!, $limit: Int!"
            + (", $keys: [String!]" if key_only else "") + ") {"
            f" {COMPLEXITY_FIELDS} next_items_page(cursor: $cursor, limit: $limit)"
            f" {{ cursor items {{ {fields} }} }} }}" + fragment
        )
        while True:
            for raw in page.get("items") or []:
                yield Item.from_api(raw)
            cursor = page.get("cursor")
            if not cursor:
                return
            variables: dict[str, Any] = {"cursor": cursor, "limit": page_size}
            if key_only:
                variables["keys"] = list(keys)
            page = self._read(document, variables)["next_items_page"]

    def find_items_by_column_values(
        self, board_id: str, column_id: str, values: Sequence[str], *, chunk: int = LOOKUP_CHUNK,
        key_only: bool = False,
    ) -> dict[str, list[Item]]:
        """Items whose ``column_id`` shows one of ``values``, by value (absent values: no key).

        Many values per request (``items_page_by_column_values``), every page followed: the dedupe
        lookup before creating items keyed by an external id. ``key_only`` reads back each item's id,
        name and that column only, at a fraction of the complexity of every field.
        """
        fields, fragment = _item_selection(key_only)
        document = (
            "query ItemsByColumnValues($board: ID!, $limit: Int!, $columns: [ItemsPageByColumnValuesQuery!]"
            + (", $keys: [String!]" if key_only else "") + ") {"
            f" {COMPLEXITY_FIELDS} items_page_by_column_values(board_id: $board, limit: $limit, columns: $columns)"
            f" {{ cursor items {{ {fields} }} }} }}" + fragment
        )
        wanted = list(dict.fromkeys(str(v) for v in values if v is not None and str(v) != ""))
        found: dict[str, list[Item]] = {}
        for start in range(0, len(wanted), max(1, chunk)):
            part = wanted[start:start + chunk]
            variables: dict[str, Any] = {"board": str(board_id), "limit": MAX_PAGE_SIZE,
                                         "columns": [{"column_id": column_id, "column_values": part}]}
            if key_only:
                variables["keys"] = [column_id]
            page = self._read(document, variables)["items_page_by_column_values"]
            for item in self._follow(page, MAX_PAGE_SIZE, key_only=key_only, keys=[column_id]):
                key = item.text(column_id) if column_id != "name" else item.name
                if key in part:
                    found.setdefault(key, []).append(item)
        return found

    def items_by_column(self, board_id: str, column_id: str) -> dict[str, list[Item]]:
        """Every item of a board by the text of ``column_id`` (id, name and that column read back).

        One listing, 500 items a page: for a dedupe over many values on a board of few items, fewer
        requests and points than looking the values up.
        """
        document = (
            "query KeyedItems($board: ID!, $limit: Int!, $keys: [String!]) {"
            f" {COMPLEXITY_FIELDS} boards(ids: [$board]) {{ items_page(limit: $limit)"
            f" {{ cursor items {{ {_KEY_FIELDS} }} }} }} }}"
        )
        data = self._read(document, {"board": str(board_id), "limit": MAX_PAGE_SIZE, "keys": [column_id]})
        boards = data.get("boards") or []
        if not boards:
            raise MondayApiError([MondayError(message="Board not found", code="InvalidBoardIdException")])
        found: dict[str, list[Item]] = {}
        for item in self._follow(boards[0]["items_page"], MAX_PAGE_SIZE, key_only=True, keys=[column_id]):
            key = item.text(column_id) if column_id != "name" else item.name
            if key:
                found.setdefault(key, []).append(item)
        return found

    def items(self, ids: Sequence[str]) -> list[Item]:
        """Items by id (at most 100 a request; unknown and deleted ids are left out)."""
        document = (f"query Items($ids: [ID!], $limit: Int) {{ {COMPLEXITY_FIELDS}"
                    " items(ids: $ids, limit: $limit) { ...ItemFields } }" + ITEM_FIELDS)  # fmt: skip
        found: list[Item] = []
        for start in range(0, len(ids), ITEMS_BY_ID_LIMIT):
            part = [str(i) for i in ids[start:start + ITEMS_BY_ID_LIMIT]]
            found.extend(Item.from_api(raw) for raw in self._read(document, {"ids": part, "limit": len(part)})["items"] or [])
        return found

    # -- writes ----------------------------------------------------------------------------------
    def create_items(self, board_id: str, drafts: Sequence[ItemDraft], *, key_only: bool = False) -> BatchResult:
        """Create items, several per request as aliases; one outcome per draft, in order.

        ``key_only``: each new item answers its id and name only (a create then costs 10,002 points,
        not ~10,070 with every field read back, so a minute's budget pays for more of them).
        """
        return self._write_batch(board_id, list(drafts), lambda count: _create_document(count, key_only),
                                 _create_variables)

    def update_items(self, board_id: str, updates: Sequence[ItemUpdate]) -> BatchResult:
        """``change_multiple_column_values`` for each update, several per request; one outcome each."""
        return self._write_batch(board_id, list(updates), _update_document, _update_variables)

    def next_write_batch(self, wanted: int) -> int:
        """How many of ``wanted`` writes the next request carries (waiting for the budget's reset first
        when only a sliver of a request is affordable): a caller that hands over exactly that many
        sends one request, never a whole one and then its remainder alone."""
        return self._batch_size(max(1, wanted))

    def _batch_size(self, wanted: int) -> int:
        # Never more than one query may cost, nor than a whole minute's budget pays for (such a request
        # could never be accepted); the cost per write is what monday last charged.
        size = min(wanted, self.max_batch, max(1, PER_QUERY_LIMIT // self._write_cost),
                   max(1, self.budget.per_minute // self._write_cost))
        affordable = self.budget.affordable(self._write_cost)
        if affordable is not None and affordable < size:
            if affordable * 2 >= size:
                return affordable  # spend what is left now; the rest waits for the reset
            # A sliver of a batch would cost a request of its own and still leave the rest waiting for
            # the reset: wait now and send the whole batch then (the same minutes, nearly always, and
            # one request fewer a minute).
            self.budget.wait_for(size * self._write_cost, self._wait)
        return size

    def _write_batch(self, board_id: str, entries: list[Any], document_for: Callable[[int], str],
                     variables_for: Callable[[str, list[Any]], dict[str, Any]]) -> BatchResult:  # fmt: skip
        outcomes: dict[int, AliasOutcome] = {}
        pending: list[tuple[int, Any]] = list(enumerate(entries))
        attempts: dict[int, int] = {}
        while pending:
            size = self._batch_size(len(pending))
            chunk, pending = pending[:size], pending[size:]
            try:
                answer = self._run(document_for(len(chunk)), variables_for(board_id, [e for _, e in chunk]),
                                   write=True, cost=len(chunk) * self._write_cost)  # fmt: skip
            except (TransportFailure, ServerError) as exc:
                raise BatchInterrupted(
                    exc, result=BatchResult(outcomes=sorted(outcomes.values(), key=lambda o: o.index)),
                    in_doubt=[i for i, _ in chunk], not_sent=[i for i, _ in pending],
                ) from exc
            self._learn_write_cost(len(chunk))
            retry, delay = self._settle(answer, chunk, outcomes, attempts)
            if retry:
                self._wait(delay)
                pending = retry + pending
        return BatchResult(outcomes=sorted(outcomes.values(), key=lambda o: o.index))

    def _settle(self, answer: _Answer, chunk: list[tuple[int, Any]], outcomes: dict[int, AliasOutcome],
                attempts: dict[int, int]) -> tuple[list[tuple[int, Any]], float]:  # fmt: skip
        """Record each alias's outcome; return the aliases to send again (not applied) and when."""
        whole = answer.whole_request_errors()
        retry: list[tuple[int, Any]] = []
        delay = 0.0
        for position, (index, entry) in enumerate(chunk):
            alias = f"a{position}"
            raw = answer.data.get(alias)
            if raw is not None:
                outcomes[index] = AliasOutcome(index=index, item=Item.from_api(raw))
                continue
            error = answer.error_for(alias) or (whole[0] if whole else None)
            attempts[index] = attempts.get(index, 0) + 1
            if error is not None and error.code in _RETRY_ALIAS_CODES and attempts[index] < _MAX_ATTEMPTS:
                retry.append((index, entry))
                wait = error.retry_in_seconds or _LOCKED_BACKOFF_S * 2 ** (attempts[index] - 1)
                delay = max(delay, wait)
                continue
            outcomes[index] = AliasOutcome(
                index=index, error=error or MondayError(message="monday answered neither data nor an error")
            )
        return retry, delay

    def _learn_write_cost(self, aliases: int) -> None:
        # What monday charged, never below the write itself: the estimate sizes the next requests.
        if self.last_complexity is not None and aliases:
            self._write_cost = max(WRITE_ITSELF_COST, -(-self.last_complexity.query // aliases))

    # -- webhooks --------------------------------------------------------------------------------
    def webhooks(self, board_id: str) -> list[Webhook]:
        data = self._read(f"query Webhooks($board: ID!) {{ {COMPLEXITY_FIELDS}"
                          " webhooks(board_id: $board) { id board_id event config } }", {"board": str(board_id)}, cost=10)  # fmt: skip
        return [Webhook.model_validate(w) for w in data["webhooks"] or []]

    def create_webhook(self, board_id: str, url: str, event: str, config: Mapping[str, Any] | None = None) -> Webhook:
        """Register a webhook; monday first POSTs a challenge to ``url``, which must echo it."""
        document = (
            "mutation CreateWebhook($board: ID!, $url: String!, $event: WebhookEventType!, $config: JSON) {"
            f" {COMPLEXITY_FIELDS} create_webhook(board_id: $board, url: $url, event: $event, config: $config)"
            " { id board_id event config } }"
        )
        variables = {"board": str(board_id), "url": url, "event": event,
                     "config": json.dumps(dict(config)) if config else None}  # fmt: skip
        answer = self._run(document, variables, write=True, cost=1_000)
        if answer.errors or not answer.data.get("create_webhook"):
            raise MondayApiError(answer.errors or [MondayError(message="create_webhook answered nothing")])
        return Webhook.model_validate(answer.data["create_webhook"])

    def delete_webhook(self, webhook_id: str) -> None:
        document = f"mutation DeleteWebhook($id: ID!) {{ {COMPLEXITY_FIELDS} delete_webhook(id: $id) {{ id }} }}"
        answer = self._run(document, {"id": str(webhook_id)}, write=True, cost=1_000)
        if answer.errors:
            raise MondayApiError(answer.errors)


# -- documents ----------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _create_document(count: int, key_only: bool = False) -> str:
    params = ", ".join(f"$n{i}: String!, $g{i}: String, $v{i}: JSON, $l{i}: Boolean" for i in range(count))
    answer = "{ id name }" if key_only else "{ ...ItemFields }"
    fields = "\n".join(
        f"  a{i}: create_item(board_id: $board, item_name: $n{i}, group_id: $g{i}, column_values: $v{i},"
        f" create_labels_if_missing: $l{i}) {answer}"
        for i in range(count)
    )
    return f"mutation CreateItems($board: ID!, {params}) {{\n  {COMPLEXITY_FIELDS}\n{fields}\n}}" + (
        "" if key_only else ITEM_FIELDS)


def _create_variables(board_id: str, drafts: list[ItemDraft]) -> dict[str, Any]:
    variables: dict[str, Any] = {"board": str(board_id)}
    for i, draft in enumerate(drafts):
        variables |= {f"n{i}": draft.name, f"g{i}": draft.group_id, f"l{i}": draft.create_labels_if_missing,
                      f"v{i}": json.dumps(draft.column_values, ensure_ascii=False) if draft.column_values else None}  # fmt: skip
    return variables


def _item_selection(key_only: bool) -> tuple[str, str]:
    """What a read asks of each item: every field (``ItemFields``), or its id, name and the ``$keys`` columns."""
    return (_KEY_FIELDS, "") if key_only else ("...ItemFields", ITEM_FIELDS)


@lru_cache(maxsize=64)
def _update_document(count: int) -> str:
    params = ", ".join(f"$i{i}: ID!, $v{i}: JSON!, $l{i}: Boolean" for i in range(count))
    fields = "\n".join(
        f"  a{i}: change_multiple_column_values(board_id: $board, item_id: $i{i}, column_values: $v{i},"
        f" create_labels_if_missing: $l{i}) {{ ...ItemFields }}"
        for i in range(count)
    )
    return f"mutation UpdateItems($board: ID!, {params}) {{\n  {COMPLEXITY_FIELDS}\n{fields}\n}}{ITEM_FIELDS}"


def _update_variables(board_id: str, updates: list[ItemUpdate]) -> dict[str, Any]:
    variables: dict[str, Any] = {"board": str(board_id)}
    for i, update in enumerate(updates):
        variables |= {f"i{i}": update.item_id, f"l{i}": update.create_labels_if_missing,
                      f"v{i}": json.dumps(update.column_values, ensure_ascii=False)}  # fmt: skip
    return variables
