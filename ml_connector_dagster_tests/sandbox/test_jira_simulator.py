"""The Jira Cloud simulator behaves like Jira Cloud: 3LO, ADF, JQL, eventual consistency, webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.jira import (
    CLOUD_ID,
    DEMO_API_TOKEN,
    DEMO_APP_SECRET,
    DEMO_CLIENT_ID,
    DEMO_EMAIL,
    DEMO_REDIRECT_URI,
    DEMO_WEBHOOK_SECRET,
    JiraSimulator,
)
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jira import adf

API = f"/ex/jira/{CLOUD_ID}/rest/api/3"
ADF_MESSAGE = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
RECEIVER = "https://connector.example/hooks/jira"
SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "jira-v3.swagger.json"


class Receiver:
    """A webhook endpoint that records what it got and answers with queued status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses = list(statuses or [])
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[JiraSimulator]:
    simulator = JiraSimulator(seed_issues=0, webhook_transport=httpx.MockTransport(receiver))
    yield simulator
    simulator.close()


@pytest.fixture
def http(sim: JiraSimulator) -> Iterator[httpx.Client]:
    transport = InProcessTransport(sim.app)
    with httpx.Client(transport=transport, base_url="http://jira.sandbox") as client:
        yield client
    transport.close()


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/oauth/token", json={
        "grant_type": "refresh_token", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_APP_SECRET,
        "refresh_token": refresh_token,
    })


@pytest.fixture
def api(http: httpx.Client, sim: JiraSimulator) -> httpx.Client:
    """The HTTP client, authorised with a 3LO access token of the demo grant."""
    token = refresh(http, sim.credentials()["refresh_token"]).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def authorize(http: httpx.Client, scope: str = "read:jira-work write:jira-work offline_access") -> str:
    response = http.get("/authorize", params={
        "audience": "api.atlassian.com", "client_id": DEMO_CLIENT_ID, "scope": scope,
        "redirect_uri": DEMO_REDIRECT_URI, "state": "s-42", "response_type": "code", "prompt": "consent",
    })
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def relogin(api: httpx.Client) -> None:
    """A fresh access token for a test that moved the clock past the old one's hour."""
    scopes = "read:jira-work write:jira-work read:jira-user manage:jira-webhook offline_access"
    api.headers["Authorization"] = f"Bearer {exchange(api, authorize(api, scopes)).json()['access_token']}"


def exchange(http: httpx.Client, code: str) -> httpx.Response:
    return http.post("/oauth/token", json={
        "grant_type": "authorization_code", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_APP_SECRET,
        "code": code, "redirect_uri": DEMO_REDIRECT_URI,
    })


def fields(summary: str = "Invoice INV-1001 from Nordic Steel Oy", project: str = "FIN", **extra: Any) -> dict[str, Any]:
    return {"project": {"key": project}, "issuetype": {"name": "Task"}, "summary": summary, **extra}


