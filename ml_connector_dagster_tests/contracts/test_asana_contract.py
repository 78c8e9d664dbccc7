"""Contract: every request the Asana client sends is valid against Asana's published OpenAPI spec.

A realistic workload (PAT and OAuth, listings, batch creates and updates, subtasks, enum options,
a template instantiation, webhooks through the receiver) runs against the simulator; its
``/_sandbox/requests`` recording is validated with openapi-core against
``specs/asana.openapi.yaml`` (loaded once per session). Each action inside a ``POST /batch`` is
validated too, as the request it stands for. The OAuth token endpoint is not in the spec's paths
and is checked by shape.

Two schemas contradict their own descriptions and examples, and are corrected here (nothing else
is loosened): the values of a task's ``custom_fields`` object are typed as strings, while the
description (and Asana's custom-field guide) says a number field takes a number, so they become
string-or-number; a template's requested date is ``format: date-time`` while the description says
"a date with YYYY-MM-DD format" and the example is ``'2022-01-01'``, so it becomes ``format: date``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.testing import MockRequest

from ml_connector_dagster.core import http
from ml_connector_dagster.sandbox.asana import AsanaSimulator
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.asana.client import AsanaClient, PremiumRequired
from ml_connector_dagster.systems.asana.models import custom_field_values
from ml_connector_dagster_tests.asana_sandbox import (
    IN_PROCESS_URL,
    RECEIVER_URL,
    pat_client,
    receiver,
    unlimited,
)

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "asana.openapi.yaml"
SPEC_HOST = "https://app.asana.com"  # the spec's server is https://app.asana.com/api/1.0
API = "/api/1.0"


@cache
def spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as file:
        document = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    patched = copy.deepcopy(document)
    custom_fields = patched["components"]["schemas"]["TaskRequestBase"]["allOf"][1]["properties"]["custom_fields"]
    custom_fields["additionalProperties"] = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    patched["components"]["schemas"]["DateVariableRequest"]["properties"]["value"]["format"] = "date"
    return patched


@cache
def openapi() -> OpenAPI:
    # Validating the vendor's 3 MB document itself costs seconds and is not what this test is about.
    return OpenAPI.from_dict(spec(), config=Config(spec_validator_cls=None))


def workload(sim: AsanaSimulator, transport: httpx.BaseTransport, hooks: Any) -> None:
    """A day of the visma_asana flow, plus its housekeeping."""
    with pat_client(sim, transport) as client:
        client.me()
        workspace = client.workspaces()[0].gid
        client.users(workspace)
        project = client.project_named(workspace, "Purchase orders")
        fields = client.custom_fields_by_name(workspace, ["Visma ID", "Amount", "Currency", "Due date", "Cost center"])
        option = client.ensure_enum_option(fields["Cost center"].gid, "210 Prosjekt Nordlys")
        client.rename_enum_option(option.gid, "210 Nordlys")
        client.disable_enum_option(option.gid)
        fields["Currency"] = client.custom_field(fields["Currency"].gid)
        drafts = {
            f"PO{n:06d}": {"name": f"PO{n:06d} Nordic Steel Oy", "projects": [project.gid], "notes": "From Visma.net",
                           "due_on": "2026-12-01", "custom_fields": custom_field_values(fields, {
                               "Visma ID": f"PO{n:06d}", "Amount": 1000 + n, "Currency": "NOK",
                               "Due date": date(2026, 12, 1)})}
            for n in range(12)
        }  # fmt: skip
        created = client.ensure_tasks(project.gid, fields["Visma ID"].gid, drafts)
        parent = created["PO000000"]
        client.create_subtask(parent, {"name": "Line 1: Stålplater 3 mm", "projects": [project.gid],
                                       "custom_fields": {fields["Amount"].gid: 400.0}})
        client.update_tasks({created[k]: {"completed": True} for k in list(created)[:3]})
        client.update_task(parent, {"custom_fields": {fields["Amount"].gid: 1250.5}, "assignee": "lars.hansen@fjordlys.no"})
        client.get_task(parent)
        list(client.subtasks(parent))
        list(client.tasks_modified_since(project.gid, datetime.now(UTC) - timedelta(hours=1)))
        list(client.project_tasks(project.gid, completed_since=datetime.now(UTC) - timedelta(days=7)))
        with pytest.raises(PremiumRequired):
            client.search_tasks(workspace, text="PO000001")
        template = client.project_templates(workspace)[0]
        client.instantiate_project(template.gid, "PO 4711 Nordic Steel Oy", start_on=date(2026, 12, 1))
        webhook = client.ensure_webhook(workspace, project.gid, RECEIVER_URL, hooks.ledger, hooks.vault)
        client.ensure_webhook(workspace, project.gid, RECEIVER_URL, hooks.ledger, hooks.vault)
        client.delete_webhook(webhook, hooks.vault)
    creds = sim.credentials()
    with AsanaClient.connect_oauth(IN_PROCESS_URL, creds["client_id"], creds["client_secret"], creds["refresh_token"],
                                   transport=transport, rate_limiter=unlimited()) as oauth:
        oauth.me()
        oauth.projects(workspace)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    with receiver(tmp_path_factory.mktemp("asana-contract")) as hooks:
        sim = AsanaSimulator(seed=9, webhook_transport=hooks.transport)
        transport = InProcessTransport(sim.app)
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(http, "default_sleep", sim.clock.advance)
                workload(sim, transport, hooks)
            with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as inspector:
                yield inspector.get("/_sandbox/requests").json()
        finally:
            transport.close()
            sim.close()


def api_calls(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recorded if r["path"].startswith(API + "/")]


def as_spec_request(method: str, path: str, query: dict[str, Any], body: Any, headers: dict[str, str]) -> MockRequest:
    headers = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
    return MockRequest(SPEC_HOST, method.lower(), path, args=query, headers=headers,
                       data=None if body is None else json.dumps(body), content_type="application/json")


def batch_actions(recorded: list[dict[str, Any]]) -> list[tuple[dict[str, Any], MockRequest]]:
    """Every action of every recorded ``POST /batch``, as the request it stands for."""
    actions = []
    for call in api_calls(recorded):
        if call["path"] != f"{API}/batch":
            continue
        for action in call["body"]["data"]["actions"]:
            options = action.get("options") or {}
            query = {k: str(v) for k, v in options.items() if k in ("limit", "offset")}
            if options.get("fields"):
                query["opt_fields"] = ",".join(options["fields"])
            body = None
            if action["method"] in ("post", "put", "patch"):
                body = {"data": action.get("data") or {}}
            elif action.get("data"):
                query.update({k: str(v) for k, v in action["data"].items()})
            actions.append((action, as_spec_request(action["method"], API + action["relative_path"], query, body,
                                                    call["headers"])))
    return actions


def test_the_workload_uses_every_endpoint_the_client_offers(recorded: list[dict[str, Any]]) -> None:
    seen = {(r["method"], r["path"].split("/")[3]) for r in api_calls(recorded)}
    expected = {("POST", "batch"), ("GET", "projects"), ("GET", "tasks"), ("POST", "tasks"), ("PUT", "tasks"),
                ("GET", "custom_fields"), ("POST", "custom_fields"), ("PUT", "enum_options"), ("GET", "jobs"),
                ("POST", "project_templates"), ("GET", "webhooks"), ("POST", "webhooks"), ("DELETE", "webhooks"),
                ("GET", "workspaces"), ("GET", "users")}
    assert expected <= seen
    assert {a["method"] for a, _ in batch_actions(recorded)} == {"post", "put"}


@pytest.mark.filterwarnings("ignore:Unsupported scheme type")  # openapi-core cannot check oauth2 itself
def test_every_api_request_matches_the_spec(recorded: list[dict[str, Any]]) -> None:
    failures = []
    calls = api_calls(recorded)
    for call in calls:
        try:
            openapi().validate_request(as_spec_request(call["method"], call["path"], call["query"], call["body"],
                                                       call["headers"]))
        except Exception as error:  # noqa: BLE001 - collected, so one run shows every mismatch
            failures.append(f"{call['method']} {call['path']}?{call['query']}: {error} ({error.__cause__})")
    assert len(calls) > 30
    assert failures == []


@pytest.mark.filterwarnings("ignore:Unsupported scheme type")
def test_every_batch_action_matches_the_spec_as_the_request_it_stands_for(recorded: list[dict[str, Any]]) -> None:
    failures = []
    actions = batch_actions(recorded)
    for action, request in actions:
        try:
            openapi().validate_request(request)
        except Exception as error:  # noqa: BLE001
            failures.append(f"{action['method']} {action['relative_path']}: {error} ({error.__cause__})")
    assert len(actions) >= 15
    assert failures == []


def test_no_request_carries_a_query_parameter_the_spec_does_not_know(recorded: list[dict[str, Any]]) -> None:
    finder = APICallPathFinder(openapi().spec)
    unknown = set()
    requests = [(c["method"], c["path"], c["query"]) for c in api_calls(recorded)]
    requests += [(r.method, r.path, dict(r.args)) for _, r in batch_actions(recorded)]
    for method, path, query in requests:
        found = finder.find(method.lower(), f"{SPEC_HOST}{path}")
        declared = {p["name"] for p in [*found.path.get("parameters", []), *found.operation.get("parameters", [])]
                    if p["in"] == "query"}
        unknown |= {(found.path.parts[-1], name) for name in set(query) - declared}
    assert unknown == set()


def test_bodies_are_wrapped_in_data(recorded: list[dict[str, Any]]) -> None:
    writes = [c for c in api_calls(recorded) if c["method"] in ("POST", "PUT")]
    assert writes and all(set(c["body"]) == {"data"} for c in writes)


def test_token_requests_are_form_encoded_refresh_grants(recorded: list[dict[str, Any]]) -> None:
    tokens = [r for r in recorded if r["path"] == "/-/oauth_token"]
    assert len(tokens) == 1
    assert tokens[0]["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert tokens[0]["body"] == {"grant_type": "refresh_token", "client_id": tokens[0]["body"]["client_id"],
                                 "client_secret": "***", "refresh_token": "***"}


def test_every_api_call_carries_a_bearer_token_and_no_secret_in_its_url(recorded: list[dict[str, Any]]) -> None:
    for call in api_calls(recorded):
        assert call["headers"]["authorization"] == "Bearer ***", call["path"]
        assert not any("token" in name.lower() or "secret" in name.lower() for name in call["query"])
