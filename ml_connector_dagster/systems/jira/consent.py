"""Atlassian 3LO consent for ``ml-connector auth jira``: the authorize URL's parameters, the scopes
the connector needs, and where the resulting refresh token goes (the Vault entry the resource reads).

``https://auth.atlassian.com/authorize?audience=api.atlassian.com&client_id=...&scope=...
&redirect_uri=...&state=...&response_type=code&prompt=consent``; the code is traded at
``/oauth/token`` with a JSON body. ``offline_access`` is what makes Atlassian answer a refresh token.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml_connector_dagster.config import JiraSettings
from ml_connector_dagster.core.consent import LOCAL_REDIRECT_URI, CodeFlow

from .client import REFRESH_TOKEN_KEY, SYSTEM

__all__ = ["DEFAULT_REDIRECT_URI", "REFRESH_TOKEN_KEY", "SCOPES", "jira_code_flow"]

SCOPES = ("read:jira-work", "write:jira-work", "read:jira-user", "manage:jira-webhook", "offline_access")
# The callback URL registered on the app in the Atlassian developer console.
DEFAULT_REDIRECT_URI = LOCAL_REDIRECT_URI


def jira_code_flow(settings: JiraSettings, client_id: str, client_secret: str, *,
                   redirect_uri: str = DEFAULT_REDIRECT_URI, scopes: Sequence[str] = SCOPES) -> CodeFlow:
    """The 3LO flow of the app ``client_id``, against ``systems.jira.auth_url`` (auth.atlassian.com)."""
    if not client_id or not client_secret:
        raise ValueError(f"Jira consent needs the OAuth app's id and secret (are {settings.client_id_env} and "
                         f"{settings.client_secret_env} set?)")
    root = str(settings.auth_url or settings.base_url).rstrip("/")
    wanted = tuple(dict.fromkeys([*scopes, "offline_access"]))  # without it, no refresh token
    return CodeFlow(
        system=SYSTEM, authorize_url=f"{root}/authorize", token_url=f"{root}/oauth/token",
        client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri, scopes=wanted,
        extra_params={"audience": "api.atlassian.com", "prompt": "consent"}, token_body="json",
    )