def create(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = api.post(f"{API}/issue", json={"fields": fields(**extra)})
    assert response.status_code == 201, response.text
    return response.json()


def search(api: httpx.Client, jql: str, **body: Any) -> httpx.Response:
    return api.post(f"{API}/search/jql", json={"jql": jql, **body})


def found_keys(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [issue["key"] for issue in response.json()["issues"]]


# -- OAuth 2.0 (3LO) -----------------------------------------------------------------------------


def test_authorize_redirects_back_with_a_code_and_the_state(http: httpx.Client) -> None:
    response = http.get("/authorize", params={
        "audience": "api.atlassian.com", "client_id": DEMO_CLIENT_ID, "scope": "read:jira-work offline_access",
        "redirect_uri": DEMO_REDIRECT_URI, "state": "xyz", "response_type": "code",
    })
    target = urlsplit(response.headers["location"])
    assert response.status_code == 302
    assert f"{target.scheme}://{target.netloc}{target.path}" == DEMO_REDIRECT_URI
    assert parse_qs(target.query)["state"] == ["xyz"]


def test_authorize_refuses_a_redirect_uri_the_app_does_not_have(http: httpx.Client) -> None:
    response = http.get("/authorize", params={
        "audience": "api.atlassian.com", "client_id": DEMO_CLIENT_ID, "scope": "read:jira-work",
        "redirect_uri": "https://evil.example/cb", "response_type": "code",
    })
    assert response.status_code == 400


def test_code_exchange_returns_an_hour_long_access_token_and_a_refresh_token(http: httpx.Client) -> None:
    body = exchange(http, authorize(http)).json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"] and body["refresh_token"]


def test_an_authorization_code_works_once(http: httpx.Client) -> None:
    code = authorize(http)
    exchange(http, code)
    second = exchange(http, code)
    assert second.status_code == 403
    assert second.json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_access(http: httpx.Client) -> None:
    body = exchange(http, authorize(http, scope="read:jira-work")).json()
    assert "refresh_token" not in body


def test_every_refresh_returns_a_new_refresh_token_that_works(http: httpx.Client, sim: JiraSimulator) -> None:
    first = refresh(http, sim.credentials()["refresh_token"]).json()
    assert first["refresh_token"] != sim.credentials()["refresh_token"]
    second = refresh(http, first["refresh_token"])
    assert second.status_code == 200


def test_a_rotated_refresh_token_still_works_within_the_reuse_window(http: httpx.Client, sim: JiraSimulator) -> None:
    old = sim.credentials()["refresh_token"]
    refresh(http, old)
    sim.clock.advance(9 * 60)
    assert refresh(http, old).status_code == 200


def test_a_rotated_refresh_token_dies_after_the_reuse_window(http: httpx.Client, sim: JiraSimulator) -> None:
    old = sim.credentials()["refresh_token"]
    refresh(http, old)
    sim.clock.advance(11 * 60)
    response = refresh(http, old)
    assert response.status_code == 403
    assert response.json() == {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}


def test_a_refresh_token_idle_for_90_days_expires(http: httpx.Client, sim: JiraSimulator) -> None:
    sim.clock.advance(91 * 86400)
    assert refresh(http, sim.credentials()["refresh_token"]).status_code == 403


def test_a_wrong_client_secret_is_refused(http: httpx.Client, sim: JiraSimulator) -> None:
    response = http.post("/oauth/token", json={
        "grant_type": "refresh_token", "client_id": DEMO_CLIENT_ID, "client_secret": "nope",
        "refresh_token": sim.credentials()["refresh_token"],
    })
    assert response.status_code == 401


def test_an_access_token_stops_working_after_an_hour(api: httpx.Client, sim: JiraSimulator) -> None:
    sim.clock.advance(3601)
    assert api.get(f"{API}/myself").status_code == 401


def test_the_expire_tokens_fault_kills_access_tokens_but_not_refresh_tokens(api: httpx.Client, sim: JiraSimulator) -> None:
    sim.set_faults(FaultPlan(expire_tokens=True))
    assert api.get(f"{API}/myself").status_code == 401
    assert refresh(api, sim.credentials()["refresh_token"]).status_code == 200


def test_accessible_resources_name_the_site_and_its_cloud_id(api: httpx.Client, sim: JiraSimulator) -> None:
    resources = api.get("/oauth/token/accessible-resources").json()
    assert [r["id"] for r in resources] == [CLOUD_ID]
    assert {"name", "url", "scopes", "avatarUrl"} <= set(resources[0])
    assert resources[0]["url"] == sim.site_url


def test_a_wrong_cloud_id_is_not_found(api: httpx.Client) -> None:
    assert api.get("/ex/jira/00000000-0000-0000-0000-000000000000/rest/api/3/myself").status_code == 404


def test_a_bad_bearer_token_is_unauthorized(http: httpx.Client) -> None:
    response = http.get(f"{API}/myself", headers={"Authorization": "Bearer forged"})
    assert response.status_code == 401


def test_a_token_without_the_needed_scope_is_refused(http: httpx.Client) -> None:
    token = exchange(http, authorize(http, scope="read:jira-work")).json()["access_token"]
    response = http.post(f"{API}/issue", json={"fields": fields()}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["message"] == "Unauthorized; scope does not match"


def basic(email: str = DEMO_EMAIL, token: str = DEMO_API_TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()}


def test_api_token_basic_auth_works_on_the_site_path(http: httpx.Client) -> None:
    response = http.get("/rest/api/3/myself", headers=basic())
    assert response.status_code == 200
    assert response.json()["emailAddress"] == DEMO_EMAIL


def test_a_wrong_api_token_is_unauthorized(http: httpx.Client) -> None:
    assert http.get("/rest/api/3/myself", headers=basic(token="wrong")).status_code == 401


# -- issues ---------------------------------------------------------------------------------------


def test_create_answers_201_with_id_key_and_self(api: httpx.Client) -> None:
    created = create(api, description=adf.from_plain_text("Amount 12 450,00 SEK"))
    assert created["key"] == "FIN-1"
    assert created["self"].endswith(f"{API}/issue/{created['id']}")


def test_a_plain_text_description_is_rejected_with_jiras_message(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue", json={"fields": fields(description="Amount 12 450,00 SEK")})
    assert response.status_code == 400
    assert response.json() == {"errorMessages": [], "errors": {"description": ADF_MESSAGE}}


def test_an_invalid_adf_description_is_rejected(api: httpx.Client) -> None:
    empty_text = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]}
    response = api.post(f"{API}/issue", json={"fields": fields(description=empty_text)})
    assert response.json()["errors"] == {"description": ADF_MESSAGE}


@pytest.fixture(scope="module")
def shared_api() -> Iterator[httpx.Client]:
    """One simulator for the property tests (hypothesis runs many examples per test)."""
    simulator = JiraSimulator(seed_issues=0)
    transport = InProcessTransport(simulator.app)
    headers = basic()
    with httpx.Client(transport=transport, base_url="http://jira.sandbox", headers=headers) as client:
        yield client
    transport.close()
    simulator.close()


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=500))
def test_the_simulator_accepts_any_document_the_builders_make(shared_api: httpx.Client, value: str) -> None:
    body = {"fields": fields(description=adf.from_plain_text(value), customfield_10046=adf.doc(adf.table(["Item"], [[value]])))}
    assert shared_api.post("/rest/api/3/issue", json=body).status_code == 201


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([
    {"type": "doc", "version": 1, "content": [{"type": "text", "text": "bare text at the root"}]},
    {"type": "doc", "version": 2, "content": []},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "table", "content": []}]},
    {"type": "paragraph", "content": []},
]))
def test_the_simulator_refuses_what_the_adf_schema_refuses(shared_api: httpx.Client, document: dict[str, Any]) -> None:
    with pytest.raises(adf.InvalidAdf):
        adf.validate(document)
    response = shared_api.post("/rest/api/3/issue", json={"fields": fields(description=document)})
    assert response.json()["errors"] == {"description": ADF_MESSAGE}


