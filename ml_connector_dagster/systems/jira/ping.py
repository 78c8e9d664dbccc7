"""Jira's probe for ``ml-connector ping``: refresh the 3LO token (or use the API token), resolve the
site, read the calling user, and check the grant holds the scopes the connector needs.

With OAuth the refresh token rotates on this refresh, as on any run; the new one is saved in the
Vault before it is used, so a ping spends nothing.
"""

from __future__ import annotations

from ml_connector_dagster.config import JiraSettings
from ml_connector_dagster.core.http import AuthenticationFailed
from ml_connector_dagster.core.oauth import ConsentRequired

from .client import CloudIdNotFound
from .resource import JiraResource

__all__ = ["REQUIRED_SCOPES", "MissingScope", "fix_hint", "probe"]

# What the flows do: read and write issues, read users (assignees), keep their webhooks alive.
REQUIRED_SCOPES = ("read:jira-work", "write:jira-work", "read:jira-user", "manage:jira-webhook")
_CONSENT = "run `ml-connector auth jira` to consent again"


class MissingScope(PermissionError):
    """The OAuth grant reaches the site without every scope the connector needs."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(f"the grant lacks the scope(s) {', '.join(missing)}")


def probe(resource: JiraResource) -> str:
    """Authenticate, resolve the site and read the calling user; say which site and as whom."""
    with resource.client() as client:
        user = client.myself()
        site = client.site
    if resource.auth == "oauth" and site is not None:
        missing = [scope for scope in REQUIRED_SCOPES if scope not in site.scopes]
        if missing:
            raise MissingScope(missing)
    name = site.name if site is not None and site.name else "?"
    return f"site {name}, as {user.display_name or user.account_id}"


def fix_hint(error: Exception, settings: JiraSettings) -> str | None:
    """What to change for Jira's own refusals; None leaves the generic advice."""
    if isinstance(error, MissingScope):
        return f"{_CONSENT}, granting {', '.join(error.missing)}"
    if isinstance(error, CloudIdNotFound):
        return f"check systems.jira.cloud_id / site_url, or {_CONSENT} on the right site"
    # The resource turns a lost grant into a step failure that is not retried; its cause says why.
    if isinstance(error, ConsentRequired) or isinstance(error.__cause__, ConsentRequired):
        return f"the refresh token is revoked, expired or missing: {_CONSENT}"
    if not isinstance(error, AuthenticationFailed):
        return None
    detail = error.detail
    if settings.auth == "api_token":
        return f"check {settings.email_env} and {settings.api_token_env} (an API token of that Atlassian account)"
    if "invalid_grant" in detail or "no refresh token" in detail:
        return f"the refresh token is revoked, expired or missing: {_CONSENT}"
    if "access_denied" in detail or "unauthorized_client" in detail or "invalid_client" in detail:
        return f"check {settings.client_secret_env} (and {settings.client_id_env}) of the Atlassian OAuth app"
    if "scope" in detail:
        return f"the grant lacks a scope this call needs: {_CONSENT}"
    return None
