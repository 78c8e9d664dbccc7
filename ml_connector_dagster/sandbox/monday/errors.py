"""monday.com's error shapes (API 2025-01 and later: one ``errors[]`` format for everything).

Application errors answer HTTP 200 with ``errors[]`` (and whatever ``data`` was resolved): each error
has ``message``, ``locations``, ``path`` (the field or alias that failed) and ``extensions`` with a
``code`` (``ColumnValueException``, ``InvalidBoardIdException``, ``COMPLEXITY_BUDGET_EXHAUSTED``...),
``status_code`` and ``error_data``. Transport errors (400, 401, 429, 500) carry the same ``errors[]``
body with their HTTP status; 429s add ``Retry-After``. Every body carries ``account_id`` and
``extensions.request_id``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from graphql import GraphQLError
from starlette.responses import JSONResponse

__all__ = [
    "MondayFieldError",
    "column_value_error",
    "error_entry",
    "http_error",
    "monday_body",
]


class MondayFieldError(GraphQLError):
    """An application error raised by a resolver: lands in ``errors[]`` at that field's path."""

    def __init__(self, message: str, code: str, *, status_code: int = 200, **error_data: Any) -> None:
        extensions: dict[str, Any] = {"code": code, "status_code": status_code, "error_data": error_data}
        super().__init__(message, extensions=extensions)
        self.code = code


def column_value_error(message: str, column_value: Any, column_type: str) -> MondayFieldError:
    """``ColumnValueException``: a value its column refuses (``column_type`` as monday names it)."""
    return MondayFieldError(
        message, "ColumnValueException", column_value=str(column_value), column_type=column_type
    )


def error_entry(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """One ``errors[]`` entry that belongs to no field (the whole request failed)."""
    return {"message": message, "extensions": {"code": code, **extensions}}


def monday_body(
    *, account_id: int, data: Any = None, errors: list[dict[str, Any]] | None = None, include_data: bool = True
) -> dict[str, Any]:
    """A response body: ``data`` (when execution started), ``errors`` (when any), the account id."""
    body: dict[str, Any] = {}
    if include_data:
        body["data"] = data
    if errors:
        body["errors"] = errors
    body["extensions"] = {"request_id": str(uuid.uuid4())}
    body["account_id"] = account_id
    return body


def http_error(
    status: int,
    message: str,
    code: str,
    *,
    account_id: int | None,
    retry_after_s: float | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A transport-level error: ``errors[]`` with a non-200 status (and ``Retry-After`` when given)."""
    headers = {}
    if retry_after_s is not None:
        seconds = max(1, math.ceil(retry_after_s))
        headers["Retry-After"] = str(seconds)
        extensions.setdefault("retry_in_seconds", seconds)
    entry = error_entry(message, code, status_code=status, **extensions)
    body = {"errors": [entry], "extensions": {"request_id": str(uuid.uuid4())}, "account_id": account_id}
    return JSONResponse(body, status_code=status, headers=headers)