def test_a_textarea_custom_field_needs_adf_too(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue", json={"fields": fields(customfield_10046="10 x bearings")})
    assert response.json()["errors"] == {"customfield_10046": ADF_MESSAGE}


def test_an_unknown_field_is_rejected_by_name(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue", json={"fields": fields(customfield_19999="x")})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "customfield_19999": "Field 'customfield_19999' cannot be set. It is not on the appropriate screen, or unknown."
    }


def test_a_field_off_the_projects_create_screen_is_rejected(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue", json={"fields": fields(project="ACU", customfield_10040="INV-1")})
    assert "customfield_10040" in response.json()["errors"]


@pytest.mark.parametrize(
    ("drop", "error"),
    [
        ("project", {"project": "Specify a valid project ID or key"}),
        ("issuetype", {"issuetype": "Specify an issue type"}),
        ("summary", {"summary": "You must specify a summary of the issue."}),
    ],
)
def test_required_fields_are_enforced(api: httpx.Client, drop: str, error: dict[str, str]) -> None:
    body = fields()
    del body[drop]
    response = api.post(f"{API}/issue", json={"fields": body})
    assert response.status_code == 400
    assert response.json()["errors"] == error


def test_a_number_field_refuses_a_string(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue", json={"fields": fields(customfield_10042="12450.00")})
    assert response.json()["errors"] == {"customfield_10042": "Operation value must be a number"}


def test_a_due_date_must_be_yyyy_mm_dd(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue", json={"fields": fields(duedate="20.12.2026")})
    assert response.json()["errors"] == {"duedate": "Error parsing date string: 20.12.2026"}


def test_get_issue_returns_custom_fields_and_honours_the_fields_parameter(api: httpx.Client) -> None:
    key = create(api, customfield_10040="INV-1001", customfield_10042=12450.0, customfield_10043="SEK")["key"]
    issue = api.get(f"{API}/issue/{key}", params={"fields": "summary,customfield_10042,customfield_10043"}).json()
    assert issue["fields"] == {"summary": fields()["summary"], "customfield_10042": 12450.0, "customfield_10043": "SEK"}


def test_timestamps_are_written_in_the_callers_timezone(api: httpx.Client) -> None:
    key = create(api)["key"]
    created = api.get(f"{API}/issue/{key}", params={"fields": "created"}).json()["fields"]["created"]
    assert created[-5:] in {"-0800", "-0700"}  # America/Los_Angeles, with or without DST


def test_edit_changes_fields_and_records_a_changelog(api: httpx.Client) -> None:
    key = create(api)["key"]
    response = api.put(f"{API}/issue/{key}", json={"fields": {"customfield_10042": 99.5}})
    assert response.status_code == 204
    issue = api.get(f"{API}/issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["customfield_10042"] == 99.5
    assert issue["changelog"]["histories"][0]["items"][0]["fieldId"] == "customfield_10042"


def test_a_new_issue_has_an_empty_changelog_and_its_description_reads_back_whole(api: httpx.Client) -> None:
    description = adf.doc(adf.heading(2, "Invoice 1"), adf.table(["Field", "Value"], [["Amount", "12 500,00 NOK"]]))
    key = create(api, description=description)["key"]

    issue = api.get(f"{API}/issue/{key}", params={"expand": "changelog", "fields": "description"}).json()

    assert issue["changelog"]["histories"] == []  # creating is not a change, in Jira's history
    assert issue["fields"]["description"] == description


def test_an_unknown_issue_is_404_in_jiras_words(api: httpx.Client) -> None:
    response = api.get(f"{API}/issue/FIN-999")
    assert response.status_code == 404
    assert response.json()["errorMessages"] == ["Issue does not exist or you do not have permission to see it."]


# -- bulk create ------------------------------------------------------------------------------------


def test_bulk_create_with_some_failures_answers_201_with_both_lists(api: httpx.Client) -> None:
    updates = [{"fields": fields("ok 1")}, {"fields": fields(description="plain")}, {"fields": fields("ok 2")}]
    response = api.post(f"{API}/issue/bulk", json={"issueUpdates": updates})
    body = response.json()
    assert response.status_code == 201
    assert [i["key"] for i in body["issues"]] == ["FIN-1", "FIN-2"]
    assert body["errors"] == [{
        "status": 400,
        "elementErrors": {"errorMessages": [], "errors": {"description": ADF_MESSAGE}},
        "failedElementNumber": 1,
    }]


def test_bulk_create_with_every_element_failing_answers_400(api: httpx.Client) -> None:
    response = api.post(f"{API}/issue/bulk", json={"issueUpdates": [{"fields": fields(description="plain")}]})
    assert response.status_code == 400
    assert response.json()["issues"] == []


def test_bulk_create_refuses_more_than_50_issues(api: httpx.Client, sim: JiraSimulator) -> None:
    response = api.post(f"{API}/issue/bulk", json={"issueUpdates": [{"fields": fields(f"n{i}")} for i in range(51)]})
    assert response.status_code == 400
    assert sim.issues == {}


# -- search ---------------------------------------------------------------------------------------


def test_search_returns_ids_only_unless_fields_are_asked_for(api: httpx.Client, sim: JiraSimulator) -> None:
    created = create(api)
    sim.reindex()
    assert search(api, "project = FIN").json() == {"issues": [{"id": created["id"]}], "isLast": True}


def test_unbounded_jql_is_refused(api: httpx.Client) -> None:
    response = search(api, "order by created DESC")
    assert response.status_code == 400
    assert response.json()["errorMessages"] == [
        "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
    ]


def test_the_old_search_endpoint_is_gone(api: httpx.Client) -> None:
    response = api.get(f"{API}/search", params={"jql": "project = FIN"})
    assert response.status_code == 410
    assert "/rest/api/3/search/jql" in response.json()["errorMessages"][0]


def test_start_at_is_not_a_search_jql_parameter(api: httpx.Client) -> None:
    assert search(api, "project = FIN", startAt=0).status_code == 400


def test_a_new_issue_is_not_searchable_until_indexed(api: httpx.Client) -> None:
    create(api, customfield_10040="INV-7")
    assert found_keys(search(api, 'project = FIN AND "Visma ID" ~ "INV-7"', fields=["summary"])) == []


def test_reconcile_issues_finds_a_just_written_issue(api: httpx.Client) -> None:
    created = create(api, customfield_10040="INV-7")
    response = search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["summary"],
                      reconcileIssues=[int(created["id"])])
    assert found_keys(response) == [created["key"]]


def test_a_new_issue_becomes_searchable_after_the_index_delay(api: httpx.Client, sim: JiraSimulator) -> None:
    created = create(api, customfield_10040="INV-7")
    sim.clock.advance(sim.index_delay_s + 0.1)
    assert found_keys(search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["key"])) == [created["key"]]


def test_jql_finds_an_issue_by_the_text_of_its_description_as_last_written(api: httpx.Client, sim: JiraSimulator) -> None:
    key = create(api, description=adf.from_plain_text("Stålprofiler for the north hall"))["key"]
    sim.reindex()
    assert found_keys(search(api, 'project = FIN AND description ~ "Stålprofiler"', fields=["key"])) == [key]

    api.put(f"{API}/issue/{key}", json={"fields": {"description": adf.from_plain_text("Copper cable")}})
    sim.reindex()

    assert found_keys(search(api, 'project = FIN AND description ~ "Stålprofiler"', fields=["key"])) == []
    assert found_keys(search(api, 'project = FIN AND description ~ "cable"', fields=["key"])) == [key]


def test_an_external_id_changed_since_the_last_index_is_found_by_its_indexed_value_only(
    api: httpx.Client, sim: JiraSimulator
) -> None:
    key = create(api, customfield_10040="INV-7")["key"]
    sim.reindex()
    api.put(f"{API}/issue/{key}", json={"fields": {"customfield_10040": "INV-8"}})

    assert found_keys(search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["key"])) == [key]
    assert found_keys(search(api, 'project = FIN AND cf[10040] ~ "INV-8"', fields=["key"])) == []
    sim.reindex()
    assert found_keys(search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["key"])) == []
    assert found_keys(search(api, 'project = FIN AND cf[10040] ~ "INV-8"', fields=["key"])) == [key]


def _statuses_found(response: httpx.Response) -> list[str]:
    return [issue["fields"]["status"]["name"] for issue in response.json()["issues"]]


def test_a_search_answers_with_the_issue_as_indexed_not_as_it_is(api: httpx.Client, sim: JiraSimulator) -> None:
    created = create(api, customfield_10040="INV-7")
    sim.reindex()
    sim.set_status(created["key"], "In Review")

    stale = search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["status", "customfield_10040"])

    assert _statuses_found(stale) == ["To Do"]


