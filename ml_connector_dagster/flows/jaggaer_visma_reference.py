"""Vendor reference data aligned both ways, field by field, each in the direction the config sets.

For every JAGGAER vendor matched to a Visma supplier, each field (``name``, ``address``, ``parent``
for the vendor hierarchy, ``payment_terms``) is compared *by meaning* — a name by its normalised
form, an address case- and space-insensitively, payment terms by their days — so a clerk's spelling
never counts as a change. Where they differ, the field's master wins:

- ``jaggaer_to_visma``: the Visma supplier is updated (``PUT /v1/supplier/{number}`` with
  ``If-Match``; a 412 is read again and re-applied), idempotently: a re-run finds nothing to do.
- ``visma_to_jaggaer``: J1P exposes no write endpoint for vendors (the simulator, like the public
  contract, is read-only; JAGGAER takes master data through a supplier import its professional
  services set up). The change is therefore *planned*: listed for the team that maintains JAGGAER,
  never sent.

The GL side is checked too: JAGGAER accounts in use without a Visma mapping, and mapping rows that
name an account or dimension value Visma does not have.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ml_connector_dagster.config import JaggaerVismaFlow
from ml_connector_dagster.core.http import ApiError
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.visma.client import VismaClient, VismaEntity
from ml_connector_dagster.systems.visma.conditional_update import StillChanging, update_with_etag

from .jaggaer_visma_mapping import VismaChart
from .jaggaer_visma_matching import VendorMatch, normalise_name
from .jaggaer_visma_plan import References

__all__ = ["ASSET", "AlignmentOutcome", "FieldChange", "align_vendors", "gl_gaps", "vendor_changes"]

ASSET = "visma/jaggaer_vendor_alignment"
VendorField = Literal["name", "address", "parent", "payment_terms"]
_DAYS = re.compile(r"(\d+)")
_ADDRESS = (("addressLine1", "street"), ("postalCode", "postalCode"), ("city", "city"), ("countryId", "country"))


class FieldChange(BaseModel):
    """One field of one vendor that differs between the systems, and what its master says it should be."""

    model_config = ConfigDict(frozen=True)

    jaggaer_id: str
    visma_number: str
    field: VendorField
    direction: Literal["jaggaer_to_visma", "visma_to_jaggaer"]
    jaggaer_value: str
    visma_value: str
    wanted: Any = Field(description="The value the non-master system should take (its update-DTO value for Visma).")


def _address_of_jaggaer(vendor: Mapping[str, Any]) -> dict[str, str]:
    address = vendor.get("address") or {}
    return {dto: str(address.get(name) or "").strip() for dto, name in _ADDRESS}


def _address_of_visma(supplier: Mapping[str, Any]) -> dict[str, str]:
    address = supplier.get("mainAddress") or {}
    country = address.get("country") or {}
    return {"addressLine1": str(address.get("addressLine1") or "").strip(),
            "postalCode": str(address.get("postalCode") or "").strip(), "city": str(address.get("city") or "").strip(),
            "countryId": str(country.get("id") if isinstance(country, Mapping) else country or "").strip()}


def _fold(values: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(" ".join(value.casefold().split()) for value in values.values())


def _days(code: Any) -> int | None:
    found = _DAYS.search(str(code or ""))
    return int(found.group(1)) if found else None


def _compare(field: VendorField, vendor: Mapping[str, Any], supplier: Mapping[str, Any],
             parent: str | None) -> tuple[str, str, Any, Any] | None:
    """(JAGGAER's value, Visma's value, Visma's wanted value, JAGGAER's wanted value), or None when they agree."""
    if field == "name":
        mine, theirs = str(vendor.get("name") or ""), str(supplier.get("name") or "")
        same = normalise_name(mine) == normalise_name(theirs)
        return None if same else (mine, theirs, mine, theirs)
    if field == "address":
        mine, theirs = _address_of_jaggaer(vendor), _address_of_visma(supplier)
        if not any(mine.values()) or _fold(mine) == _fold(theirs):
            return None
        return (", ".join(mine.values()), ", ".join(theirs.values()), {k: {"value": v} for k, v in mine.items() if v},
                {"street": theirs["addressLine1"], "postalCode": theirs["postalCode"], "city": theirs["city"],
                 "country": theirs["countryId"]})
    if field == "parent":
        current = str((supplier.get("parentRecord") or {}).get("number") or "")
        if parent is None or parent == current:
            return None
        return parent, current, parent, current
    mine_days, theirs_days = _days(vendor.get("paymentTerms")), _days((supplier.get("creditTerms") or {}).get("id"))
    if mine_days is None or theirs_days is None or mine_days == theirs_days:
        return None
    return str(vendor.get("paymentTerms")), str((supplier.get("creditTerms") or {}).get("id")), f"{mine_days}D", f"NET{theirs_days}"


def vendor_changes(vendor: Mapping[str, Any], supplier: Mapping[str, Any], *, parent: str | None,
                   settings: JaggaerVismaFlow) -> list[FieldChange]:
    """The fields on which one matched pair disagrees; ``parent`` is the Visma number of the vendor's parent."""
    changes = []
    for field, direction in settings.reference_directions.items():
        if direction == "off" or (compared := _compare(field, vendor, supplier, parent)) is None:
            continue
        jaggaer_value, visma_value, for_visma, for_jaggaer = compared
        changes.append(FieldChange(
            jaggaer_id=str(vendor.get("supplierId")), visma_number=str(supplier.get("number")), field=field,
            direction=direction, jaggaer_value=jaggaer_value, visma_value=visma_value,
            wanted=for_visma if direction == "jaggaer_to_visma" else for_jaggaer,
        ))  # fmt: skip
    return changes


