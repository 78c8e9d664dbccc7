"""Asana's probe for ``ml-connector ping``: who the token acts as, and which workspaces it sees."""

from __future__ import annotations

from ml_connector_dagster.config import AsanaSettings
from ml_connector_dagster.core.http import AuthenticationFailed

from .resource import AsanaResource

__all__ = ["fix_hint", "probe"]


def probe(resource: AsanaResource) -> str:
    """Authenticate and read the user and its workspaces."""
    with resource.client() as client:
        user = client.me()
        workspaces = client.workspaces()
    names = ", ".join(w.name or w.gid for w in workspaces[:3]) + (", ..." if len(workspaces) > 3 else "")
    return f"as {user.name or user.gid}, {len(workspaces)} workspace(s): {names}"


def fix_hint(error: Exception, settings: AsanaSettings) -> str | None:
    """What to change for Asana's own refusals; None leaves the generic advice."""
    if not isinstance(error, AuthenticationFailed):
        return None
    if settings.auth == "pat":
        return f"check {settings.pat_env}: create a personal access token in Asana's developer console"
    if "invalid_grant" in error.detail:
        return "the refresh token is revoked: consent again with `ml-connector auth asana`"
    return f"check {settings.client_id_env} and {settings.client_secret_env}, then run `ml-connector auth asana`"
