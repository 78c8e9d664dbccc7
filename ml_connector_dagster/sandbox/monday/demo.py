"""The demo account: Fjordlys Industri AS's "Finance operations" workspace, configured by its users.

Monday has no finance objects: every board below is what a customer would have built by hand, with
their own column titles. "Procurement — supplier invoices" has the legacy column ids of an old
board (``text``, ``text0``, ``numbers``, ``date4``...); "Purchase orders" and "Customer invoices / AR"
have the auto-generated ids of newer boards (``text_mkq1…``), so a mapping must go by title or by
position, never by id. "GL accounts" and "Dimensions" are empty reference boards. A few items
were entered by hand before any integration, two of them carrying a Visma id.
"""

from __future__ import annotations

import string
from datetime import date, datetime, timedelta
from typing import Any

import jwt

from ..demo_data import COMPANY_NAME, COUNTRIES, CURRENCIES, Dice, company_name
from .tenant import Board, Column, Group, Item, Tenant, User, Workspace
from .values import STATUS_COLORS, changed_at_stamp

__all__ = [
    "ACCOUNT_ID",
    "AR_BOARD",
    "DEMO_USER_ID",
    "DIMENSIONS_BOARD",
    "GL_BOARD",
    "INVOICE_BOARD",
    "PO_BOARD",
    "WORKSPACE_ID",
    "build_tenant",
    "demo_api_token",
]

ACCOUNT_ID = 19_876_543
ACCOUNT_SLUG = "fjordlys"
WORKSPACE_ID = 4_120_001
DEMO_USER_ID = 58_211_407
INVOICE_BOARD = 1_880_001_001
PO_BOARD = 1_880_001_002
AR_BOARD = 1_880_001_003
GL_BOARD = 1_880_001_004
DIMENSIONS_BOARD = 1_880_001_005
FIRST_ITEM_ID = 1_880_100_001
FIRST_WEBHOOK_ID = 73_759_001
FIRST_BOARD_ID = 1_880_001_100

USERS = (
    (DEMO_USER_ID, "Ingrid Solberg", "ingrid.solberg@fjordlys.no", "Finance systems lead", True),
    (58_211_411, "Lars Haugen", "lars.haugen@fjordlys.no", "Warehouse lead", False),
    (58_211_419, "Nora Berg", "nora.berg@fjordlys.no", "Accounts payable", False),
    (58_211_423, "Eirik Dahl", "eirik.dahl@fjordlys.no", "Controller", False),
)


def demo_api_token(seed: int) -> str:
    """The demo user's personal API token: a JWT, as monday's personal tokens are (deterministic)."""
    claims = {"tid": 400_000_000 + seed, "aai": 11, "uid": DEMO_USER_ID, "iad": "2026-01-05T08:00:00.000Z",
              "per": "me:write", "actid": ACCOUNT_ID, "rgn": "euc1"}  # fmt: skip
    return jwt.encode(claims, f"sandbox-monday-personal-token-signing-key-{seed:08d}", algorithm="HS256")


def _status(labels: dict[int, str], done: tuple[int, ...] = ()) -> dict[str, Any]:
    return {
        "labels": {str(i): label for i, label in labels.items()},
        "labels_colors": {str(i): {"color": STATUS_COLORS[i % 8], "border": STATUS_COLORS[i % 8]} for i in labels},
        "done_colors": list(done),
    }


def _dropdown(labels: tuple[str, ...]) -> dict[str, Any]:
    return {"labels": [{"id": i, "name": label} for i, label in enumerate(labels, start=1)]}