def test_a_reconciled_search_answers_with_the_issue_as_it_is(api: httpx.Client, sim: JiraSimulator) -> None:
    created = create(api, customfield_10040="INV-7")
    sim.reindex()
    sim.set_status(created["key"], "In Review")

    fresh = search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["status"],
                   reconcileIssues=[int(created["id"])])

    assert _statuses_found(fresh) == ["In Review"]


def test_a_search_answers_with_the_field_values_the_index_holds(api: httpx.Client, sim: JiraSimulator) -> None:
    key = create(api, customfield_10040="INV-7")["key"]
    sim.reindex()
    api.put(f"{API}/issue/{key}", json={"fields": {"customfield_10040": "INV-8", "labels": ["moved"]}})

    (issue,) = search(api, 'project = FIN AND cf[10040] ~ "INV-7"', fields=["customfield_10040", "labels"]).json()["issues"]

    assert (issue["fields"]["customfield_10040"], issue["fields"]["labels"]) == ("INV-7", [])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["INV-1", "INV-2", "inv 2", "INV-12", "PO-1", "Invoice 1 of 2", ""]), min_size=1,
                max_size=8),
       st.sampled_from(['cf[10040] ~ "INV-1"', 'cf[10040] ~ "\\"INV 2\\""', 'cf[10040] ~ "inv*"',
                        '(cf[10040] ~ "INV-1" OR cf[10040] ~ "PO-1")', 'cf[10040] ~ "1" AND cf[10040] ~ "2"',
                        'NOT cf[10040] ~ "INV-2"', 'cf[10040] ~ "INV-1" OR summary ~ "Freight"']))
