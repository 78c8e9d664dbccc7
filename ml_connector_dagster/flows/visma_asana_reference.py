"""Reference data: Visma's GL accounts and cost centres as the options of Asana's enum custom fields.

An option is named ``<code> <description>`` (``4000 Varekjøp``, ``210 Prosjekt Nordlys``) and
matched to Visma by its code, so a description changed in Visma *renames* the option: tasks holding
it show the new name at once, and no task is written. A code new in Visma adds an option; one that
is inactive, or gone, in Visma *disables* its option — Asana keeps a disabled option on the tasks
that hold it, so nothing is ever deleted while in use — and one that comes back re-enables it.
Options are compared with the field as Asana holds it now (disabled ones included), so a run that
changes nothing writes nothing, and one interrupted half-way is completed by the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

from ml_connector_dagster.config import VismaAsanaFlow
from ml_connector_dagster.core.http import TransportFailure
from ml_connector_dagster.core.landing import LandingStore
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.asana.models import CustomField
from ml_connector_dagster.systems.visma.client import SYSTEM as VISMA
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.systems.visma.models import Account, Dimension

from .jira_destination import one_line
from .visma_asana_render import option_code

__all__ = ["REFERENCE_ROLES", "Desired", "OptionChange", "apply_changes", "desired_cost_centers", "desired_gl_accounts",
           "landed_reference", "plan_options", "sync_options"]

MAX_OPTION_NAME = 200  # Asana's limit on an option's name
REFERENCE_ROLES = ("gl_account", "cost_center")


class Desired(NamedTuple):
    """One option Visma calls for: its name, and whether it may be set on tasks."""

    name: str
    active: bool


class OptionChange(NamedTuple):
    """One change to one enum option."""

    action: Literal["add", "rename", "disable", "enable"]
    code: str
    name: str
    option_gid: str | None = None


def _named(code: str, description: str | None) -> str:
    text = one_line(description)
    return (f"{code} {text}" if text else code)[:MAX_OPTION_NAME]


def desired_gl_accounts(accounts: Iterable[Account], types: Iterable[str]) -> dict[str, Desired]:
    """Code -> option of every GL account of the chosen types (an empty ``types``: all accounts)."""
    allowed = {t.casefold() for t in types}
    return {account.account_cd.casefold(): Desired(_named(account.account_cd, account.description), account.active is not False)
            for account in accounts if not allowed or (account.type or "").casefold() in allowed}  # fmt: skip


def desired_cost_centers(dimensions: Iterable[Dimension], dimension_id: str, segment_id: int) -> dict[str, Desired]:
    """Code -> option of every value of the cost-centre segment of ``dimension_id``."""
    wanted: dict[str, Desired] = {}
    for dimension in dimensions:
        if dimension.id.casefold() != dimension_id.casefold():
            continue
        for segment in dimension.segments:
            if segment.segment_id == segment_id:
                for value in segment.segment_values:
                    wanted[value.value_id.casefold()] = Desired(_named(value.value_id, value.description),
                                                                value.active is not False)
    return wanted


def plan_options(field: CustomField, desired: Mapping[str, Desired]) -> list[OptionChange]:
    """The changes that make the field's options say what Visma says (none when they already do)."""
    changes: list[OptionChange] = []
    seen: set[str] = set()
    for option in field.enum_options:
        code = option_code(option.name)
        if code in seen:
            continue  # a second option with one code (added by hand): left as it is
        seen.add(code)
        wanted = desired.get(code)
        if wanted is None or not wanted.active:
            if option.enabled:
                changes.append(OptionChange("disable", code, option.name, option.gid))
            continue
        if option.name != wanted.name:
            changes.append(OptionChange("rename", code, wanted.name, option.gid))
        if not option.enabled:
            changes.append(OptionChange("enable", code, wanted.name, option.gid))
    changes += [OptionChange("add", code, wanted.name) for code, wanted in desired.items()
                if code not in seen and wanted.active]  # fmt: skip
    return changes


def apply_changes(client: AsanaClient, field: CustomField, changes: Iterable[OptionChange]) -> dict[str, int]:
    """Carry the changes out; counts by action. An add whose answer was lost is looked up before a retry."""
    counts = {"add": 0, "rename": 0, "disable": 0, "enable": 0}
    for change in changes:
        if change.action == "add":
            try:
                client.add_enum_option(field.gid, change.name)
            except TransportFailure as exc:
                if not exc.may_have_been_applied:
                    raise
                client.ensure_enum_option(field.gid, change.name)  # looks it up before adding it again
        elif change.action == "rename":
            client.rename_enum_option(change.option_gid or "", change.name)
        elif change.action == "disable":
            client.disable_enum_option(change.option_gid or "")
        else:
            client.enable_enum_option(change.option_gid or "")
        counts[change.action] += 1
    return counts


def landed_reference(ledger: Ledger, settings: VismaAsanaFlow) -> dict[str, dict[str, Desired]]:
    """Role -> what Visma's landed reference data calls for (GL accounts, cost centres)."""
    store = LandingStore(ledger)
    accounts = [Account.model_validate(r.payload) for chunk in store.iter_partition(VISMA, VismaEntity.ACCOUNT.value, None)
                for r in chunk]  # fmt: skip
    dimensions = [Dimension.model_validate(r.payload)
                  for chunk in store.iter_partition(VISMA, VismaEntity.DIMENSION.value, None) for r in chunk]
    return {
        "gl_account": desired_gl_accounts(accounts, settings.gl_account_types),
        "cost_center": desired_cost_centers(dimensions, settings.cost_center_dimension, settings.cost_center_segment),
    }


def sync_options(client: AsanaClient, fields: Mapping[str, CustomField], desired: Mapping[str, Mapping[str, Desired]],
                 log: Any) -> list[tuple[str, OptionChange]]:
    """Bring each reference field's options in line with Visma; the changes made, by field name.

    A role whose reference data was never landed is left alone: an empty chart of accounts would
    otherwise disable every option.
    """
    made: list[tuple[str, OptionChange]] = []
    for role in REFERENCE_ROLES:
        field = fields.get(role)
        if field is None:
            continue
        if not desired.get(role):
            log.warning(f"{field.name}: Visma's reference data is not landed; its options are left as they are")
            continue
        changes = plan_options(client.custom_field(field.gid), desired[role])
        apply_changes(client, field, changes)
        made += [(field.name, change) for change in changes]
    return made
