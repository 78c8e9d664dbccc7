"""The Asana simulator behaves like Asana: envelopes, paging, custom fields, batch, limits, webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ml_connector_dagster.sandbox.asana import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    AsanaSimulator,
    sandbox_credentials,
)
from ml_connector_dagster.sandbox.framework import FaultPlan
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.asana.webhook import expect_handshake, secret_name, sign, target_url
from ml_connector_dagster_tests.asana_sandbox import IN_PROCESS_URL, RECEIVER_URL, raw_api, receiver


@pytest.fixture
def sim() -> Iterator[AsanaSimulator]:
    simulator = AsanaSimulator(seed=5)
    yield simulator
    simulator.close()


@pytest.fixture
def transport(sim: AsanaSimulator) -> Iterator[InProcessTransport]:
    in_process = InProcessTransport(sim.app)
    yield in_process
    in_process.close()


@pytest.fixture
def api(sim: AsanaSimulator, transport: InProcessTransport) -> Iterator[httpx.Client]:
    with raw_api(transport, sim.credentials()["pat"]) as client:
        yield client


def new_task(api: httpx.Client, sim: AsanaSimulator, name: str = "PO 1", **data: Any) -> dict[str, Any]:
    body = {"name": name, "projects": [sim.project_gid("Purchase orders")], **data}
    response = api.post("/tasks", json={"data": body})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def message(response: httpx.Response) -> str:
    return response.json()["errors"][0]["message"]


def oauth_grant(transport: InProcessTransport, scope: str | None = None) -> dict[str, Any]:
    """The authorization-code dance: consent, then the code for tokens."""
    with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as http:
        query = {"client_id": DEMO_CLIENT_ID, "redirect_uri": DEMO_REDIRECT_URI, "response_type": "code", "state": "s1"}
        if scope:
            query["scope"] = scope
        redirect = http.get("/-/oauth_authorize", params=query)
        code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
        return http.post("/-/oauth_token", data={
            "grant_type": "authorization_code", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
            "redirect_uri": DEMO_REDIRECT_URI, "code": code,
        }).json()


def refresh(transport: InProcessTransport, refresh_token: str) -> httpx.Response:
    with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as http:
        return http.post("/-/oauth_token", data={
            "grant_type": "refresh_token", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
            "refresh_token": refresh_token,
        })


# -- authentication -------------------------------------------------------------------------------


def test_a_call_without_a_token_gets_401_in_asanas_error_shape(transport: InProcessTransport) -> None:
    with raw_api(transport, None) as anonymous:
        response = anonymous.get("/users/me")
    assert response.status_code == 401
    assert set(response.json()["errors"][0]) == {"message", "help"}


def test_the_demo_pat_acts_as_the_demo_user(api: httpx.Client) -> None:
    me = api.get("/users/me").json()["data"]
    assert (me["name"], me["email"]) == ("Ingrid Berg", "ingrid.berg@fjordlys.no")


def test_the_code_grant_gives_a_one_hour_access_token_and_a_refresh_token(transport: InProcessTransport) -> None:
    tokens = oauth_grant(transport)
    assert tokens["expires_in"] == 3600 and tokens["token_type"] == "bearer"
    assert tokens["refresh_token"] and tokens["data"]["email"] == "ingrid.berg@fjordlys.no"


def test_a_refresh_token_does_not_rotate_and_keeps_working(sim: AsanaSimulator, transport: InProcessTransport) -> None:
    first, second = (refresh(transport, sim.demo_refresh_token) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert "refresh_token" not in first.json()


def test_an_access_token_dies_after_an_hour(sim: AsanaSimulator, transport: InProcessTransport) -> None:
    token = refresh(transport, sim.demo_refresh_token).json()["access_token"]
    sim.clock.advance(3601)
    with raw_api(transport, token) as api:
        assert api.get("/users/me").status_code == 401


def test_the_token_endpoint_takes_a_form_body_only(sim: AsanaSimulator, transport: InProcessTransport) -> None:
    with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as http:
        response = http.post("/-/oauth_token", json={
            "grant_type": "refresh_token", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
            "refresh_token": sim.demo_refresh_token,
        })
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def trade_code(transport: InProcessTransport, *, times: int = 1, **fields: str) -> httpx.Response:
    """Consent at /-/oauth_authorize, then post the code ``times`` to /-/oauth_token with ``fields`` changed;
    the last answer."""
    with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as http:
        query = {"client_id": DEMO_CLIENT_ID, "redirect_uri": DEMO_REDIRECT_URI, "response_type": "code", "state": "s"}
        code = parse_qs(urlsplit(http.get("/-/oauth_authorize", params=query).headers["location"]).query)["code"][0]
        body = {"grant_type": "authorization_code", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
                "redirect_uri": DEMO_REDIRECT_URI, "code": code, **fields}
        answers = [http.post("/-/oauth_token", data=body) for _ in range(times)]
        return answers[-1]


def test_a_code_is_spent_by_its_first_trade(transport: InProcessTransport) -> None:
    response = trade_code(transport, times=2)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_code_traded_with_another_redirect_uri_is_an_invalid_grant(transport: InProcessTransport) -> None:
    response = trade_code(transport, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_at_the_token_endpoint_is_an_invalid_client(transport: InProcessTransport) -> None:
    response = trade_code(transport, client_secret="not-the-secret")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_authorize_sends_no_code_to_an_unregistered_redirect_uri(transport: InProcessTransport) -> None:
    with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as http:
        response = http.get("/-/oauth_authorize", params={
            "client_id": DEMO_CLIENT_ID, "redirect_uri": "https://evil.example/cb", "response_type": "code"})
    assert response.status_code == 400 and "location" not in response.headers


def test_a_token_without_the_endpoints_scope_gets_403(sim: AsanaSimulator, transport: InProcessTransport) -> None:
    token = oauth_grant(transport, scope="tasks:read")["access_token"]
    with raw_api(transport, token) as api:
        assert api.get(f"/projects/{sim.project_gid('Purchase orders')}/tasks").status_code == 200
        assert api.post("/tasks", json={"data": {"name": "x", "workspace": sim.tenant.workspace_gid}}).status_code == 403


def test_sandbox_credentials_match_a_fresh_simulator(sim: AsanaSimulator) -> None:
    assert sandbox_credentials(5) == sim.credentials()


# -- envelopes, opt_fields, paging ----------------------------------------------------------------


def test_lists_are_compact_unless_opt_fields_ask_for_more(api: httpx.Client, sim: AsanaSimulator) -> None:
    tasks = api.get(f"/projects/{sim.project_gid('Purchase orders')}/tasks").json()["data"]
    assert set(tasks[0]) == {"gid", "name", "resource_type", "resource_subtype"}


def test_opt_fields_select_nested_fields_and_always_the_gid(api: httpx.Client, sim: AsanaSimulator) -> None:
    task = new_task(api, sim, assignee="me")
    shaped = api.get(f"/tasks/{task['gid']}", params={"opt_fields": "name,assignee.email"}).json()["data"]
    assert shaped == {"gid": task["gid"], "name": "PO 1", "assignee": {"gid": task["assignee"]["gid"],
                                                                       "email": "ingrid.berg@fjordlys.no"}}


def test_a_limit_above_100_is_refused(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.get(f"/projects/{sim.project_gid('Purchase orders')}/tasks", params={"limit": 101})
    assert response.status_code == 400 and "limit" in message(response)


def test_next_page_leads_through_every_record_then_is_null(api: httpx.Client, sim: AsanaSimulator) -> None:
    for n in range(4):
        new_task(api, sim, f"PO {n}")
    path, seen = f"/projects/{sim.project_gid('Purchase orders')}/tasks", []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get(path, params=params).json()
        seen += [t["gid"] for t in page["data"]]
        if page["next_page"] is None:
            break
        assert page["next_page"]["path"].startswith(path) and page["next_page"]["uri"].endswith(page["next_page"]["path"])
        params["offset"] = page["next_page"]["offset"]
    assert len(seen) == len(set(seen)) == 6


def test_an_offset_expires(api: httpx.Client, sim: AsanaSimulator) -> None:
    path = f"/projects/{sim.project_gid('Purchase orders')}/tasks"
    offset = api.get(path, params={"limit": 1}).json()["next_page"]["offset"]
    sim.clock.advance(sim.pager.ttl_s + 1)
    response = api.get(path, params={"limit": 1, "offset": offset})
    assert response.status_code == 400 and "offset" in message(response)


def test_an_offset_only_works_for_the_query_it_came_from(api: httpx.Client, sim: AsanaSimulator) -> None:
    offset = api.get(f"/projects/{sim.project_gid('Purchase orders')}/tasks", params={"limit": 1}).json()["next_page"]["offset"]
    response = api.get(f"/projects/{sim.project_gid('Supplier invoices')}/tasks", params={"limit": 1, "offset": offset})
    assert response.status_code == 400


def test_request_bodies_are_read_from_the_data_envelope(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.post("/tasks", json={"name": "unwrapped", "projects": [sim.project_gid("Purchase orders")]})
    assert response.status_code == 400
    assert "workspace, parent, projects" in message(response)


# -- tasks and custom fields ----------------------------------------------------------------------


def test_custom_fields_are_written_by_gid_and_read_typed(api: httpx.Client, sim: AsanaSimulator) -> None:
    values = {sim.field_gid("Visma ID"): "PO000123", sim.field_gid("Amount"): 1234.5,
              sim.field_gid("Currency"): sim.option_gid("Currency", "NOK"), sim.field_gid("Due date"): "2026-12-01"}
    task = new_task(api, sim, custom_fields=values)
    shown = {f["name"]: f["display_value"] for f in task["custom_fields"]}
    assert shown["Visma ID"] == "PO000123" and shown["Amount"] == "1234.50"
    assert shown["Currency"] == "NOK" and shown["Due date"] == "2026-12-01"


def test_an_enum_value_is_an_option_gid_not_its_name(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.post("/tasks", json={"data": {"name": "x", "projects": [sim.project_gid("Purchase orders")],
                                                 "custom_fields": {sim.field_gid("Currency"): "NOK"}}})
    assert response.status_code == 400 and "enum option" in message(response)


def test_a_number_field_takes_a_json_number_only(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.post("/tasks", json={"data": {"name": "x", "projects": [sim.project_gid("Purchase orders")],
                                                 "custom_fields": {sim.field_gid("Amount"): "12.50"}}})
    assert response.status_code == 400


def test_a_date_field_takes_yyyy_mm_dd_only(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.post("/tasks", json={"data": {"name": "x", "projects": [sim.project_gid("Purchase orders")],
                                                 "custom_fields": {sim.field_gid("Due date"): "01.12.2026"}}})
    assert response.status_code == 400


def test_a_subtask_without_projects_cannot_carry_project_fields(api: httpx.Client, sim: AsanaSimulator) -> None:
    parent = new_task(api, sim)
    response = api.post(f"/tasks/{parent['gid']}/subtasks", json={"data": {
        "name": "Line 1", "custom_fields": {sim.field_gid("Amount"): 10}}})
    assert response.status_code == 400 and "not on given object" in message(response)


def test_a_subtask_hangs_under_its_parent(api: httpx.Client, sim: AsanaSimulator) -> None:
    parent = new_task(api, sim)
    child = api.post(f"/tasks/{parent['gid']}/subtasks", json={"data": {"name": "Line 1"}}).json()["data"]
    listed = api.get(f"/tasks/{parent['gid']}/subtasks").json()["data"]
    assert child["parent"]["gid"] == parent["gid"] and [t["gid"] for t in listed] == [child["gid"]]


def test_projects_cannot_be_changed_with_put(api: httpx.Client, sim: AsanaSimulator) -> None:
    task = new_task(api, sim)
    response = api.put(f"/tasks/{task['gid']}", json={"data": {"projects": [sim.project_gid("Supplier invoices")]}})
    assert response.status_code == 400


def test_a_refused_update_changes_nothing(api: httpx.Client, sim: AsanaSimulator) -> None:
    task = new_task(api, sim)
    api.put(f"/tasks/{task['gid']}", json={"data": {"name": "Renamed", "custom_fields": {sim.field_gid("Amount"): "x"}}})
    assert api.get(f"/tasks/{task['gid']}").json()["data"]["name"] == "PO 1"


def test_an_update_touches_only_the_custom_fields_it_names(api: httpx.Client, sim: AsanaSimulator) -> None:
    task = new_task(api, sim, custom_fields={sim.field_gid("Visma ID"): "PO1", sim.field_gid("Amount"): 5})
    updated = api.put(f"/tasks/{task['gid']}", json={"data": {"custom_fields": {sim.field_gid("Amount"): 7}}}).json()["data"]
    shown = {f["name"]: f["display_value"] for f in updated["custom_fields"]}
    assert (shown["Visma ID"], shown["Amount"]) == ("PO1", "7.00")


# -- enum options ---------------------------------------------------------------------------------


def test_an_enum_option_is_added_renamed_and_disabled(api: httpx.Client, sim: AsanaSimulator) -> None:
    field = sim.field_gid("Cost center")
    option = api.post(f"/custom_fields/{field}/enum_options", json={"data": {"name": "210 Prosjekt Nordlys"}}).json()["data"]
    renamed = api.put(f"/enum_options/{option['gid']}", json={"data": {"name": "210 Nordlys"}}).json()["data"]
    disabled = api.put(f"/enum_options/{option['gid']}", json={"data": {"enabled": False}}).json()["data"]
    assert (renamed["name"], disabled["enabled"]) == ("210 Nordlys", False)


def test_a_disabled_option_stays_on_its_tasks_but_cannot_be_set(api: httpx.Client, sim: AsanaSimulator) -> None:
    field, option = sim.field_gid("Review flag"), sim.option_gid("Review flag", "Disputed")
    task = new_task(api, sim, custom_fields={field: option})
    api.put(f"/enum_options/{option}", json={"data": {"enabled": False}})
    kept = api.get(f"/tasks/{task['gid']}").json()["data"]
    again = api.post("/tasks", json={"data": {"name": "y", "projects": [sim.project_gid("Purchase orders")],
                                              "custom_fields": {field: option}}})
    value = next(f for f in kept["custom_fields"] if f["gid"] == field)["enum_value"]
    assert (value["name"], value["enabled"]) == ("Disputed", False)
    assert again.status_code == 400 and "disabled" in message(again)


def test_enum_option_names_are_unique_within_a_field(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.post(f"/custom_fields/{sim.field_gid('Currency')}/enum_options", json={"data": {"name": "nok"}})
    assert response.status_code == 400


# -- project templates ----------------------------------------------------------------------------


def test_a_template_instantiates_as_a_job_whose_tasks_appear_when_it_succeeds(api: httpx.Client, sim: AsanaSimulator) -> None:
    job = api.post(f"/project_templates/{sim.template_gid()}/instantiateProject", json={"data": {
        "name": "PO 4711 Nordic Steel", "requested_dates": [{"gid": "1", "value": "2026-12-01"}]}}).json()["data"]
    project = job["new_project"]["gid"]
    before = api.get(f"/projects/{project}/tasks").json()["data"]
    sim.clock.advance(sim.instantiate_delay_s + 1)
    done = api.get(f"/jobs/{job['gid']}").json()["data"]
    after = api.get(f"/projects/{project}/tasks", params={"opt_fields": "name,due_on"}).json()["data"]
    assert (job["status"], before, done["status"]) == ("in_progress", [], "succeeded")
    assert after[0] == {"gid": after[0]["gid"], "name": "Confirm order with supplier", "due_on": "2026-12-01"}


# -- batch ----------------------------------------------------------------------------------------


def test_a_batch_answers_every_action_in_request_order_with_partial_failures(api: httpx.Client, sim: AsanaSimulator) -> None:
    project = sim.project_gid("Purchase orders")
    actions = [
        {"method": "post", "relative_path": "/tasks", "data": {"name": "A", "projects": [project]}},
        {"method": "post", "relative_path": "/tasks", "data": {"name": "B", "projects": [project],
                                                                "custom_fields": {sim.field_gid("Amount"): "x"}}},
        {"method": "get", "relative_path": "/tasks/1", "options": {"fields": ["name"]}},
    ]
    response = api.post("/batch", json={"data": {"actions": actions}})
    results = response.json()["data"]
    assert response.status_code == 200
    assert [r["status_code"] for r in results] == [201, 400, 404]
    assert results[0]["body"]["data"]["name"] == "A" and results[0]["headers"]["location"].startswith("/tasks/")


def test_a_batch_takes_at_most_ten_actions(api: httpx.Client) -> None:
    actions = [{"method": "get", "relative_path": "/users/me"}] * 11
    assert api.post("/batch", json={"data": {"actions": actions}}).status_code == 400


def test_batch_actions_run_in_an_order_shuffled_by_the_fault_seed(api: httpx.Client, sim: AsanaSimulator) -> None:
    def creation_order(seed: int) -> list[str]:
        sim.set_faults(FaultPlan(seed=seed))
        actions = [{"method": "post", "relative_path": "/tasks", "data": {"name": str(n),
                    "workspace": sim.tenant.workspace_gid}} for n in range(10)]
        results = api.post("/batch", json={"data": {"actions": actions}}).json()["data"]
        by_gid = sorted(results, key=lambda r: int(r["body"]["data"]["gid"]))
        return [r["body"]["data"]["name"] for r in by_gid]

    first, again = creation_order(11), creation_order(11)
    assert first == again and first != [str(n) for n in range(10)]


def test_an_injected_fault_fails_one_action_not_the_batch(api: httpx.Client, sim: AsanaSimulator) -> None:
    sim.set_faults(FaultPlan(seed=2, error_rate=0.5, paths=["^/tasks"]))
    actions = [{"method": "get", "relative_path": "/users/me"}] + [
        {"method": "get", "relative_path": f"/tasks/{gid}"} for gid in list(sim.tenant.tasks)[:3]] * 2
    response = api.post("/batch", json={"data": {"actions": actions}})
    statuses = [r["status_code"] for r in response.json()["data"]]
    assert response.status_code == 200 and statuses[0] == 200
    assert 500 in statuses and 200 in statuses[1:]


def test_a_server_error_carries_an_error_phrase(api: httpx.Client, sim: AsanaSimulator) -> None:
    sim.set_faults(FaultPlan(error_rate=1.0))
    response = api.get("/users/me")
    assert response.status_code == 503 and response.json()["errors"][0]["phrase"]


# -- rate limits ----------------------------------------------------------------------------------


def test_the_151st_request_of_a_minute_gets_429_with_retry_after(api: httpx.Client) -> None:
    statuses = [api.get("/users/me").status_code for _ in range(151)]
    refused = api.get("/users/me")
    assert statuses[:150] == [200] * 150 and statuses[150] == 429
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60


def test_refused_requests_still_count_against_the_minute(api: httpx.Client, sim: AsanaSimulator) -> None:
    for _ in range(150):
        api.get("/users/me")
    sim.clock.advance(30)
    for _ in range(150):
        api.get("/users/me")  # all refused, yet counted
    sim.clock.advance(31)  # the first 150 have left the window; the refused ones have not
    assert api.get("/users/me").status_code == 429


def test_every_batch_action_counts_against_the_minute(api: httpx.Client) -> None:
    actions = [{"method": "get", "relative_path": "/users/me"}] * 10
    for _ in range(13):
        api.post("/batch", json={"data": {"actions": actions}})  # 13 * (1 + 10) = 143
    results = api.post("/batch", json={"data": {"actions": actions}}).json()["data"]
    assert [r["status_code"] for r in results].count(429) == 4


def test_a_premium_workspace_allows_1500_requests_a_minute() -> None:
    premium = AsanaSimulator(premium=True)
    try:
        with InProcessTransport(premium.app) as transport, raw_api(transport, premium.credentials()["pat"]) as api:
            statuses = {api.get("/users/me").status_code for _ in range(200)}
    finally:
        premium.close()
    assert statuses == {200}


def test_more_than_15_concurrent_writes_get_429() -> None:
    slow = AsanaSimulator(service_time_s=0.3)
    statuses: list[int] = []
    lock = threading.Lock()
    try:
        with InProcessTransport(slow.app) as transport, raw_api(transport, slow.credentials()["pat"]) as api:

            def write(n: int) -> None:
                body = {"data": {"name": str(n), "workspace": slow.tenant.workspace_gid}}
                status = api.post("/tasks", json=body).status_code
                with lock:
                    statuses.append(status)

            threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        slow.close()
    assert statuses.count(201) == 15 and statuses.count(429) == 5


# -- search ---------------------------------------------------------------------------------------


def test_search_answers_402_on_a_free_workspace(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = api.get(f"/workspaces/{sim.tenant.workspace_gid}/tasks/search", params={"text": "PO"})
    assert response.status_code == 402 and "premium" in message(response)


def test_search_on_a_premium_workspace_lags_behind_writes() -> None:
    premium = AsanaSimulator(premium=True, index_delay_s=10)
    try:
        with InProcessTransport(premium.app) as transport, raw_api(transport, premium.credentials()["pat"]) as api:
            new_task(api, premium, "PO 777 Nordic Steel")
            path, query = f"/workspaces/{premium.tenant.workspace_gid}/tasks/search", {"text": "PO 777"}
            before = api.get(path, params=query).json()["data"]
            premium.clock.advance(11)
            after = api.get(path, params=query).json()["data"]
    finally:
        premium.close()
    assert before == [] and [t["name"] for t in after] == ["PO 777 Nordic Steel"]


# -- webhooks -------------------------------------------------------------------------------------


def webhook_sim(transport: httpx.BaseTransport, **settings: Any) -> AsanaSimulator:
    return AsanaSimulator(seed=5, webhook_transport=transport, **settings)


def register(api: httpx.Client, resource: str, target: str) -> httpx.Response:
    return api.post("/webhooks", json={"data": {"resource": resource, "target": target}})


def test_a_webhook_exists_once_the_receiver_echoed_the_handshake(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = webhook_sim(hooks.transport)
        try:
            hook = expect_handshake(hooks.ledger)
            with InProcessTransport(sim.app) as transport, raw_api(transport, sim.credentials()["pat"]) as api:
                response = register(api, sim.project_gid("Purchase orders"), target_url(RECEIVER_URL, hook))
        finally:
            sim.close()
        assert response.status_code == 201
        assert response.json()["X-Hook-Secret"] == hooks.vault.get(secret_name(hook))


def test_registration_fails_when_the_target_does_not_echo_the_secret() -> None:
    mute = httpx.MockTransport(lambda request: httpx.Response(200))
    sim = webhook_sim(mute)
    try:
        with InProcessTransport(sim.app) as transport, raw_api(transport, sim.credentials()["pat"]) as api:
            response = register(api, sim.project_gid("Purchase orders"), "https://hooks.example.test/asana")
            listed = api.get("/webhooks", params={"workspace": sim.tenant.workspace_gid}).json()["data"]
    finally:
        sim.close()
    assert response.status_code == 400 and "handshake" in message(response)
    assert listed == []


def test_a_localhost_target_is_refused_with_403(api: httpx.Client, sim: AsanaSimulator) -> None:
    response = register(api, sim.project_gid("Purchase orders"), "http://localhost:8800/webhooks/asana")
    assert response.status_code == 403


class Recorder:
    """A webhook target that echoes handshakes and records events, answering queued statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.events: list[httpx.Request] = []
        self.statuses = list(statuses or [])
        self.secret = ""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if "x-hook-secret" in request.headers:
            self.secret = request.headers["x-hook-secret"]
            return httpx.Response(204, headers={"X-Hook-Secret": self.secret})
        self.events.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)


