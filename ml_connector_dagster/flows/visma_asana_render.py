"""How a Visma purchase order or supplier invoice looks in Asana: a task with finance custom fields.

Asana has no finance objects, so a document becomes a task whose custom fields carry the budget
context: Vendor, Amount, Currency, Due date, PO / invoice number, GL account, Cost center, Visma
status and the Visma ID the connector deduplicates on. A PO's line items become its subtasks, each
with its own amount and GL account. The notes repeat the facts for people and state that the
finance fields are Visma's: edits belong in Visma.net.

Both document types are first reduced to the Visma -> issue flow's :class:`DocumentView`, so the
rest of the flow never asks which type it holds. What the connector *decides* about a new task —
its assignee and review flag, from the supplier mapping — is no part of the rendering nor of its
content hash: editing the mapping changes the next tasks created, never the ones that exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ml_connector_dagster.config import AsanaFieldNames, VismaAsanaFlow
from ml_connector_dagster.core.http import NotFound
from ml_connector_dagster.core.kept_reference import kept
from ml_connector_dagster.core.landing import content_hash
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.asana.client import AsanaClient
from ml_connector_dagster.systems.asana.models import CustomField, EnumOption, User
from ml_connector_dagster.systems.visma.client import VismaEntity
from ml_connector_dagster.systems.visma.models import PurchaseOrder, SupplierInvoice, VismaRecord

from .jira_destination import format_amount, format_money, one_line
from .visma_jira_render import DocumentView, LineItem, invoice_view, purchase_order_view

__all__ = [
    "INVOICES",
    "KINDS",
    "NOTES_FLOW",
    "PURCHASE_ORDERS",
    "AsanaContext",
    "RenderedLine",
    "RenderedTask",
    "TaskKind",
    "context_key",
    "current_fields",
    "kept_context",
    "option_code",
    "render_task",
    "resolve_context",
    "review_flag",
    "task_state_hash",
]

NAME_LIMIT = 1024
NOTES_FLOW = "visma_asana.notes"  # ledger flow of the return path: task gid -> the state last reported to Visma
NOTE_LINES_SHOWN = 50
READ_ONLY_NOTE = "Synced from Visma.net by ml-connector: the finance fields are read-only here, edit them in Visma."
_ALL_ROLES = tuple(AsanaFieldNames.model_fields)


@dataclass(frozen=True)
class TaskKind:
    """One kind of Visma document that becomes Asana tasks: everything that differs between kinds."""

    name: str
    entity: VismaEntity
    model: type[VismaRecord]
    asset: str
    source: str
    view: Callable[[Any], DocumentView]
    project: Callable[[VismaAsanaFlow], str]
    roles: tuple[str, ...]  # custom fields its project carries
    has_lines: bool = False  # line items become subtasks

    @property
    def flow(self) -> str:
        """The ledger's flow name of this kind's task links."""
        return f"visma_asana.{self.name}"

    @property
    def lines_flow(self) -> str:
        """The ledger's flow name of this kind's line subtasks."""
        return f"visma_asana.{self.name}.lines"


PURCHASE_ORDERS = TaskKind(
    name="purchase_order_tasks", entity=VismaEntity.PURCHASE_ORDER, model=PurchaseOrder,
    asset="asana/visma_purchase_order_tasks", source="purchase_orders", view=purchase_order_view,
    project=attrgetter("purchase_orders_project"), roles=tuple(r for r in _ALL_ROLES if r != "invoice_number"),
    has_lines=True,
)  # fmt: skip
INVOICES = TaskKind(
    name="invoice_tasks", entity=VismaEntity.SUPPLIER_INVOICE, model=SupplierInvoice,
    asset="asana/visma_invoice_tasks", source="supplier_invoices", view=invoice_view,
    project=attrgetter("invoices_project"), roles=_ALL_ROLES,
)  # fmt: skip
KINDS = (PURCHASE_ORDERS, INVOICES)


# -- what the run needs to know of Asana -------------------------------------------------------------


class AsanaContext(BaseModel):
    """The workspace as one run sees it: project gids by kind, custom fields by role, users."""

    model_config = ConfigDict(frozen=True)

    workspace_gid: str
    projects: dict[str, str] = Field(description="Task kind -> project gid.")
    fields: dict[str, CustomField] = Field(description="Role (AsanaFieldNames) -> the custom field.")
    users: list[User] = Field(default_factory=list)
    template_gid: str | None = None

    def field_gid(self, role: str) -> str | None:
        found = self.fields.get(role)
        return found.gid if found else None


def current_fields(client: AsanaClient, settings: VismaAsanaFlow, workspace_gid: str | None) -> dict[str, CustomField]:
    """Role (AsanaFieldNames) -> the custom field of the configured name, read now (a missing one fails naming it)."""
    workspace = workspace_gid or client.workspaces()[0].gid
    names = {role: name for role, name in settings.fields.model_dump().items() if name}
    by_name = client.custom_fields_by_name(workspace, list(dict.fromkeys(names.values())))
    return {role: by_name[name] for role, name in names.items()}


def _kind_projects(client: AsanaClient, settings: VismaAsanaFlow, workspace: str,
                   known: AsanaContext | None) -> dict[str, str]:  # fmt: skip
    """Task kind -> project gid: the known ones read back by gid when they still carry their names, else
    found by name in a listing of the workspace's projects (which grows with every PO of ``po_layout:
    projects``: one request per 100)."""
    if known is not None and known.workspace_gid == workspace and set(known.projects) == {k.name for k in KINDS}:
        try:
            read = {kind.name: client.project(known.projects[kind.name]) for kind in KINDS}
        except NotFound:
            read = {}
        if read and all(not p.archived and p.name == kind.project(settings) for kind in KINDS
                        for p in [read[kind.name]]):
            return dict(known.projects)
    projects = {p.name: p.gid for p in client.projects(workspace)}
    missing = [name for name in (kind.project(settings) for kind in KINDS) if name not in projects]
    if missing:
        raise LookupError(f"no Asana project named {', '.join(map(repr, missing))} in workspace {workspace}")
    return {kind.name: projects[kind.project(settings)] for kind in KINDS}


def resolve_context(client: AsanaClient, settings: VismaAsanaFlow, workspace_gid: str | None, *,
                    known: AsanaContext | None = None) -> AsanaContext:  # fmt: skip
    """Projects, custom fields (by the configured names; a missing one fails naming it) and users.

    ``known``: an earlier context, whose projects are read back by gid rather than looked for again.
    """
    workspace = workspace_gid or (known.workspace_gid if known else None) or client.workspaces()[0].gid
    fields = current_fields(client, settings, workspace)
    projects = _kind_projects(client, settings, workspace, known)
    template = None
    if settings.po_layout == "projects":
        template = next((t.gid for t in client.project_templates(workspace) if t.name == settings.po_template), None)
        if template is None:
            raise LookupError(f"no Asana project template named {settings.po_template!r} (po_layout: projects)")
    return AsanaContext(
        workspace_gid=workspace, projects=projects,
        fields=fields, users=client.users(workspace),
        template_gid=template,
    )  # fmt: skip


def context_key(site: str, workspace_gid: str | None, settings: VismaAsanaFlow) -> str:
    """The kept context's key: one per Asana site, workspace and flow settings (the names it resolves)."""
    digest = hashlib.sha256(f"{site}|{workspace_gid}|{settings.model_dump_json()}".encode()).hexdigest()
    return f"asana_context:{digest[:16]}"