def test_a_search_narrowed_by_the_term_index_finds_what_a_scan_of_every_issue_finds(
    external_ids: list[str], clause: str
) -> None:
    sim = JiraSimulator(seed_issues=0, index_delay_s=0)
    transport = InProcessTransport(sim.app)
    try:
        api = httpx.Client(transport=transport, base_url="http://jira.sandbox")
        api.headers["Authorization"] = f"Bearer {refresh(api, sim.credentials()['refresh_token']).json()['access_token']}"
        for external_id in external_ids:
            create(api, **({"customfield_10040": external_id} if external_id else {}))
        jql = f"project = FIN AND ({clause})"
        narrowed = found_keys(search(api, jql, fields=["key"]))
        sim._candidates = lambda node: None  # type: ignore[method-assign]  # every issue judged, as before
        assert found_keys(search(api, jql, fields=["key"])) == narrowed
    finally:
        transport.close()
        sim.close()


def test_jql_dates_without_a_zone_are_read_in_the_users_timezone(api: httpx.Client, sim: JiraSimulator) -> None:
    moment = datetime(2026, 11, 20, 18, 0, 30, tzinfo=UTC)  # 10:00:30 in Los Angeles
    sim.clock.advance(moment.timestamp() - sim.clock.time())
    key = create(api)["key"]
    sim.reindex()
    assert found_keys(search(api, 'project = FIN AND updated >= "2026-11-20 18:00"', fields=["key"])) == []
    assert found_keys(search(api, 'project = FIN AND updated >= "2026-11-20 10:00"', fields=["key"])) == [key]
    epoch_ms = int(datetime(2026, 11, 20, 18, 0, tzinfo=UTC).timestamp() * 1000)
    assert found_keys(search(api, f"project = FIN AND updated >= {epoch_ms}", fields=["key"])) == [key]


def test_a_jql_date_with_an_offset_is_invalid(api: httpx.Client) -> None:
    response = search(api, 'project = FIN AND updated >= "2026-11-20 18:00 +0000"')
    assert response.status_code == 400
    assert response.json()["errorMessages"][0].startswith("Date value '2026-11-20 18:00 +0000' for field 'updated' is invalid.")


def test_next_page_token_walks_every_page_once(api: httpx.Client, sim: JiraSimulator) -> None:
    for n in range(7):
        create(api, summary=f"Invoice {n}")
    sim.reindex()
    seen: list[str] = []
    body: dict[str, Any] = {"jql": "project = FIN ORDER BY key ASC", "maxResults": 3, "fields": ["key"]}
    pages = 0
    while True:
        page = api.post(f"{API}/search/jql", json=body).json()
        pages += 1
        seen += [i["key"] for i in page["issues"]]
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        body["nextPageToken"] = page["nextPageToken"]
    assert pages == 3
    assert seen == [f"FIN-{n}" for n in range(1, 8)]


