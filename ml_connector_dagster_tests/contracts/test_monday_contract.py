"""Contract: every GraphQL document the monday client sends is valid against monday's published SDL.

A realistic workload runs against the simulator; each ``/v2`` request it recorded is then parsed and
validated with graphql-core against ``specs/monday-2026-10.graphql`` (the spec file itself, not the
copy the code ships), and its variables are coerced against the operation's declarations. The
headers are checked too: the raw token (masked as a whole, so no ``Bearer``) and ``API-Version``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate
from graphql.execution.values import get_variable_values

from ml_connector_dagster.sandbox.monday import GL_BOARD, INVOICE_BOARD, MondaySimulator
from ml_connector_dagster.systems.monday.columns import encode_column_values
from ml_connector_dagster.systems.monday.models import ItemDraft, ItemUpdate
from ml_connector_dagster.systems.monday.sdl import sdl_path
from ml_connector_dagster_tests.monday_sandbox import VerifyingReceiver, graphql_body, monday_client, raw_api

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "monday-2026-10.graphql"
HOOK_URL = "https://connector.example/webhooks/monday"


@lru_cache(maxsize=1)
def monday_spec() -> GraphQLSchema:
    return build_schema(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def recorded() -> Iterator[list[dict[str, Any]]]:
    """Every ``/v2`` request of a realistic workload, as ``/_sandbox/requests`` shows it."""
    holder: dict[str, MondaySimulator] = {}
    receiver = VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", lambda: holder["sim"].now())
    sim = holder["sim"] = MondaySimulator(webhook_transport=receiver.transport, time_scale=0.001)
    sim.add_items(GL_BOARD, 620)
    try:
        with monday_client(sim, max_batch=3) as client:
            client.version()
            client.me()
            board = client.board(str(INVOICE_BOARD))
            client.boards()
            types = board.column_types()
            drafts = [ItemDraft(name=f"Invoice {n}", group_id="topics", column_values=encode_column_values(types, {
                "text": f"INV-{n}", "text7": f"V-{n}", "numbers": Decimal("1200.50"), "status": "Received",
                "person": [58211411], "link": "https://files.example/inv.pdf", "dropdown": ["NOK"],
            })) for n in range(5)] + [ItemDraft(name="Refused", column_values={"status": {"label": "Booked"}})]  # fmt: skip
            created = client.create_items(board.id, drafts)
            client.update_items(board.id, [ItemUpdate(item_id=created.items[0].id, column_values={"status": {"label": "Paid"}})])
            client.find_items_by_column_values(board.id, "text7", [f"V-{n}" for n in range(150)])
            list(client.iter_items(str(GL_BOARD), page_size=300))
            list(client.iter_items(board.id, query_params={"rules": [{"column_id": "status", "compare_value": ["Received"],
                                                                       "operator": "any_of"}]}))  # fmt: skip
            client.items([item.id for item in created.items])
            hook = client.create_webhook(board.id, HOOK_URL, "change_status_column_value", {"columnId": "status"})
            client.webhooks(board.id)
            client.delete_webhook(hook.id)
        with raw_api(sim) as api:
            records = api.get("/_sandbox/requests").json()
    finally:
        sim.close()
    yield [record for record in records if record["path"] == "/v2"]


def test_the_workload_exercised_every_kind_of_document(recorded: list[dict[str, Any]]) -> None:
    names = {parse(graphql_body(r)[0]).definitions[0].name.value for r in recorded}
    assert names == {
        "Version", "Me", "Boards", "CreateItems", "UpdateItems", "ItemsByColumnValues", "ItemsPage",
        "NextItemsPage", "Items", "CreateWebhook", "Webhooks", "DeleteWebhook",
    }


def test_every_document_the_client_sent_validates_against_the_sdl(recorded: list[dict[str, Any]]) -> None:
    problems = {}
    for record in recorded:
        query, _ = graphql_body(record)
        errors = validate(monday_spec(), parse(query))
        if errors:
            problems[query[:60]] = [e.message for e in errors]
    assert problems == {}


def test_every_variable_the_client_sent_fits_its_declaration(recorded: list[dict[str, Any]]) -> None:
    problems = []
    for record in recorded:
        query, variables = graphql_body(record)
        operation = next(d for d in parse(query).definitions if isinstance(d, OperationDefinitionNode))
        coerced = get_variable_values(monday_spec(), operation.variable_definitions, variables)
        if isinstance(coerced, list):
            problems += [e.message for e in coerced]
    assert problems == []


def test_column_values_travel_as_json_encoded_objects(recorded: list[dict[str, Any]]) -> None:
    sent = [value for record in recorded for name, value in graphql_body(record)[1].items()
            if name.startswith("v") and name[1:].isdigit() and value is not None]  # fmt: skip
    assert sent and all(isinstance(value, str) and isinstance(json.loads(value), dict) for value in sent)


def test_every_request_carries_the_raw_token_and_the_pinned_version(recorded: list[dict[str, Any]]) -> None:
    assert {(r["headers"]["authorization"], r["headers"]["api-version"]) for r in recorded} == {("***", "2026-10")}
    assert {r["method"] for r in recorded} == {"POST"}


def test_the_sdl_the_code_ships_is_the_spec() -> None:
    assert sdl_path("2026-10").read_bytes() == SPEC_PATH.read_bytes()