_DTO_FIELD = {"name": "name", "address": "mainAddress", "parent": "parentRecordNumber", "payment_terms": "creditTermsId"}


def supplier_update(changes: list[FieldChange]) -> dict[str, Any] | None:
    """The ``SupplierUpdateDto`` carrying the Visma-bound changes, or None when there are none."""
    body = {_DTO_FIELD[c.field]: {"value": c.wanted} for c in changes if c.direction == "jaggaer_to_visma"}
    return body or None


class AlignmentOutcome(BaseModel):
    """What one alignment pass found and did."""

    matches: list[VendorMatch] = Field(default_factory=list)
    applied: list[FieldChange] = Field(default_factory=list, description="Written to Visma.")
    planned: list[FieldChange] = Field(default_factory=list, description="For JAGGAER: listed, not sent.")
    suppliers_updated: int = 0
    conflicts: int = 0
    failed: int = 0


def _parent_number(vendor: Mapping[str, Any], matched: Mapping[str, VendorMatch]) -> str | None:
    parent_id = vendor.get("parentSupplierId")
    if parent_id in (None, ""):
        return None
    found = matched.get(str(parent_id))
    return found.visma_number if found is not None else None


def align_vendors(references: References, *, client: VismaClient, ledger: Ledger, settings: JaggaerVismaFlow,
                  run_id: str | None, log: logging.Logger | Any) -> AlignmentOutcome:
    """Match every landed vendor, apply the Visma-bound field changes, plan the JAGGAER-bound ones.

    Differences are found against the landed suppliers; only a supplier with a Visma-bound change is
    read again (for its ETag) and updated, the change worked out afresh against what Visma holds.
    """
    outcome = AlignmentOutcome()
    matches = {vendor_id: references.match(vendor_id, settings) for vendor_id in references.vendors}
    outcome.matches = list(matches.values())
    succeeded = []
    for vendor_id, match in matches.items():
        landed = references.visma_suppliers.get(match.visma_number or "")
        if match.visma_number is None or landed is None:
            continue
        vendor, parent = references.vendors[vendor_id], _parent_number(references.vendors[vendor_id], matches)
        changes = vendor_changes(vendor, landed, parent=parent, settings=settings)
        outcome.planned += [change for change in changes if change.direction == "visma_to_jaggaer"]
        if supplier_update(changes) is not None:
            try:
                outcome.applied += _apply(client, match.visma_number, vendor, parent, settings, outcome)
            except (ApiError, StillChanging) as exc:
                outcome.failed += 1
                ledger.add_dead_letter(ASSET, vendor_id, dict(vendor),
                                       f"Visma supplier {match.visma_number} not updated: {exc}", run_id=run_id)
                log.warning(f"{ASSET}: vendor {vendor_id}: {exc}")
                continue
        succeeded.append(vendor_id)
    ledger.resolve_dead_letters_for(ASSET, succeeded)
    return outcome


def _apply(client: VismaClient, number: str, vendor: Mapping[str, Any], parent: str | None,
           settings: JaggaerVismaFlow, outcome: AlignmentOutcome) -> list[FieldChange]:
    """PUT the Visma-bound changes of one supplier (412: read again, work them out again)."""
    applied: list[FieldChange] = []

    def body_for(current: Mapping[str, Any]) -> dict[str, Any] | None:
        fresh = vendor_changes(vendor, current, parent=parent, settings=settings)
        applied[:] = [change for change in fresh if change.direction == "jaggaer_to_visma"]
        return supplier_update(fresh)

    def conflict() -> None:
        outcome.conflicts += 1

    if update_with_etag(client, VismaEntity.SUPPLIER, number, body_for, on_conflict=conflict):
        outcome.suppliers_updated += 1
        return applied
    return []


def gl_gaps(references: References, jaggaer_accounts: list[Mapping[str, Any]], chart: VismaChart) -> list[str]:
    """Active JAGGAER accounts the GL table leaves unmapped, and table rows Visma would refuse."""
    table = references.gl_table
    mapped = dict(zip(table["jaggaer_account"], table["visma_account"], strict=True))
    gaps = [f"JAGGAER account {a.get('code')} ({a.get('name')}) has no Visma account in the GL table"
            for a in jaggaer_accounts if a.get("active") is not False and not mapped.get(str(a.get("code")))]
    if chart.accounts is not None:
        gaps += [f"GL table maps JAGGAER {code} to Visma account {visma}, which Visma does not have"
                 for code, visma in mapped.items() if visma and visma not in chart.accounts]
    return gaps