@contextmanager
def hooked(recorder: Recorder, **settings: Any) -> Iterator[tuple[AsanaSimulator, httpx.Client]]:
    """A simulator with a webhook on "Purchase orders" to ``recorder``, and a client of it."""
    sim = webhook_sim(httpx.MockTransport(recorder), **settings)
    try:
        with InProcessTransport(sim.app) as transport, raw_api(transport, sim.credentials()["pat"]) as api:
            target = "https://hooks.example.test/asana?hook=x"
            assert register(api, sim.project_gid("Purchase orders"), target).status_code == 201
            yield sim, api
    finally:
        sim.close()


def test_events_are_signed_with_the_handshake_secret() -> None:
    recorder = Recorder()
    with hooked(recorder) as (sim, api):
        task = new_task(api, sim)
        sim.edit_task(task["gid"], completed=True)
        assert sim.flush_webhooks()
    bodies = [json.loads(r.content) for r in recorder.events]
    assert all(r.headers["x-hook-signature"] == sign(r.content, recorder.secret) for r in recorder.events)
    assert [e["action"] for body in bodies for e in body["events"]] == ["added", "changed"]
    assert bodies[1]["events"][0]["change"]["field"] == "completed"


def test_a_signed_delivery_is_accepted_by_the_connectors_receiver(tmp_path: Path) -> None:
    with receiver(tmp_path) as hooks:
        sim = webhook_sim(hooks.transport)
        try:
            with InProcessTransport(sim.app) as transport, raw_api(transport, sim.credentials()["pat"]) as api:
                assert register(api, sim.project_gid("Purchase orders"),
                                target_url(RECEIVER_URL, expect_handshake(hooks.ledger))).status_code == 201
                task = new_task(api, sim)
                sim.comment(task["gid"], "Godkjent av Lars")
                assert sim.flush_webhooks()
        finally:
            sim.close()
        assert [e.record_ref for e in hooks.inbox()] == [{"entity": "tasks", "id": task["gid"]}] * 2


