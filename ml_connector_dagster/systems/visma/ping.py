"""Visma's probe for ``ml-connector ping``: a client-credentials token, then one supplier invoice.

``GET /v1/supplierInvoice?pageNumber=1&pageSize=1`` needs the read scope and answers the tenant's
total in the first record's ``metadata.totalCount``, so one call tells both that the token works
and what the connector can see.
"""

from __future__ import annotations

import re

from ml_connector_dagster.config import VismaSettings
from ml_connector_dagster.core.http import AuthenticationFailed, raise_for_api_error

from .client import SYSTEM
from .resource import VismaResource

__all__ = ["fix_hint", "probe"]

_MISSING_SCOPE = re.compile(r"Insufficient scope: (\S+?) is required")


def probe(resource: VismaResource) -> str:
    """Authenticate and read one supplier invoice; say which tenant (or company) and how many invoices."""
    with resource.client() as client:
        response = client.http.get("/v1/supplierInvoice", params={"pageNumber": 1, "pageSize": 1})
        raise_for_api_error(response, SYSTEM)
        page = response.json()
    first = page[0] if isinstance(page, list) and page and isinstance(page[0], dict) else {}
    total = (first.get("metadata") or {}).get("totalCount", len(page) if isinstance(page, list) else 0)
    where = f"company {resource.company_id}" if resource.api_flavour == "legacy" else f"tenant {resource.tenant_id}"
    return f"{where}, {total} supplier invoices"


def fix_hint(error: Exception, settings: VismaSettings) -> str | None:
    """What to change for Visma's own refusals; None leaves the generic advice."""
    if not isinstance(error, AuthenticationFailed):
        return None
    detail = error.detail
    if "invalid_client" in detail:
        return f"check {settings.client_secret_env} (and {settings.client_id_env}): Visma Connect refused the client"
    if "tenant_id" in detail:
        return f"check {settings.tenant_id_env}: Visma Connect does not know that tenant for this client"
    if "invalid_scope" in detail:
        return "systems.visma.scope asks for a scope this client may not have: keep the vismanet_erp_service_api:* ones"
    if (missing := _MISSING_SCOPE.search(detail)) is not None:
        return (f"the token lacks the scope {missing[1]}: grant it to the client in the Visma Developer Portal "
                "and add it to systems.visma.scope")
    if "No access to company" in detail:
        return f"check {settings.company_id_env}: the client has no access to that company"
    return None