def kept_context(client: AsanaClient, settings: VismaAsanaFlow, workspace_gid: str | None, *, ledger: Ledger,
                 site: str) -> AsanaContext:  # fmt: skip
    """:func:`resolve_context`, kept in the ledger for ``settings.context_ttl_s`` (:mod:`core.kept_reference`):
    four requests every step and every sensor tick paid before, on a budget of 150 a minute (free plan)."""
    return kept(ledger, context_key(site, workspace_gid, settings), AsanaContext,
                partial(resolve_context, client, settings, workspace_gid), ttl_s=settings.context_ttl_s,
                refresh=lambda older: resolve_context(client, settings, workspace_gid, known=older))


# -- enum options ------------------------------------------------------------------------------------


def option_code(name: str) -> str:
    """The code an option is named for: ``"4000 Varekjøp"`` -> ``"4000"``."""
    return name.strip().split(" ", 1)[0].casefold()


def _option_by_code(field: CustomField | None, code: str | None) -> EnumOption | None:
    if field is None or not code:
        return None
    wanted = code.strip().casefold()
    return next((o for o in field.enum_options if o.enabled and option_code(o.name) == wanted), None)


def _option_by_name(field: CustomField | None, name: str | None) -> EnumOption | None:
    return field.option_named(name) if field is not None and name else None


# -- the rendering -----------------------------------------------------------------------------------


def _set_values(values: dict[str, str | float | None]) -> dict[str, str | float]:
    """The values to write. Asana's contract types each as a string or number, so an empty one is left
    out rather than sent as null: a value Visma no longer gives stays as it was."""
    return {gid: value for gid, value in values.items() if value is not None}


