"""Asana OAuth consent for ``ml-connector auth asana``: the authorize URL, the scopes, and where the
refresh token goes (the Vault entry :class:`~.resource.AsanaResource` reads).

``https://app.asana.com/-/oauth_authorize?client_id=...&redirect_uri=...&response_type=code
&state=...&scope=default``; the code is traded at ``/-/oauth_token`` with a form body. Access tokens
live one hour; the refresh token does not rotate, so the one stored here keeps working until the
grant is revoked.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml_connector_dagster.config import AsanaSettings
from ml_connector_dagster.core.consent import LOCAL_REDIRECT_URI, CodeFlow

from .client import SYSTEM, TOKEN_PATH

__all__ = ["AUTHORIZE_PATH", "REFRESH_TOKEN_KEY", "SCOPES", "asana_code_flow"]

AUTHORIZE_PATH = "/-/oauth_authorize"
REFRESH_TOKEN_KEY = "asana.refresh_token"
# "default" is the full-permission scope of an app without granular scopes: the connector reads and
# writes tasks, custom fields, projects (from templates) and webhooks.
SCOPES = ("default",)


def asana_code_flow(settings: AsanaSettings, client_id: str, client_secret: str, *,
                    redirect_uri: str = LOCAL_REDIRECT_URI, scopes: Sequence[str] = SCOPES) -> CodeFlow:
    """The authorization-code flow of the app ``client_id``, against ``systems.asana.base_url`` (app.asana.com)."""
    if not client_id or not client_secret:
        raise ValueError(f"Asana consent needs the OAuth app's id and secret (are {settings.client_id_env} and "
                         f"{settings.client_secret_env} set?)")
    root = str(settings.base_url).rstrip("/")
    return CodeFlow(
        system=SYSTEM, authorize_url=f"{root}{AUTHORIZE_PATH}", token_url=f"{root}{TOKEN_PATH}",
        client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri, scopes=tuple(scopes),
        token_body="form", keeps="refresh_token",
    )
