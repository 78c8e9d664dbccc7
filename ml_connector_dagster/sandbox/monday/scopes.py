"""The permission scope each root field needs, enforced for OAuth tokens as monday does.

An OAuth token carries the scopes the user granted; asking for a field outside them is an
application-level error (HTTP 200): that field comes back ``null`` with an ``errors`` entry coded
``UserUnauthorizedException`` (``status_code`` 403), while the request's other fields are answered.
A personal API token acts with its user's full permissions and is never refused here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

__all__ = ["REQUIRED_SCOPES", "scope_middleware"]

# (root type, field) -> the scope monday's API reference lists for it; fields not named need none
# (complexity, version, versions).
REQUIRED_SCOPES: dict[tuple[str, str], str] = {
    ("Query", "boards"): "boards:read",
    ("Query", "items"): "boards:read",
    ("Query", "items_page_by_column_values"): "boards:read",
    ("Query", "next_items_page"): "boards:read",
    ("Query", "me"): "me:read",
    ("Query", "users"): "users:read",
    ("Query", "workspaces"): "workspaces:read",
    ("Query", "webhooks"): "webhooks:read",
    ("Query", "account"): "account:read",
    ("Mutation", "create_item"): "boards:write",
    ("Mutation", "change_multiple_column_values"): "boards:write",
    ("Mutation", "change_column_value"): "boards:write",
    ("Mutation", "change_simple_column_value"): "boards:write",
    ("Mutation", "archive_item"): "boards:write",
    ("Mutation", "delete_item"): "boards:write",
    ("Mutation", "create_column"): "boards:write",
    ("Mutation", "create_group"): "boards:write",
    ("Mutation", "create_webhook"): "webhooks:write",
    ("Mutation", "delete_webhook"): "webhooks:write",
}


def scope_middleware(granted: frozenset[str]) -> Callable[..., Any]:
    """A graphql-core middleware refusing root fields whose scope is not in ``granted``."""

    def enforce(resolve: Callable[..., Any], parent: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        needed = REQUIRED_SCOPES.get((info.parent_type.name, info.field_name))
        if needed is not None and needed not in granted:
            raise GraphQLError(
                "User unauthorized to perform action",
                extensions={"code": "UserUnauthorizedException", "error_data": {},
                            "status_code": 403},
            )  # fmt: skip
        return resolve(parent, info, **args)

    return enforce