class RenderedLine(BaseModel):
    """One PO line as a subtask of its PO's task."""

    model_config = ConfigDict(frozen=True)

    line_id: str = Field(description="Ledger source id: <record id>#<line number>.")
    external_id: str = Field(description="Its Visma ID: <document's Visma ID>#<line number>.")
    name: str
    notes: str
    custom_fields: dict[str, str | float | None]

    @property
    def content_hash(self) -> str:
        return content_hash({"name": self.name, "notes": self.notes, "custom_fields": self.custom_fields})

    def update_fields(self) -> dict[str, Any]:
        return {"name": self.name, "notes": self.notes, "custom_fields": _set_values(self.custom_fields)}

    def create_fields(self, parent_gid: str, project_gid: str) -> dict[str, Any]:
        """A subtask homed in the project too, so that it may carry the project's custom fields."""
        return {**self.update_fields(), "parent": parent_gid, "projects": [project_gid]}


class RenderedTask(BaseModel):
    """One Visma document as an Asana task: what to create, what to keep up to date, what to compare."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    external_id: str
    version: str = Field(description="The source version: Visma's last-modified timestamp.")
    number: str
    supplier_number: str
    supplier_name: str
    name: str
    notes: str
    due_on: str | None
    custom_fields: dict[str, str | float | None]
    unresolved: tuple[str, ...] = Field((), description="Values left empty: no matching enum option (yet).")
    lines: tuple[RenderedLine, ...] = ()

    @property
    def content_hash(self) -> str:
        """Equal for two renderings that would leave the task identical. The assignee and review flag
        are decided once, at create, and are left out: a new mapping never re-syncs a task."""
        return content_hash({"name": self.name, "notes": self.notes, "due_on": self.due_on,
                             "custom_fields": self.custom_fields})

    def update_fields(self) -> dict[str, Any]:
        """What an update writes: the document's facts, never the assignee, review flag or completion."""
        return {"name": self.name, "notes": self.notes, "due_on": self.due_on,
                "custom_fields": _set_values(self.custom_fields)}

    def create_fields(self, project_gids: Sequence[str], *, assignee: str | None,
                      review: tuple[str, str] | None) -> dict[str, Any]:
        """A create: the facts, the projects, and the mapping's decision (assignee, or review flag gid + option)."""
        fields = {**self.update_fields(), "projects": list(project_gids)}
        if assignee:
            fields["assignee"] = assignee
        if review is not None:
            fields["custom_fields"] = {**fields["custom_fields"], review[0]: review[1]}
        return fields


def task_state_hash(completed: bool, assignee: str | None, review: str | None) -> str:
    """The part of a task people change in Asana and the return path reports: done, who, review flag."""
    return content_hash({"completed": bool(completed), "assignee": assignee or "", "review": review or ""})


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(round(value, 2))


def _main_line(lines: Sequence[LineItem]) -> LineItem | None:
    """The line that carries most of the amount: its account and cost centre stand for the document."""
    return max(lines, key=lambda line: abs(line.amount or Decimal(0)), default=None)


def _cost_center(record: VismaRecord, line_number: int | None, segment: int) -> str | None:
    """The cost centre segment of a line's ``subaccount`` (Visma documents carry it per line)."""
    for line in getattr(record, "invoice_lines", None) or getattr(record, "lines", None) or []:
        number = getattr(line, "line_number", None) or getattr(line, "line_nbr", None)
        if number != line_number:
            continue
        subaccount = (line.model_extra or {}).get("subaccount")
        for part in (subaccount or {}).get("segments") or []:
            if isinstance(part, dict) and part.get("segmentId") == segment and part.get("segmentValue"):
                return str(part["segmentValue"])
    return None


def _line_cost(line: LineItem, currency: str) -> str:
    """``10 × 1 250,00 = 12 500,00 NOK``."""
    quantity = f"{format_amount(line.quantity).removesuffix(',00')} × " if line.quantity is not None else ""
    unit = format_amount(line.unit_cost) if line.unit_cost is not None else "—"
    return f"{quantity}{unit} = {format_money(line.amount, currency)}"


def _line_text(line: LineItem, currency: str) -> str:
    account = f" (account {line.account})" if line.account else ""
    return f"{line.number}. {one_line(line.description) or '—'}: {_line_cost(line, currency)}{account}"