def test_jql_supports_in_lists_parentheses_and_status_categories(api: httpx.Client, sim: JiraSimulator) -> None:
    fin = create(api)["key"]
    acu = create(api, project="ACU")["key"]
    create(api, project="PROC")
    sim.resolve_issue(acu)
    sim.reindex()
    jql = "project in (FIN, ACU) AND (statusCategory = Done OR status = \"To Do\") ORDER BY key"
    assert found_keys(search(api, jql, fields=["key"])) == [acu, fin]


def test_not_equals_does_not_match_empty_values(api: httpx.Client, sim: JiraSimulator) -> None:
    create(api)  # unassigned
    assigned = create(api, assignee={"accountId": "5f8a1c2e9b3d4e0012a7c3f1"})["key"]
    sim.reindex()
    jql = "project = FIN AND assignee != 60b7d2e41a9c3f0069e1b5d8"
    assert found_keys(search(api, jql, fields=["key"])) == [assigned]


def test_a_free_text_field_does_not_support_equals(api: httpx.Client) -> None:
    response = search(api, 'project = FIN AND "Visma ID" = "INV-1"')
    assert response.json()["errorMessages"] == ["The operator '=' is not supported by the 'Visma ID' field."]


def test_an_unknown_jql_field_is_named(api: httpx.Client) -> None:
    response = search(api, 'project = FIN AND "Invoice number" ~ "1"')
    assert response.json()["errorMessages"] == [
        "Field 'Invoice number' does not exist or you do not have permission to view it."
    ]


def test_a_key_that_does_not_exist_fails_the_whole_query(api: httpx.Client) -> None:
    response = search(api, "key in (FIN-404)")
    assert response.json()["errorMessages"] == ["An issue with key 'FIN-404' does not exist for field 'key'."]


# -- workflow and comments ---------------------------------------------------------------------------


def test_transitions_offered_depend_on_the_current_status(api: httpx.Client) -> None:
    key = create(api)["key"]
    offered = api.get(f"{API}/issue/{key}/transitions").json()["transitions"]
    assert {(t["id"], t["to"]["name"]) for t in offered} == {("11", "In Review"), ("51", "Done")}


def test_a_transition_not_valid_for_the_status_is_400(api: httpx.Client) -> None:
    key = create(api)["key"]
    response = api.post(f"{API}/issue/{key}/transitions", json={"transition": {"id": "21"}})
    assert response.status_code == 400
    assert response.json()["errorMessages"] == ["Transition id '21' is not valid for this issue."]


def test_a_done_transition_sets_the_resolution(api: httpx.Client, sim: JiraSimulator) -> None:
    key = create(api)["key"]
    assert api.post(f"{API}/issue/{key}/transitions", json={"transition": {"id": "51"}}).status_code == 204
    issue = api.get(f"{API}/issue/{key}", params={"fields": "status,resolution"}).json()["fields"]
    assert (issue["status"]["name"], issue["resolution"]["name"]) == ("Done", "Done")
    assert sim.collections()["transitions"][0]["to"] == "Done"


def test_a_comment_in_adf_is_stored_and_listed(api: httpx.Client) -> None:
    key = create(api)["key"]
    body = adf.doc(adf.paragraph("Approved by ", adf.strong("AP")))
    assert api.post(f"{API}/issue/{key}/comment", json={"body": body}).status_code == 201
    comments = api.get(f"{API}/issue/{key}/comment").json()
    assert comments["total"] == 1
    assert comments["comments"][0]["body"] == body