def _generated_id(dice: Dice, prefix: str) -> str:
    # monday's newer boards name columns <type>_<8 random lowercase letters/digits>, e.g. text_mkq1x2ab
    tail = "".join(dice.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    return f"{prefix}_mkq1{tail}"


def _columns(dice: Dice | None, rows: list[tuple[str, str, str, dict[str, Any]]]) -> list[Column]:
    """``(legacy id or generated prefix, title, type, settings)`` -> columns, the name column first."""
    columns = [Column("name", "Name", "name")]
    for ident, title, kind, settings in rows:
        column_id = ident
        while dice is not None and column_id in {ident, *(c.id for c in columns)}:
            column_id = _generated_id(dice, ident)
        columns.append(Column(column_id, title, kind, settings))
    return columns


def _boards(seed: int, created: float) -> list[Board]:
    dice = Dice(seed, "monday-columns")
    currencies = _dropdown(CURRENCIES)
    invoice = Board(
        INVOICE_BOARD, "Procurement — supplier invoices", WORKSPACE_ID, DEMO_USER_ID,
        _columns(None, [
            ("text", "Invoice #", "text", {}),
            ("text0", "Supplier", "text", {}),
            ("numbers", "Total", "numbers", {"unit": {"symbol": "", "direction": "left"}}),
            ("dropdown", "Currency", "dropdown", currencies),
            ("date4", "Due date", "date", {}),
            ("status", "Status", "status", _status({0: "Received", 1: "Approved", 2: "Paid"}, done=(2,))),
            ("text7", "Visma ID", "text", {}),
            ("text8", "PO", "text", {}),
            ("person", "Owner", "people", {}),
            ("link", "Invoice PDF", "link", {}),
        ]),
        [Group("topics", "Incoming invoices", "#579bfc", "65536"),
         Group("new_group29179", "Approved", "#00c875", "98304"),
         Group("new_group58312", "Paid", "#a25ddc", "131072")],
        description="Supplier invoices to receive, approve and pay.", created_at=created, updated_at=created,
    )  # fmt: skip
    orders = Board(
        PO_BOARD, "Purchase orders", WORKSPACE_ID, DEMO_USER_ID,
        _columns(dice, [
            ("text", "Supplier", "text", {}),
            ("numeric", "Amount", "numbers", {}),
            ("dropdown", "Currency", "dropdown", currencies),
            ("date", "Order date", "date", {}),
            ("date", "Promised date", "date", {}),
            ("color", "Status", "status", _status({0: "Open", 1: "Received", 2: "Closed"}, done=(2,))),
            ("text", "Visma ID", "text", {}),
            ("multiple_person", "Buyer", "people", {}),
        ]),
        [Group("topics", "Open orders", "#fdab3d", "65536"),
         Group(_generated_id(dice, "group"), "Received", "#00c875", "98304")],
        created_at=created, updated_at=created,
    )  # fmt: skip
    receivables = Board(
        AR_BOARD, "Customer invoices / AR", WORKSPACE_ID, DEMO_USER_ID,
        _columns(dice, [
            ("text", "Invoice #", "text", {}),
            ("text", "Customer", "text", {}),
            ("numeric", "Amount", "numbers", {}),
            ("dropdown", "Currency", "dropdown", currencies),
            ("date", "Due date", "date", {}),
            ("color", "Status", "status", _status({0: "Open", 1: "Overdue", 2: "Paid", 3: "Partially paid"}, done=(2,))),
            ("dropdown", "Aging", "dropdown", _dropdown(("0-30", "31-60", "61-90", "90+"))),
            ("text", "Visma ID", "text", {}),
            ("multiple_person", "Collector", "people", {}),
        ]),
        [Group("topics", "Open receivables", "#579bfc", "65536"),
         Group(_generated_id(dice, "group"), "Collected", "#00c875", "98304")],
        created_at=created, updated_at=created,
    )  # fmt: skip
    accounts = Board(
        GL_BOARD, "GL accounts", WORKSPACE_ID, DEMO_USER_ID,
        _columns(dice, [
            ("text", "Account", "text", {}),
            ("text", "Description", "text", {}),
            ("dropdown", "Type", "dropdown", _dropdown(("Asset", "Liability", "Income", "Expense"))),
            ("color", "Active", "status", _status({0: "Active", 1: "Inactive"})),
            ("text", "Visma ID", "text", {}),
        ]),
        [Group("topics", "Chart of accounts", "#784bd1", "65536")],
        description="Reference: the Visma chart of accounts.", created_at=created, updated_at=created,
    )  # fmt: skip
    dimensions = Board(
        DIMENSIONS_BOARD, "Dimensions", WORKSPACE_ID, DEMO_USER_ID,
        _columns(dice, [
            ("dropdown", "Dimension", "dropdown", _dropdown(("DEPARTMENT", "COSTCENTRE", "PROJECT"))),
            ("text", "Code", "text", {}),
            ("text", "Description", "text", {}),
            ("text", "Visma ID", "text", {}),
        ]),
        [Group("topics", "Segment values", "#784bd1", "65536")],
        description="Reference: Visma dimensions and their segment values.", created_at=created, updated_at=created,
    )  # fmt: skip
    return [invoice, orders, receivables, accounts, dimensions]


def _hand_entered_invoices(seed: int, board: Board, created: float, today: date) -> list[Item]:
    """Invoices the AP team typed in before the integration (two already carry a Visma id)."""
    dice = Dice(seed, "monday-items")
    ids = {column.title: column.id for column in board.columns}
    status = {label: index for index, label in next(c for c in board.columns if c.id == "status").status_labels().items()}
    items = []
    for n in range(4):
        supplier = company_name(dice, COUNTRIES[dice.choice(("NO", "NO", "SE", "DK"))])
        number = f"{dice.between(10_000, 99_999)}"
        stamp = changed_at_stamp(created)
        values: dict[str, Any] = {
            ids["Invoice #"]: number,
            ids["Supplier"]: supplier,
            ids["Total"]: f"{dice.between(1_000, 90_000)}.{dice.between(0, 99):02d}",
            ids["Currency"]: {"ids": [1], "changed_at": stamp},
            ids["Due date"]: {"date": (today + timedelta(days=dice.between(5, 40))).isoformat(), "time": None,
                              "changed_at": stamp},
            ids["Status"]: {"index": status["Received" if n % 2 else "Approved"], "post_id": None, "changed_at": stamp},
            ids["Visma ID"]: f"{600_000 + n}" if n < 2 else None,
            ids["Owner"]: {"personsAndTeams": [{"id": USERS[2][0], "kind": "person"}], "changed_at": stamp},
        }  # fmt: skip
        items.append(Item(FIRST_ITEM_ID + n, board.id, "topics", f"Invoice {number} — {supplier}", USERS[2][0],
                          created, created, values))  # fmt: skip
    return items


def build_tenant(seed: int, now: datetime) -> Tenant:
    """The demo account as it stands at ``now`` (deterministic in ``seed``)."""
    created = (now - timedelta(days=120)).timestamp()
    users = {uid: User(uid, name, email, title, admin, created) for uid, name, email, title, admin in USERS}
    workspace = Workspace(WORKSPACE_ID, "Finance operations", "Where finance and operations meet", "open", created)
    boards = {board.id: board for board in _boards(seed, created)}
    items = {item.id: item for item in _hand_entered_invoices(seed, boards[INVOICE_BOARD], created, now.date())}
    return Tenant(
        account_id=ACCOUNT_ID,
        account_name=COMPANY_NAME,
        account_slug=ACCOUNT_SLUG,
        users=users,
        workspaces={workspace.id: workspace},
        boards=boards,
        items=items,
        next_ids={"items": FIRST_ITEM_ID + len(items), "webhooks": FIRST_WEBHOOK_ID, "boards": FIRST_BOARD_ID},
    )
