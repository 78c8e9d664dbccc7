"""Acumatica's probe for ``ml-connector ping``: sign in (or refresh the stored session), check the
pinned endpoint version is offered, and read one bill.

The sign-in reuses the API session kept in the vault, as every run does, so a ping takes no extra
licensed API-user slot.
"""

from __future__ import annotations

from contextlib import closing

from ml_connector_dagster.config import AcumaticaSettings
from ml_connector_dagster.core.http import AuthenticationFailed

from .client import AcumaticaEntity, ApiUserLimitReached, EndpointNotFound
from .resource import AcumaticaResource

__all__ = ["fix_hint", "probe"]


def probe(resource: AcumaticaResource) -> str:
    """Authenticate, check the endpoint version, read one bill; say which endpoint answered."""
    with resource.client() as client:
        client.check_endpoint()
        client.page_size = 1
        with closing(client.iter_pages(AcumaticaEntity.BILL)) as pages:  # its read-ahead ends with the client
            first = next(pages, [])
    bills = "bills readable" if first else "no bills yet"
    return f"endpoint {client.endpoint}/{client.version}, {bills}"


def fix_hint(error: Exception, settings: AcumaticaSettings) -> str | None:
    """What to change for Acumatica's own refusals; None leaves the generic advice."""
    if isinstance(error, ApiUserLimitReached):
        return "every licensed API user is signed in: wait for an idle session to end, or sign one out"
    if isinstance(error, EndpointNotFound):
        return "set systems.acumatica.endpoint_name / endpoint_version to one the instance offers"
    if not isinstance(error, AuthenticationFailed):
        return None
    if "invalid_client" in error.detail:
        return f"check {settings.client_id_env} (<GUID>@<Tenant>) and {settings.client_secret_env}"
    if "invalid_grant" in error.detail:
        return f"check {settings.username_env} and {settings.password_env}"
    return None
