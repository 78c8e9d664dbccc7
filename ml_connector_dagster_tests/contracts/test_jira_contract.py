"""Contract: every request the Jira client sends is valid against Jira's published OpenAPI spec.

A realistic workload runs against the simulator; the requests it recorded are then validated with
openapi-core against ``specs/jira-v3.swagger.json``. 3LO calls are mapped to the spec's paths by
stripping ``/ex/jira/{cloudId}``; the OAuth endpoints are not in that spec and are checked by shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from ml_connector_dagster.core import http
from ml_connector_dagster.core.http import RateLimiter
from ml_connector_dagster.core.oauth import MemoryTokenStore
from ml_connector_dagster.sandbox.jira import (
    CLOUD_ID,
    DEMO_API_TOKEN,
    DEMO_APP_SECRET,
    DEMO_CLIENT_ID,
    DEMO_EMAIL,
    JiraSimulator,
)
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jira import adf
from ml_connector_dagster.systems.jira.client import REFRESH_TOKEN_KEY, JiraClient, jql_datetime

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "jira-v3.swagger.json"
GATEWAY = "http://api.jira.test"
OAUTH_PREFIX = f"/ex/jira/{CLOUD_ID}"
API_ROOT = "/rest/api/3/"
VISMA_ID = "customfield_10040"


@lru_cache(maxsize=1)
def jira_spec() -> dict[str, Any]:
    spec = json.loads(SPEC_PATH.read_text())
    spec["servers"] = [{"url": "/"}]
    return spec


@lru_cache(maxsize=1)
def jira_openapi() -> OpenAPI:
    # The published spec breaks its own schema in places (an enum whose default is ""), so the
    # spec itself is not validated; requests are validated against it.
    return OpenAPI.from_dict(jira_spec(), config=Config(spec_validator_cls=None))


@dataclass
class RecordedApiRequest:
    """A request from ``/_sandbox/requests`` in the shape openapi-core validates."""

    method: str
    path: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str
    host_url: str = "http://localhost"
    original_path: str = field(default="", compare=False)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RecordedApiRequest:
        query = [(k, v) for k, values in record["query"].items() for v in (values if isinstance(values, list) else [values])]
        body = record["body"]
        return cls(
            method=record["method"].lower(),
            path=record["path"].removeprefix(OAUTH_PREFIX),
            parameters=RequestParameters(query=ImmutableMultiDict(query), header=Headers(record["headers"])),
            body=None if body is None else json.dumps(body).encode(),
            content_type=record["headers"].get("content-type", ""),
            original_path=record["path"],
        )

    @property
    def full_url_pattern(self) -> str:
        return f"{self.host_url}{self.path}"


def run_workload(transport: httpx.BaseTransport, sim: JiraSimulator) -> None:
    """What the visma_jira flow does in a day, plus the housekeeping around it."""
    store = MemoryTokenStore({REFRESH_TOKEN_KEY: sim.demo_refresh_token})
    with JiraClient.connect_oauth(
        GATEWAY, GATEWAY, DEMO_CLIENT_ID, DEMO_APP_SECRET, store,
        transport=transport, rate_limiter=RateLimiter(10_000, 10_000),
    ) as client:  # fmt: skip
        client.myself()
        visma_id = client.field_id("Visma ID")
        amount = client.field_id("Amount")
        updates = [
            {"fields": {
                "project": {"key": "FIN"}, "issuetype": {"name": "Task"}, "summary": f"Supplier invoice {n}",
                "description": adf.doc(adf.paragraph(f"Invoice {n} from Nordic Steel Oy")),
                visma_id: f"INV-{n:04d}", amount: 1000.0 + n, "labels": ["visma"],
            }}
            for n in range(55)
        ]  # fmt: skip
        updates[3]["fields"]["description"] = "plain text"
        result = client.bulk_create(updates)
        client.find_by_external_ids("FIN", visma_id, [f"INV-{n:04d}" for n in range(55)],
                                    reconcile_ids=[c.id for c in result.created[:50]])
        sim.reindex()
        since = sim.now().replace(microsecond=0)
        list(client.search(f"project = FIN AND updated >= {jql_datetime(since)} ORDER BY updated ASC", ["summary", "updated"]))
        key = result.created[0].key
        client.get_issue(key, ["summary", "status", visma_id])
        client.update_issue(key, {amount: 1234.5, "description": adf.doc(adf.paragraph("Amount corrected"))})
        client.transition_to_status(key, "In Review")
        client.add_comment(key, adf.doc(adf.paragraph("Payment registered in Visma")))
        client.comments(key)
        hook_id, _ = client.ensure_webhook("https://hooks.example.test/jira", ["jira:issue_updated"], "project = FIN")
        client.ensure_webhook("https://hooks.example.test/jira", ["jira:issue_updated"], "project = FIN")
        client.delete_webhooks([hook_id])
    with JiraClient.connect_api_token("http://nordic.test", DEMO_EMAIL, DEMO_API_TOKEN, transport=transport) as basic:
        basic.fields()
        list(basic.search("project = FIN AND labels = visma", ["summary"], max_results=20))


@pytest.fixture(scope="module")
def recorded() -> Iterator[list[dict[str, Any]]]:
    sim = JiraSimulator(seed=3)
    transport = InProcessTransport(sim.app)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http, "default_sleep", lambda _s: None)
        try:
            run_workload(transport, sim)
            with httpx.Client(transport=transport, base_url=GATEWAY) as inspector:
                yield inspector.get("/_sandbox/requests").json()
        finally:
            transport.close()
            sim.close()


def api_requests(recorded: list[dict[str, Any]]) -> list[RecordedApiRequest]:
    return [
        RecordedApiRequest.from_record(r) for r in recorded
        if r["path"].removeprefix(OAUTH_PREFIX).startswith(API_ROOT)
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Unsupported scheme type")  # openapi-core cannot check oauth2; see below
def test_every_api_request_matches_the_jira_spec(recorded: list[dict[str, Any]]) -> None:
    requests = api_requests(recorded)
    problems = []
    for request in requests:
        try:
            jira_openapi().validate_request(request)
        except Exception as exc:  # noqa: BLE001 - collect every violation, not just the first
            detail = getattr(exc, "__cause__", None) or exc
            problems.append(f"{request.method.upper()} {request.original_path}: {exc} ({detail})")

    assert len(requests) > 20
    assert problems == []


def test_the_workload_covers_every_endpoint_the_client_uses(recorded: list[dict[str, Any]]) -> None:
    seen = {(r.method.upper(), r.path) for r in api_requests(recorded)}

    for expected in [("POST", "/rest/api/3/issue/bulk"), ("POST", "/rest/api/3/search/jql"), ("GET", "/rest/api/3/field"),
                     ("PUT", "/rest/api/3/webhook/refresh"), ("DELETE", "/rest/api/3/webhook"),
                     ("POST", "/rest/api/3/webhook"), ("GET", "/rest/api/3/webhook"), ("GET", "/rest/api/3/myself")]:
        assert expected in seen


def test_no_request_uses_a_deprecated_operation(recorded: list[dict[str, Any]]) -> None:
    deprecated = {
        (method.upper(), path)
        for path, operations in jira_spec()["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and operation.get("deprecated")
    }
    used = {(r.method.upper(), r.path) for r in api_requests(recorded)}

    assert ("POST", "/rest/api/3/search") in deprecated
    assert used & deprecated == set()


def test_3lo_calls_carry_a_bearer_token_and_site_calls_basic_auth(recorded: list[dict[str, Any]]) -> None:
    for record in recorded:
        if record["path"].startswith(f"{OAUTH_PREFIX}{API_ROOT}"):
            assert record["headers"]["authorization"] == "Bearer ***", record["path"]
        elif record["path"].startswith(API_ROOT):
            assert record["headers"]["authorization"] == "Basic ***", record["path"]


def test_oauth_requests_have_atlassians_shape(recorded: list[dict[str, Any]]) -> None:
    oauth = [r for r in recorded if r["path"].startswith("/oauth/")]
    refreshes = [r for r in oauth if r["path"] == "/oauth/token"]
    lookups = [r for r in oauth if r["path"] == "/oauth/token/accessible-resources"]

    assert len(refreshes) == 1 and len(lookups) == 1
    (refresh,) = refreshes
    assert refresh["method"] == "POST"
    assert refresh["headers"]["content-type"] == "application/json"
    assert refresh["body"] == {"grant_type": "refresh_token", "client_id": DEMO_CLIENT_ID,
                               "client_secret": "***", "refresh_token": "***"}
    (lookup,) = lookups
    assert lookup["method"] == "GET" and lookup["headers"]["authorization"] == "Bearer ***"
    assert lookup["query"] == {}


def test_no_secret_reaches_a_url(recorded: list[dict[str, Any]]) -> None:
    for record in recorded:
        text = f"{record['path']}?{json.dumps(record['query'])}"
        assert DEMO_APP_SECRET not in text and DEMO_API_TOKEN not in text
        assert not any("token" in name.lower() for name in record["query"])