def test_a_plain_text_comment_is_rejected(api: httpx.Client) -> None:
    key = create(api)["key"]
    response = api.post(f"{API}/issue/{key}/comment", json={"body": "Approved"})
    assert response.json() == {"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}


# -- dynamic webhooks -------------------------------------------------------------------------------


def register(api: httpx.Client, jql: str = "project = FIN", events: tuple[str, ...] = ("jira:issue_created",)) -> dict[str, Any]:
    response = api.post(f"{API}/webhook", json={"url": RECEIVER, "webhooks": [{"events": list(events), "jqlFilter": jql}]})
    assert response.status_code == 200, response.text
    return response.json()["webhookRegistrationResult"][0]


def test_a_registered_webhook_is_listed_with_its_expiry_in_30_days(api: httpx.Client, sim: JiraSimulator) -> None:
    webhook_id = register(api)["createdWebhookId"]
    listed = api.get(f"{API}/webhook").json()
    assert [w["id"] for w in listed["values"]] == [webhook_id]
    expires_in_days = (listed["values"][0]["expirationDate"] / 1000 - sim.clock.time()) / 86400
    assert 29.9 < expires_in_days <= 30


def test_refresh_moves_the_expiry_30_days_from_now(api: httpx.Client, sim: JiraSimulator) -> None:
    webhook_id = register(api)["createdWebhookId"]
    sim.clock.advance(20 * 86400)
    relogin(api)
    expiry = api.put(f"{API}/webhook/refresh", json={"webhookIds": [webhook_id]}).json()["expirationDate"]
    assert abs(expiry / 1000 - (sim.clock.time() + 30 * 86400)) < 5


def test_an_expired_webhook_disappears_and_stops_delivering(api: httpx.Client, sim: JiraSimulator, receiver: Receiver) -> None:
    register(api)
    sim.clock.advance(30 * 86400 + 1)
    relogin(api)
    assert api.get(f"{API}/webhook").json()["values"] == []
    create(api)
    sim.flush_webhooks()
    assert receiver.requests == []


def test_at_most_five_webhooks_per_app_and_user(api: httpx.Client) -> None:
    for _ in range(5):
        register(api)
    assert "errors" in register(api)


def test_a_webhook_filter_outside_the_supported_jql_is_refused(api: httpx.Client) -> None:
    assert "errors" in register(api, jql='project = FIN AND summary ~ "invoice"')


def test_deleted_webhooks_are_gone(api: httpx.Client) -> None:
    webhook_id = register(api)["createdWebhookId"]
    assert api.request("DELETE", f"{API}/webhook", json={"webhookIds": [webhook_id]}).status_code == 202
    assert api.get(f"{API}/webhook").json()["total"] == 0


def test_only_apps_may_register_dynamic_webhooks(http: httpx.Client) -> None:
    response = http.post("/rest/api/3/webhook", headers=basic(),
                         json={"url": RECEIVER, "webhooks": [{"events": ["jira:issue_created"], "jqlFilter": "project = FIN"}]})
    assert response.status_code == 403


def test_a_dynamic_webhook_delivery_carries_a_jwt_signed_with_the_app_secret(
    api: httpx.Client, sim: JiraSimulator, receiver: Receiver
) -> None:
    webhook_id = register(api)["createdWebhookId"]
    created = create(api)
    assert sim.flush_webhooks()
    (request,) = receiver.requests
    claims = jwt.decode(request.headers["authorization"].removeprefix("Bearer "), DEMO_APP_SECRET, algorithms=["HS256"])
    assert claims["qsh"] == hashlib.sha256(b"POST&/hooks/jira&").hexdigest()
    body = json.loads(request.content)
    assert (body["webhookEvent"], body["issue"]["key"], body["matchedWebhookIds"]) == (
        "jira:issue_created", created["key"], [webhook_id])
    assert request.headers["x-atlassian-webhook-identifier"]


def test_a_webhook_only_fires_for_issues_its_filter_matches(api: httpx.Client, sim: JiraSimulator, receiver: Receiver) -> None:
    register(api, jql="project = ACU")
    create(api)
    sim.flush_webhooks()
    assert receiver.requests == []


def test_retries_keep_the_webhook_identifier(receiver: Receiver) -> None:
    receiver.statuses = [503, 200]
    sim = JiraSimulator(seed_issues=1, time_scale=0.0001, webhook_transport=httpx.MockTransport(receiver))
    try:
        sim.add_admin_webhook(RECEIVER, events=["comment_created"])
        sim.add_comment(next(iter(sim.issues.values())).key, "Checked with the supplier")
        assert sim.flush_webhooks()
    finally:
        sim.close()
    first, retry = receiver.requests
    assert first.headers["x-atlassian-webhook-identifier"] == retry.headers["x-atlassian-webhook-identifier"]
    assert first.content == retry.content


def test_an_admin_webhook_delivery_carries_an_x_hub_signature(receiver: Receiver) -> None:
    sim = JiraSimulator(seed_issues=1, webhook_url=RECEIVER, webhook_transport=httpx.MockTransport(receiver))
    try:
        key = next(iter(sim.issues.values())).key
        sim.resolve_issue(key)
        assert sim.flush_webhooks()
    finally:
        sim.close()
    (request,) = receiver.requests
    expected = "sha256=" + hmac.new(DEMO_WEBHOOK_SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["x-hub-signature"] == expected
    body = json.loads(request.content)
    assert body["webhookEvent"] == "jira:issue_updated"
    assert {i["field"] for i in body["changelog"]["items"]} == {"status", "resolution"}


# -- rate limits and state ----------------------------------------------------------------------------


def test_a_burst_over_the_budget_answers_429_with_retry_after(receiver: Receiver) -> None:
    sim = JiraSimulator(seed_issues=0, burst_per_s=2, webhook_transport=httpx.MockTransport(receiver))
    transport = InProcessTransport(sim.app)
    try:
        with httpx.Client(transport=transport, base_url="http://jira.sandbox", headers=basic()) as http:
            statuses = [http.get("/rest/api/3/myself") for _ in range(3)]
    finally:
        transport.close()
        sim.close()
    limited = statuses[-1]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-reason"] == "jira-burst-based"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.json() == {"errorMessages": ["Rate limit exceeded."], "errors": {}}


def test_the_state_endpoint_lists_every_collection(api: httpx.Client) -> None:
    create(api)
    state = api.get("/_sandbox/state").json()
    assert {"issues", "projects", "fields", "issue_types", "comments", "webhooks", "transitions", "users"} <= set(state)
    assert state["issues"][0]["fields"]["project"]["key"] == "FIN"


def test_recorded_requests_never_show_tokens(api: httpx.Client, sim: JiraSimulator) -> None:
    api.get(f"{API}/myself")
    recorded = json.dumps(api.get("/_sandbox/requests").json())
    assert not any(secret in recorded for secret in sim.secret_values())


# -- response shapes against the published spec ----------------------------------------------------


@lru_cache(maxsize=1)
def spec_components() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))["components"]


