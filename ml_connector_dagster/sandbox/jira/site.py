"""The simulated site: demo credentials, users, workflows, issue types, fields and projects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# -- demo credentials and limits ------------------------------------------------------------------

CLOUD_ID = "3f6c2a9e-8b1d-4c57-9e0a-5d7b41c8e2f3"
SITE_NAME = "nordic-manufacturing"
DEMO_CLIENT_ID = "nmf0c3a8e5d2b7419f6e1a2d9c4b8e7f3"
DEMO_APP_SECRET = "ATOA-sandbox-6f1e8b2c9d4a7e3f0b5c8d1a6e9f2b4c7d0a3e6f9b2c5d8e1f4a7b0c3d6e9f2"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"
DEMO_EMAIL = "ingrid.halvorsen@nordicmfg.example"
DEMO_API_TOKEN = "ATATT3xFfGF0-sandbox-Q2r9Lm4Vx7Tn1Kc8Hb5Zp3Wd6Ys0Jf"
DEMO_WEBHOOK_SECRET = "whsec-sandbox-3c9f1a7e5b2d8c4f6a0e9b1d7c3f5a8e"
DEMO_SCOPES = ("read:jira-work", "write:jira-work", "read:jira-user", "manage:jira-webhook", "offline_access")
DEMO_TIMEZONE = "America/Los_Angeles"  # the demo user's: JQL date literals are read in it

ACCESS_TOKEN_TTL_S = 3600
REFRESH_TOKEN_IDLE_S = 90 * 86400
AUTH_CODE_TTL_S = 600
WEBHOOK_TTL_S = 30 * 86400
WEBHOOK_LIMIT = 5
BULK_LIMIT = 50
RECONCILE_LIMIT = 50
PAGE_TOKEN_TTL_S = 7 * 86400
ADF_ERROR = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
OFF_SCREEN = "Field '{0}' cannot be set. It is not on the appropriate screen, or unknown."

WEBHOOK_EVENTS = frozenset(
    {
        "jira:issue_created",
        "jira:issue_updated",
        "jira:issue_deleted",
        "comment_created",
        "comment_updated",
        "comment_deleted",
        "issue_property_set",
        "issue_property_deleted",
    }
)


@dataclass(frozen=True)
class User:
    account_id: str
    display_name: str
    email: str
    time_zone: str


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # new | indeterminate | done
    description: str = ""


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str  # status id
    sources: frozenset[str] | None = None  # None: a global transition (from any status)
    resolves: bool = False  # sets a resolution (default Done) on the way to a done status
    reopens: bool = False  # clears the resolution


@dataclass(frozen=True)
class Workflow:
    name: str
    initial: str
    transitions: tuple[Transition, ...]


@dataclass(frozen=True)
class IssueType:
    id: str
    name: str
    description: str
    subtask: bool = False


@dataclass(frozen=True)
class CustomField:
    id: str
    name: str
    kind: str  # textfield | textarea | float
    searcher: str  # textsearcher | exacttextsearcher | exactnumber

    @property
    def number(self) -> int:
        return int(self.id.rsplit("_", 1)[1])


@dataclass(frozen=True)
class Project:
    id: str
    key: str
    name: str
    type_key: str
    issue_types: tuple[str, ...]
    custom_fields: tuple[str, ...]
    workflow: Workflow
    lead: str

CATEGORIES = {
    "new": (2, "To Do", "blue-gray"),
    "indeterminate": (4, "In Progress", "yellow"),
    "done": (3, "Done", "green"),
}

USERS = (
    User("712020:5e0d3c1a-7b2f-4c8e-9a1d-3f6b2e8c4d70", "Ingrid Halvorsen", DEMO_EMAIL, DEMO_TIMEZONE),
    User("5f8a1c2e9b3d4e0012a7c3f1", "Lars Nyström", "lars.nystrom@nordicmfg.example", "Europe/Stockholm"),
    User("60b7d2e41a9c3f0069e1b5d8", "Aino Virtanen", "aino.virtanen@nordicmfg.example", "Europe/Helsinki"),
    User("61c3e8f52b0d4a007af2c6e9", "Mikkel Sørensen", "mikkel.sorensen@nordicmfg.example", "Europe/Copenhagen"),
    User("62d4f9a63c1e5b008b03d7fa", "Kari Nordmann", "kari.nordmann@nordicmfg.example", "Europe/Oslo"),
)

DEMO_USER = USERS[0]

STATUSES = (
    Status("10000", "To Do", "new"),
    Status("10001", "In Review", "indeterminate", "Being checked by finance."),
    Status("10002", "Approved", "indeterminate", "Approved for payment or release."),
    Status("10003", "Disputed", "indeterminate", "Waiting on the supplier."),
    Status("10004", "Done", "done"),
    Status("10005", "In Progress", "indeterminate"),
    Status("10006", "Resolved", "done", "Handled; the ERP document may be released."),
)

RESOLUTIONS = {"10000": "Done", "10001": "Won't Do", "10002": "Duplicate", "10003": "Cannot Reproduce"}
PRIORITIES = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}

ISSUE_TYPES = (
    IssueType("10001", "Task", "A small, distinct piece of work."),
    IssueType("10003", "Subtask", "A small piece of work that's part of a larger task.", subtask=True),
    IssueType("10004", "Bug", "A problem or error."),
    IssueType("10005", "Invoice", "A supplier invoice that needs attention."),
)

CUSTOM_FIELDS = (
    CustomField("customfield_10040", "Visma ID", "textfield", "textsearcher"),
    CustomField("customfield_10041", "External ID", "textfield", "textsearcher"),
    CustomField("customfield_10042", "Amount", "float", "exactnumber"),
    CustomField("customfield_10043", "Currency", "textfield", "textsearcher"),
    CustomField("customfield_10044", "Supplier", "textfield", "textsearcher"),
    CustomField("customfield_10045", "PO Reference", "textfield", "exacttextsearcher"),
    CustomField("customfield_10046", "Line items", "textarea", "textsearcher"),
    CustomField("customfield_10047", "Vendor", "textfield", "textsearcher"),
)

_FINANCE_WORKFLOW = Workflow(
    "Finance approval",
    "10000",
    (
        Transition("11", "Start review", "10001", frozenset({"10000"})),
        Transition("21", "Approve", "10002", frozenset({"10001"})),
        Transition("31", "Dispute", "10003", frozenset({"10001", "10002"})),
        Transition("41", "Back to review", "10001", frozenset({"10003"})),
        Transition("51", "Done", "10004", frozenset({"10002", "10000"}), resolves=True),
        Transition("61", "Reopen", "10000", frozenset({"10004"}), reopens=True),
    ),
)

_EXCEPTION_WORKFLOW = Workflow(
    "Exception handling",
    "10000",
    (
        Transition("11", "Start progress", "10005", frozenset({"10000"})),
        Transition("21", "Resolve", "10006", frozenset({"10000", "10005"}), resolves=True),
        Transition("31", "Reopen", "10000", frozenset({"10006"}), reopens=True),
    ),
)

_TEXT_FIELDS = ("customfield_10042", "customfield_10043", "customfield_10044")

PROJECTS = (
    Project("10000", "FIN", "Finance AP", "business", ("10001", "10005", "10003"),
            ("customfield_10040", *_TEXT_FIELDS, "customfield_10045", "customfield_10046"),
            _FINANCE_WORKFLOW, USERS[1].account_id),
    Project("10001", "PROC", "Procurement", "business", ("10001", "10003", "10004"),
            ("customfield_10040", *_TEXT_FIELDS, "customfield_10045"), _FINANCE_WORKFLOW, USERS[2].account_id),
    Project("10002", "ACU", "Acumatica exceptions", "software", ("10001", "10004", "10003"),
            ("customfield_10041", "customfield_10042", "customfield_10043", "customfield_10047"),
            _EXCEPTION_WORKFLOW, USERS[3].account_id),
)

# System fields: id -> (name, schema, JQL clause names).
# System fields: id -> (name, schema, JQL clause names).
SYSTEM_FIELDS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "summary": ("Summary", {"type": "string", "system": "summary"}, ("summary",)),
    "description": ("Description", {"type": "string", "system": "description"}, ("description",)),
    "issuetype": ("Issue Type", {"type": "issuetype", "system": "issuetype"}, ("issuetype", "type")),
    "project": ("Project", {"type": "project", "system": "project"}, ("project",)),
    "status": ("Status", {"type": "status", "system": "status"}, ("status",)),
    "resolution": ("Resolution", {"type": "resolution", "system": "resolution"}, ("resolution",)),
    "resolutiondate": ("Resolved", {"type": "datetime", "system": "resolutiondate"}, ("resolutiondate", "resolved")),
    "priority": ("Priority", {"type": "priority", "system": "priority"}, ("priority",)),
    "assignee": ("Assignee", {"type": "user", "system": "assignee"}, ("assignee",)),
    "reporter": ("Reporter", {"type": "user", "system": "reporter"}, ("reporter",)),
    "creator": ("Creator", {"type": "user", "system": "creator"}, ("creator",)),
    "labels": ("Labels", {"type": "array", "items": "string", "system": "labels"}, ("labels",)),
    "duedate": ("Due date", {"type": "date", "system": "duedate"}, ("due", "duedate")),
    "created": ("Created", {"type": "datetime", "system": "created"}, ("created", "createdDate")),
    "updated": ("Updated", {"type": "datetime", "system": "updated"}, ("updated", "updatedDate")),
    "statuscategorychangedate": ("Status Category Changed", {"type": "datetime", "system": "statuscategorychangedate"},
                                 ("statusCategoryChangedDate",)),
    "parent": ("Parent", {"type": "issuelink", "system": "parent"}, ("parent",)),
    "comment": ("Comment", {"type": "comments-page", "system": "comment"}, ("comment",)),
}

READ_ONLY_FIELDS = frozenset({"status", "resolution", "resolutiondate", "created", "updated", "creator", "comment",
                        "statuscategorychangedate"})


def jira_time(ts: float, tz: str = "UTC") -> str:
    """Jira's timestamp format: milliseconds and a ``+hhmm`` offset, in the reader's zone."""
    moment = datetime.fromtimestamp(ts, tz=ZoneInfo(tz))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}" + moment.strftime("%z")


def epoch_ms(ts: float) -> int:
    return int(ts * 1000)