def test_a_failing_target_is_retried_for_24_hours_then_the_webhook_is_deleted() -> None:
    recorder = Recorder(statuses=[500] * 100)
    with hooked(recorder, time_scale=1e-7) as (sim, api):
        new_task(api, sim)
        assert sim.flush_webhooks()
        remaining = api.get("/webhooks", params={"workspace": sim.tenant.workspace_gid}).json()["data"]
    outcomes = [d["outcome"] for d in sim.deliveries if d["event_id"] != "handshake"]
    assert outcomes[-1] == "gave_up" and outcomes.count("retrying") == len(recorder.events) - 1 > 20
    assert remaining == []


def test_a_delivered_event_is_never_sent_again() -> None:
    recorder = Recorder()
    with hooked(recorder) as (sim, api):
        new_task(api, sim)
        assert sim.flush_webhooks()
        sim.clock.advance(86400)
        assert sim.flush_webhooks()
    assert len(recorder.events) == 1


def test_a_heartbeat_is_an_empty_event_list() -> None:
    recorder = Recorder()
    with hooked(recorder) as (sim, api):
        sim.send_heartbeats()
        assert sim.flush_webhooks()
    assert [json.loads(r.content) for r in recorder.events] == [{"events": []}]


# -- persistence ----------------------------------------------------------------------------------


def test_a_restored_organisation_shows_the_same_state_and_numbers_on(api: httpx.Client, sim: AsanaSimulator,
                                                                    tmp_path: Path) -> None:
    new_task(api, sim)
    sim.save_state(tmp_path / "asana.state")
    restored = AsanaSimulator(seed=5)
    try:
        assert restored.restore_state(tmp_path / "asana.state")
        with InProcessTransport(restored.app) as transport, raw_api(transport, restored.credentials()["pat"]) as again:
            state = again.get(f"{IN_PROCESS_URL}/_sandbox/state").json()
            newer = new_task(again, restored, "PO 2")
        assert state == api.get(f"{IN_PROCESS_URL}/_sandbox/state").json()
        assert int(newer["gid"]) > max(int(t["gid"]) for t in state["tasks"])
    finally:
        restored.close()