def _notes(view: DocumentView) -> str:
    parts = [one_line(view.description)] if view.description else []
    facts = [
        f"Supplier: {view.supplier_display} ({view.supplier_number})",
        f"Amount: {format_money(view.amount, view.currency)}",
        f"{view.due_label}: {view.due_date.isoformat() if view.due_date else '—'}",
        f"Status in Visma: {view.status}",
    ]
    if view.po_reference and view.title != "Purchase order":
        facts.append(f"PO reference: {view.po_reference}")
    if view.supplier_reference:
        facts.append(f"Supplier's invoice number: {view.supplier_reference}")
    parts.append("\n".join(facts))
    if view.lines:
        shown = [_line_text(line, view.currency) for line in view.lines[:NOTE_LINES_SHOWN]]
        more = [f"… and {len(view.lines) - NOTE_LINES_SHOWN} more"] if len(view.lines) > NOTE_LINES_SHOWN else []
        parts.append("\n".join(["Line items:", *shown, *more]))
    parts.append(f"Visma ID: {view.external_id}\n{READ_ONLY_NOTE}")
    return "\n\n".join(parts)


class _Values:
    """Custom field values by role, for the roles the kind's project carries and the config names."""

    def __init__(self, kind: TaskKind, context: AsanaContext) -> None:
        self.kind, self.context = kind, context
        self.values: dict[str, str | float | None] = {}
        self.unresolved: list[str] = []

    def set(self, role: str, value: str | float | None) -> None:
        gid = self.context.field_gid(role)
        if gid is not None and role in self.kind.roles:
            self.values[gid] = value

    def option(self, role: str, option: EnumOption | None, wanted: str | None, *, report: bool = True) -> None:
        self.set(role, option.gid if option else None)
        if option is None and wanted and report and self.context.field_gid(role) and role in self.kind.roles:
            self.unresolved.append(f"{self.context.fields[role].name}: no option for {wanted!r}")


def _render_line(kind: TaskKind, view: DocumentView, line: LineItem, context: AsanaContext) -> RenderedLine:
    values = _Values(kind, context)
    values.set("visma_id", f"{view.external_id}#{line.number}")
    values.set("amount", _number(line.amount))
    values.option("currency", _option_by_name(context.fields.get("currency"), view.currency), view.currency)
    values.option("gl_account", _option_by_code(context.fields.get("gl_account"), line.account), line.account)
    notes = (f"{_line_cost(line, view.currency)}\nAccount: {line.account or '—'}\n"
             f"Line {line.number} of {view.title.lower()} {view.number}.")
    return RenderedLine(line_id=f"{view.record_id}#{line.number}", external_id=f"{view.external_id}#{line.number}",
                        name=f"Line {line.number}: {one_line(line.description) or '—'}"[:NAME_LIMIT], notes=notes,
                        custom_fields=values.values)  # fmt: skip


def render_task(kind: TaskKind, record: VismaRecord, context: AsanaContext, settings: VismaAsanaFlow) -> RenderedTask:
    """The task of one Visma document: name, notes, due date and custom field values (option gids)."""
    view = kind.view(record)
    main = _main_line(view.lines)
    centre = _cost_center(record, main.number if main else None, settings.cost_center_segment)
    values = _Values(kind, context)
    values.set("visma_id", view.external_id)
    values.set("vendor", view.supplier_display)
    values.set("amount", _number(view.amount))
    values.option("currency", _option_by_name(context.fields.get("currency"), view.currency), view.currency)
    values.set("due_date", view.due_date.isoformat() if view.due_date else None)
    values.set("po_number", view.po_reference)
    values.set("invoice_number", view.supplier_reference or view.number)
    account = main.account if main else None
    values.option("gl_account", _option_by_code(context.fields.get("gl_account"), account), account)
    values.option("cost_center", _option_by_code(context.fields.get("cost_center"), centre), centre)
    # Statuses without an option of the same name are simply not shown: not every status deserves one.
    values.option("status", _option_by_name(context.fields.get("status"), view.status), view.status, report=False)
    name = f"{view.title} {view.number} – {view.supplier_display} – {format_money(view.amount, view.currency)}"
    lines = tuple(_render_line(kind, view, line, context) for line in view.lines) if kind.has_lines else ()
    return RenderedTask(
        record_id=view.record_id, external_id=view.external_id, version=view.last_modified.isoformat(),
        number=view.number, supplier_number=view.supplier_number, supplier_name=view.supplier_display,
        name=name[:NAME_LIMIT], notes=_notes(view), due_on=view.due_date.isoformat() if view.due_date else None,
        custom_fields=values.values, unresolved=tuple(values.unresolved), lines=lines,
    )  # fmt: skip


def review_flag(context: AsanaContext, option_name: str) -> tuple[str, str] | None:
    """(field gid, option gid) of the review option, when the field and an enabled option exist."""
    field = context.fields.get("review_flag")
    option = _option_by_name(field, option_name)
    return (field.gid, option.gid) if field is not None and option is not None else None
