"""monday.com's probe for ``ml-connector ping``: who the token acts as, in the pinned API version."""

from __future__ import annotations

from ml_connector_dagster.config import MondaySettings
from ml_connector_dagster.core.http import AuthenticationFailed

from .client import MondayApiError
from .consent import SCOPES
from .resource import MondayResource

__all__ = ["fix_hint", "probe"]


def probe(resource: MondayResource) -> str:
    """Authenticate and read the token's user and the API version that answers."""
    with resource.client() as client:
        user = client.me()
        version = client.version()
    return f"as {user.name}, API version {version.value}"


def fix_hint(error: Exception, settings: MondaySettings) -> str | None:
    """What to change for monday's own refusals; None leaves the generic advice."""
    if isinstance(error, MondayApiError) and error.code == "UserUnauthorizedException":
        if settings.auth == "oauth":
            return f"the grant lacks a scope: consent again with `ml-connector auth monday` (it asks for {' '.join(SCOPES)})"
        return f"the user of {settings.api_token_env} may not do this on the account: ask a monday admin"
    if not isinstance(error, AuthenticationFailed):
        return None
    if settings.auth == "oauth":
        return "the app's token no longer works (was the app uninstalled?): consent again with `ml-connector auth monday`"
    return f"check {settings.api_token_env}: a personal API token from monday's Developers > My access tokens"
