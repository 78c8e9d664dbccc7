"""What the simulated Asana organisation stores, and the demo tenant it starts with.

Records are plain dataclasses (picklable, so the tenant persists); :mod:`.render` turns them into
the API's JSON. Gids are decimal strings from one increasing counter, as Asana's are, so creation
order and gid order agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..demo_data import COMPANY_NAME, COST_CENTRES, CURRENCIES, GL_BY_NUMBER

GID_BASE = 1_209_100_000_000_000
DEMO_CLIENT_ID = "1209100000009001"
DEMO_CLIENT_SECRET = "sandbox-asana-client-secret-not-for-production"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"  # where `ml-connector auth` sends the browser
DEMO_APP_GID = "1209100000009000"
EMAIL_DOMAIN = "fjordlys.no"
# Enum option colours Asana hands out in turn to options created without one.
OPTION_COLOURS = ("green", "yellow-orange", "blue-green", "aqua", "blue", "indigo", "purple", "magenta",
                  "hot-pink", "pink", "red", "orange", "yellow", "yellow-green", "cool-gray")


@dataclass
class User:
    gid: str
    name: str
    email: str


@dataclass
class EnumOption:
    gid: str
    name: str
    color: str
    enabled: bool = True


@dataclass
class CustomField:
    gid: str
    name: str
    subtype: str  # text | number | enum | date
    description: str = ""
    precision: int = 0
    options: list[EnumOption] = field(default_factory=list)
    created_by: str | None = None


@dataclass
class Project:
    gid: str
    name: str
    team: str
    owner: str
    created_at: float
    modified_at: float
    notes: str = ""
    color: str = "light-green"
    archived: bool = False
    field_gids: list[str] = field(default_factory=list)  # its custom field settings, in order
    task_gids: list[str] = field(default_factory=list)  # its tasks, in project order
    template_gid: str | None = None
    start_on: str | None = None
    due_on: str | None = None


@dataclass
class TemplateTask:
    name: str
    notes: str
    start_offset_days: int


@dataclass
class ProjectTemplate:
    gid: str
    name: str
    team: str
    owner: str
    description: str
    color: str
    field_gids: list[str]
    tasks: list[TemplateTask]
    # Date variables the template asks for at instantiation (gid "1" is the project start date).
    requested_dates: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Task:
    gid: str
    name: str
    created_at: float
    modified_at: float
    created_by: str
    notes: str = ""
    completed: bool = False
    completed_at: float | None = None
    assignee: str | None = None
    due_on: str | None = None
    due_at: str | None = None
    start_on: str | None = None
    parent: str | None = None
    project_gids: list[str] = field(default_factory=list)
    follower_gids: list[str] = field(default_factory=list)
    subtask_gids: list[str] = field(default_factory=list)
    # custom field gid -> value as stored: enum option gid, float, str (text), "YYYY-MM-DD" (date)
    custom: dict[str, Any] = field(default_factory=dict)
    resource_subtype: str = "default_task"
    # The search index: (visible from, snapshot) per write, oldest first.
    versions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        """What search sees of the task."""
        return {
            "name": self.name, "notes": self.notes, "completed": self.completed, "projects": list(self.project_gids),
            "parent": self.parent, "custom": dict(self.custom), "created_at": self.created_at,
            "modified_at": self.modified_at, "assignee": self.assignee,
        }


@dataclass
class Job:
    gid: str
    subtype: str
    status: str
    done_at: float
    new_project: str | None = None


@dataclass
class Webhook:
    gid: str
    resource_gid: str
    resource_type: str
    target: str
    secret: str = field(repr=False)
    created_at: float
    filters: list[dict[str, Any]] = field(default_factory=list)
    token_subject: str = ""
    active: bool = True
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_failure_content: str = ""
    delivery_retry_count: int = 0


@dataclass
class Tenant:
    """Every record of the organisation (the persisted part of the simulator)."""

    workspace_gid: str
    workspace_name: str
    team_gid: str
    team_name: str
    me: str  # the user the demo PAT and OAuth grant act as
    next_gid: int
    users: dict[str, User] = field(default_factory=dict)
    fields: dict[str, CustomField] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    templates: dict[str, ProjectTemplate] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    auth_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    option_gids: dict[str, str] = field(default_factory=dict)  # enum option gid -> custom field gid

    def mint(self) -> str:
        """A new gid, greater than every earlier one."""
        self.next_gid += 1
        return str(self.next_gid)

    def user_ref(self, ref: Any) -> User | None:
        """A user by gid, email or ``me``."""
        if not isinstance(ref, str):
            return None
        if ref == "me":
            return self.users[self.me]
        return self.users.get(ref) or next((u for u in self.users.values() if u.email.lower() == ref.lower()), None)

    def option(self, option_gid: str) -> tuple[CustomField, EnumOption] | None:
        field_gid = self.option_gids.get(option_gid)
        if field_gid is None:
            return None
        custom_field = self.fields[field_gid]
        return custom_field, next(o for o in custom_field.options if o.gid == option_gid)

    def add_option(self, custom_field: CustomField, name: str, color: str | None = None, *,
                   enabled: bool = True, position: int | None = None) -> EnumOption:
        colour = color or OPTION_COLOURS[len(custom_field.options) % len(OPTION_COLOURS)]
        option = EnumOption(self.mint(), name, colour, enabled)
        custom_field.options.insert(len(custom_field.options) if position is None else position, option)
        self.option_gids[option.gid] = custom_field.gid
        return option


# -- the demo organisation ----------------------------------------------------------------------

DEMO_USERS = (
    ("Ingrid Berg", "Controller"),
    ("Lars Hansen", "Innkjøpssjef"),
    ("Sigrid Solberg", "Leverandørreskontro"),
    ("Magnus Dahl", "Prosjektleder Nordlys"),
    ("Astrid Lie", "Prosjektleder Fjordbro"),
    ("Erik Andersson", "Inköpare"),
)
_ENUMS: dict[str, tuple[str, ...]] = {
    "Currency": CURRENCIES,
    "GL account": tuple(f"{n} {GL_BY_NUMBER[n].description}" for n in ("4000", "4300", "6100", "6300", "6790", "6800")),
    "Cost center": tuple(f"{code} {name}" for code, name in COST_CENTRES[:4]),
    "Review flag": ("Needs review", "Approved", "Disputed"),
    "Visma status": ("Open", "Balanced", "On hold", "Closed"),
}
DEMO_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("Vendor", "text", "Supplier name as in Visma.net"),
    ("Amount", "number", "Document total in its currency"),
    ("Currency", "enum", "ISO 4217 currency of Amount"),
    ("Due date", "date", "Payment due date"),
    ("PO number", "text", "Visma purchase order number"),
    ("Invoice number", "text", "Supplier's invoice number"),
    ("Visma ID", "text", "Visma document id: the key the connector deduplicates on"),
    ("GL account", "enum", "Expense account (Visma chart of accounts)"),
    ("Cost center", "enum", "Visma cost centre dimension"),
    ("Review flag", "enum", "Set by the project manager"),
    ("Visma status", "enum", "Document status in Visma.net"),
)
_PO_FIELDS = ("Vendor", "Amount", "Currency", "Due date", "PO number", "Visma ID", "GL account", "Cost center",
              "Visma status", "Review flag")
_INVOICE_FIELDS = ("Vendor", "Amount", "Currency", "Due date", "Invoice number", "PO number", "Visma ID",
                   "GL account", "Cost center", "Visma status", "Review flag")
_MANUAL_TASKS = {
    "Purchase orders": ("Agree frame prices with Nordic Steel for 2027", "Review open POs older than 60 days"),
    "Supplier invoices": ("Monthly supplier statement reconciliation",),
}
_TEMPLATE_TASKS = (
    TemplateTask("Confirm order with supplier", "Send the PO and get an order confirmation.", 0),
    TemplateTask("Goods received", "Register the goods receipt in Visma.", 14),
    TemplateTask("Match supplier invoice", "Three-way match: PO, receipt, invoice.", 21),
    TemplateTask("Approve payment", "Approve in Visma; the payment run picks it up.", 28),
)


def email_of(name: str) -> str:
    """``Ingrid Berg`` -> ``ingrid.berg@fjordlys.no`` (Nordic letters folded)."""
    folded = name.lower().translate(str.maketrans({"ø": "o", "å": "a", "æ": "ae", "ö": "o", "ä": "a"}))
    return f"{folded.replace(' ', '.')}@{EMAIL_DOMAIN}"


def demo_tenant(start: datetime | None = None) -> Tenant:
    """The organisation a fresh simulator serves: one workspace, one team, six users, two projects."""
    now = (start or datetime.now(UTC)).timestamp()
    tenant = Tenant(str(GID_BASE + 1), COMPANY_NAME, str(GID_BASE + 2), "Finance & Procurement", "", GID_BASE + 10)
    for name, _title in DEMO_USERS:
        user = User(tenant.mint(), name, email_of(name))
        tenant.users[user.gid] = user
    tenant.me = next(iter(tenant.users))
    by_name: dict[str, CustomField] = {}
    for name, subtype, description in DEMO_FIELDS:
        custom_field = CustomField(tenant.mint(), name, subtype, description, precision=2 if subtype == "number" else 0,
                                   created_by=tenant.me)
        for option in _ENUMS.get(name, ()):
            tenant.add_option(custom_field, option)
        tenant.fields[custom_field.gid] = by_name[name] = custom_field
    created = now - 30 * 86400
    for project_name, field_names in (("Purchase orders", _PO_FIELDS), ("Supplier invoices", _INVOICE_FIELDS)):
        project = Project(tenant.mint(), project_name, tenant.team_gid, tenant.me, created, created,
                          notes=f"{project_name} from Visma.net, kept in sync by ml-connector.",
                          field_gids=[by_name[n].gid for n in field_names])
        tenant.projects[project.gid] = project
        for offset, task_name in enumerate(_MANUAL_TASKS[project_name]):
            at = created + (offset + 1) * 86400
            owner = list(tenant.users)[1 + offset]
            task = Task(tenant.mint(), task_name, at, at, owner, notes="Created by hand.", assignee=owner,
                        project_gids=[project.gid], follower_gids=[owner])
            task.versions = [(at, task.snapshot())]
            tenant.tasks[task.gid] = task
            project.task_gids.append(task.gid)
    template = ProjectTemplate(
        tenant.mint(), "PO project template", tenant.team_gid, tenant.me,
        "One project per large purchase order: confirmation, receipt, invoice match, payment.", "light-blue",
        [by_name[n].gid for n in _PO_FIELDS], list(_TEMPLATE_TASKS),
        [("1", "Start Date", "Choose a start date for your project.")],
    )
    tenant.templates[template.gid] = template
    return tenant


def add_synced_history(tenant: Tenant, project_name: str, count: int, field_name: str = "Visma ID") -> None:
    """``count`` tasks an earlier sync left in the project, months old, each carrying its own Visma ID
    (``supplierInvoice/H000001``...): a workspace in use for a while, for benchmarks of large projects."""
    project = next(p for p in tenant.projects.values() if p.name == project_name)
    visma_id = next(f.gid for f in tenant.fields.values() if f.name == field_name)
    at = project.created_at
    for n in range(1, count + 1):
        task = Task(tenant.mint(), f"Supplier invoice H{n:06d}", at, at, tenant.me, project_gids=[project.gid],
                    custom={visma_id: f"supplierInvoice/H{n:06d}"})
        task.versions = [(at, task.snapshot())]
        tenant.tasks[task.gid] = task
        project.task_gids.append(task.gid)


def demo_pat(seed: int = 0) -> str:
    """The personal access token of the demo user (Asana's ``2/<user>/<app>:<secret>`` shape)."""
    secret = hashlib.sha256(f"asana-pat:{seed}".encode()).hexdigest()[:32]
    return f"2/{GID_BASE + 11}/{DEMO_APP_GID}:{secret}"


def demo_refresh_token(seed: int = 0, client_secret: str = DEMO_CLIENT_SECRET) -> str:
    """The pre-consented OAuth refresh token of a fresh simulator (Asana's never rotate)."""
    return f"2/{GID_BASE + 11}/{DEMO_APP_GID}:" + hashlib.sha256(f"{seed}:{client_secret}".encode()).hexdigest()[:40]


def iso(moment: float) -> str:
    """Asana's timestamp: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day_after(day: str, days: int) -> str:
    """The ISO day ``days`` after ``day``."""
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()