Probe = Callable[[httpx.Client, str], httpx.Response]
RESPONSES: list[tuple[str, bool, Probe]] = [
    ("User", False, lambda api, key: api.get(f"{API}/myself")),
    ("PageBeanProject", False, lambda api, key: api.get(f"{API}/project/search")),
    ("Project", False, lambda api, key: api.get(f"{API}/project/FIN")),
    ("FieldDetails", True, lambda api, key: api.get(f"{API}/field")),
    ("IssueTypeDetails", True, lambda api, key: api.get(f"{API}/issuetype")),
    ("StatusDetails", True, lambda api, key: api.get(f"{API}/status")),
    ("PageOfCreateMetaIssueTypes", False, lambda api, key: api.get(f"{API}/issue/createmeta/FIN/issuetypes")),
    ("PageOfCreateMetaIssueTypeWithField", False, lambda api, key: api.get(f"{API}/issue/createmeta/FIN/issuetypes/10005")),
    ("CreatedIssue", False, lambda api, key: api.post(f"{API}/issue", json={"fields": fields()})),
    ("CreatedIssues", False, lambda api, key: api.post(f"{API}/issue/bulk", json={"issueUpdates": [{"fields": fields()}, {}]})),
    ("ErrorCollection", False, lambda api, key: api.post(f"{API}/issue", json={"fields": {}})),
    ("IssueBean", False, lambda api, key: api.get(f"{API}/issue/{key}", params={"expand": "names,schema,changelog"})),
    ("Transitions", False, lambda api, key: api.get(f"{API}/issue/{key}/transitions", params={"expand": "transitions.fields"})),
    ("PageOfComments", False, lambda api, key: api.get(f"{API}/issue/{key}/comment")),
    ("Comment", False, lambda api, key: api.post(f"{API}/issue/{key}/comment", json={"body": adf.from_plain_text("ok")})),
    ("SearchAndReconcileResults", False, lambda api, key: search(api, "project = FIN", fields=["*all"], reconcileIssues=[10000])),
    ("ContainerForRegisteredWebhooks", False, lambda api, key: api.post(f"{API}/webhook", json={
        "url": RECEIVER, "webhooks": [{"events": ["jira:issue_updated"], "jqlFilter": "project = FIN", "fieldIdsFilter": ["status"]},
                                      {"events": ["jira:issue_created"], "jqlFilter": "summary ~ x"}]})),
    ("PageBeanWebhook", False, lambda api, key: api.get(f"{API}/webhook")),
    ("WebhooksExpirationDate", False, lambda api, key: api.put(f"{API}/webhook/refresh", json={"webhookIds": [1]})),
    ("ServerInformation", False, lambda api, key: api.get(f"{API}/serverInfo")),
    ("User", True, lambda api, key: api.get(f"{API}/user/search", params={"query": "lars"})),
]


@pytest.mark.parametrize(("schema", "is_list", "probe"), RESPONSES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(RESPONSES)])
def test_responses_follow_the_spec_schemas(api: httpx.Client, sim: JiraSimulator, schema: str, is_list: bool, probe: Probe) -> None:
    key = create(api, description=adf.from_plain_text("x"), customfield_10042=1.5)["key"]
    api.post(f"{API}/issue/{key}/transitions", json={"transition": {"id": "51"}})  # a changelog with a resolution
    api.post(f"{API}/issue/{key}/comment", json={"body": adf.from_plain_text("seen")})
    ref = {"$ref": f"#/components/schemas/{schema}"}
    validator = jsonschema.Draft4Validator(
        {"type": "array", "items": ref, "components": spec_components()} if is_list else {**ref, "components": spec_components()}
    )
    body = probe(api, key).json()
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(body)]
    assert errors == []
