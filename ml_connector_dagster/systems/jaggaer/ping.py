"""JAGGAER's probe for ``ml-connector ping``: a client-credentials token from the realm, then one
purchase order from the configured J1P path (its page answers the total in ``totalElements``)."""

from __future__ import annotations

from ml_connector_dagster.config import JaggaerSettings
from ml_connector_dagster.core.http import AuthenticationFailed, NotFound, raise_for_api_error

from .client import SYSTEM, JaggaerEntity
from .resource import JaggaerResource

__all__ = ["fix_hint", "probe"]


def probe(resource: JaggaerResource) -> str:
    """Authenticate and read one purchase order; say how many the instance lists."""
    with resource.client() as client:
        response = client.http.get(client.paths[JaggaerEntity.PURCHASE_ORDERS], params={"page": 0, "size": 1})
        raise_for_api_error(response, SYSTEM)
        body = response.json()
    total = body.get("totalElements", len(body.get("content") or [])) if isinstance(body, dict) else "?"
    return f"{total} purchase orders"


def fix_hint(error: Exception, settings: JaggaerSettings) -> str | None:
    """What to change for JAGGAER's own refusals; None leaves the generic advice."""
    if isinstance(error, NotFound):
        return "check systems.jaggaer.paths and path_parameters: this instance has no such J1P path"
    if not isinstance(error, AuthenticationFailed):
        return None
    if "invalid_client" in error.detail or "unauthorized_client" in error.detail:
        return f"check {settings.client_secret_env} (and {settings.client_id_env}) of the realm's client"
    if error.status_code == 403:
        return "the client's service account lacks a role for this path: ask the JAGGAER admin to grant read access"
    return None
