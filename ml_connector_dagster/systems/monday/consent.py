"""monday.com OAuth consent for ``ml-connector auth monday``: the authorize URL, the scopes, and where
the access token goes (the Vault entry :class:`~.resource.MondayResource` reads with ``auth: oauth``).

``https://auth.monday.com/oauth2/authorize?client_id=...&redirect_uri=...&scope=...&state=...``;
the code is traded at ``/oauth2/token``. The access token never expires (it lives until the app is
uninstalled) and there is no refresh token: the access token itself is what the vault keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml_connector_dagster.config import MondaySettings
from ml_connector_dagster.core.consent import LOCAL_REDIRECT_URI, CodeFlow

from .client import SYSTEM

__all__ = ["ACCESS_TOKEN_KEY", "SCOPES", "monday_code_flow"]

ACCESS_TOKEN_KEY = "monday.access_token"
# Boards and items (read, write), who the token acts as, the users people columns name, the
# workspace the boards are in, and the receipt webhooks.
SCOPES = ("me:read", "boards:read", "boards:write", "users:read", "workspaces:read", "webhooks:read",
          "webhooks:write")


def monday_code_flow(settings: MondaySettings, client_id: str, client_secret: str, *,
                     redirect_uri: str = LOCAL_REDIRECT_URI, scopes: Sequence[str] = SCOPES) -> CodeFlow:
    """The OAuth flow of the app ``client_id``, against ``systems.monday``'s OAuth root (auth.monday.com)."""
    if not client_id or not client_secret:
        raise ValueError(f"monday consent needs the OAuth app's id and secret (are {settings.client_id_env} and "
                         f"{settings.client_secret_env} set?)")
    root = settings.oauth_root()
    return CodeFlow(
        system=SYSTEM, authorize_url=f"{root}/oauth2/authorize", token_url=f"{root}/oauth2/token",
        client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri, scopes=tuple(scopes),
        token_body="form", keeps="access_token",
    )
