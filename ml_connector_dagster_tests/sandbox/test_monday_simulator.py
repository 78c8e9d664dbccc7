"""The monday.com simulator speaks monday's GraphQL API, over the wire, and is never more forgiving."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ml_connector_dagster.sandbox.monday import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    GL_BOARD,
    INVOICE_BOARD,
    PO_BOARD,
    MondaySimulator,
    sandbox_credentials,
)
from ml_connector_dagster.sandbox.registry import simulator_class
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster_tests.monday_sandbox import IN_PROCESS_URL, VerifyingReceiver, post, raw_api

CREATE = """mutation ($board: ID!, $name: String!, $values: JSON, $labels: Boolean) {
  created: create_item(board_id: $board, item_name: $name, column_values: $values, create_labels_if_missing: $labels) {
    id name column_values { id text value }
  }
}"""
ITEMS_PAGE = """query ($board: ID!, $limit: Int!, $query: ItemsQuery) {
  boards(ids: [$board]) { items_page(limit: $limit, query_params: $query) { cursor items { id name } } }
}"""
NEXT_PAGE = "query ($cursor: String!, $limit: Int!) { next_items_page(cursor: $cursor, limit: $limit) { cursor items { id } } }"


@pytest.fixture
def sim() -> Iterator[MondaySimulator]:
    simulator = MondaySimulator()
    yield simulator
    simulator.close()


def create(client: Any, values: dict[str, Any], *, board: int = INVOICE_BOARD, name: str = "Invoice 1",
           labels: bool = False) -> dict[str, Any]:  # fmt: skip
    response = post(client, CREATE, {"board": str(board), "name": name, "values": json.dumps(values), "labels": labels})
    assert response.status_code == 200
    return response.json()


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# -- auth and versions ---------------------------------------------------------------------------


def test_the_raw_personal_token_authenticates(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        response = post(api, "{ me { id name } }")
    assert response.status_code == 200
    assert response.json()["data"]["me"]["name"] == "Ingrid Solberg"


def test_a_bearer_prefixed_token_is_refused_with_401(sim: MondaySimulator) -> None:
    with raw_api(sim, token=f"Bearer {sim.api_token}") as api:
        response = post(api, "{ me { id } }")
    assert response.status_code == 401
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]


def test_a_missing_token_is_refused_with_401(sim: MondaySimulator) -> None:
    with raw_api(sim, token="") as api:
        assert post(api, "{ me { id } }").status_code == 401


@pytest.fixture
def oauth_http(sim: MondaySimulator) -> Iterator[httpx.Client]:
    """A browser and an app server in one: talks to auth.monday.com's paths on the simulator."""
    transport = InProcessTransport(sim.app)
    with httpx.Client(transport=transport, base_url=IN_PROCESS_URL) as client:
        yield client
    transport.close()


def authorize(http: httpx.Client, **params: str) -> httpx.Response:
    query = {"client_id": DEMO_CLIENT_ID, "redirect_uri": DEMO_REDIRECT_URI, "state": "s-1", **params}
    return http.get("/oauth2/authorize", params={k: v for k, v in query.items() if v})


def code_of(redirect: httpx.Response) -> str:
    assert redirect.status_code == 302, redirect.text
    return parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]


def trade(http: httpx.Client, code: str, **fields: str) -> httpx.Response:
    body = {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, "code": code,
            "redirect_uri": DEMO_REDIRECT_URI, **fields}
    return http.post("/oauth2/token", data=body)


def test_authorize_redirects_to_the_app_with_a_code_and_the_state(oauth_http: httpx.Client) -> None:
    redirect = authorize(oauth_http, scope="me:read boards:read")
    target = urlsplit(redirect.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == DEMO_REDIRECT_URI
    assert parse_qs(target.query)["state"] == ["s-1"] and code_of(redirect)


def test_authorize_sends_no_code_to_a_redirect_uri_the_app_does_not_have(oauth_http: httpx.Client) -> None:
    response = authorize(oauth_http, redirect_uri="https://evil.example/cb")
    assert response.status_code == 400 and "location" not in response.headers


def test_authorize_refuses_an_unknown_client_without_redirecting(oauth_http: httpx.Client) -> None:
    response = authorize(oauth_http, client_id="someone-elses-app")
    assert response.status_code == 400 and "location" not in response.headers


def test_authorize_answers_an_unknown_scope_with_an_error_redirect(oauth_http: httpx.Client) -> None:
    redirect = authorize(oauth_http, scope="boards:read boards:delete_everything")
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert query["error"] == ["invalid_scope"] and query["state"] == ["s-1"] and "code" not in query


def test_the_code_buys_a_never_expiring_token_and_no_refresh_token(
    sim: MondaySimulator, oauth_http: httpx.Client
) -> None:
    answer = trade(oauth_http, code_of(authorize(oauth_http, scope="me:read boards:read")))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "scope"}
    assert body["token_type"] == "Bearer" and body["scope"] == "me:read boards:read"
    sim.clock.advance(400 * 86400)
    with raw_api(sim, token=body["access_token"]) as api:  # raw in Authorization, like a personal token
        assert post(api, "{ me { id } }").json()["data"]["me"]["id"] == str(sim.user_id)


def test_a_code_is_good_for_one_trade(oauth_http: httpx.Client) -> None:
    code = code_of(authorize(oauth_http))
    assert trade(oauth_http, code).status_code == 200
    again = trade(oauth_http, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_an_unknown_code_is_an_invalid_grant(oauth_http: httpx.Client) -> None:
    response = trade(oauth_http, "made-up")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def oauth_token(oauth_http: httpx.Client, scope: str) -> str:
    return trade(oauth_http, code_of(authorize(oauth_http, scope=scope))).json()["access_token"]


def test_a_field_outside_the_granted_scopes_is_refused_and_the_rest_answered(
    sim: MondaySimulator, oauth_http: httpx.Client
) -> None:
    with raw_api(sim, token=oauth_token(oauth_http, "me:read")) as api:
        response = post(api, f"{{ me {{ id }} boards(ids: [{INVOICE_BOARD}]) {{ id }} }}")
    assert response.status_code == 200  # an application-level error, like every monday error but transport
    body = response.json()
    assert body["data"]["me"]["id"] == str(sim.user_id) and body["data"]["boards"] is None
    [error] = body["errors"]
    assert error["message"] == "User unauthorized to perform action" and error["path"] == ["boards"]
    assert error["extensions"]["code"] == "UserUnauthorizedException"
    assert error["extensions"]["status_code"] == 403


def test_a_write_with_a_read_only_grant_changes_nothing(sim: MondaySimulator, oauth_http: httpx.Client) -> None:
    before = len(sim.items_on(INVOICE_BOARD))
    with raw_api(sim, token=oauth_token(oauth_http, "boards:read")) as api:
        body = create(api, {})
    assert body["data"]["created"] is None
    assert error_codes(body) == ["UserUnauthorizedException"]
    assert len(sim.items_on(INVOICE_BOARD)) == before


def test_the_connectors_scopes_cover_every_field_it_asks_for(sim: MondaySimulator, oauth_http: httpx.Client) -> None:
    from ml_connector_dagster.systems.monday.consent import SCOPES

    with raw_api(sim, token=oauth_token(oauth_http, " ".join(SCOPES))) as api:
        body = create(api, {})
        reads = post(api, f"{{ me {{ id }} users {{ id }} workspaces {{ id }} webhooks(board_id: {INVOICE_BOARD}) {{ id }} }}")
    assert body["data"]["created"]["id"] and "errors" not in body
    assert "errors" not in reads.json(), reads.json()


def test_a_personal_token_acts_with_its_users_full_rights(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        body = post(api, f"{{ account {{ id }} webhooks(board_id: {INVOICE_BOARD}) {{ id }} }}").json()
    assert not error_codes(body)


def test_an_expired_code_is_an_invalid_grant(sim: MondaySimulator, oauth_http: httpx.Client) -> None:
    code = code_of(authorize(oauth_http))
    sim.clock.advance(601)
    assert trade(oauth_http, code).json()["error"] == "invalid_grant"


def test_a_code_traded_with_another_redirect_uri_is_an_invalid_grant(oauth_http: httpx.Client) -> None:
    response = trade(oauth_http, code_of(authorize(oauth_http)), redirect_uri="http://127.0.0.1:9/other")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_an_invalid_client(oauth_http: httpx.Client) -> None:
    response = trade(oauth_http, code_of(authorize(oauth_http)), client_secret="not-it")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "Client authentication failed"}


def test_the_token_endpoint_also_takes_a_json_body(oauth_http: httpx.Client) -> None:
    body = {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
            "code": code_of(authorize(oauth_http)), "redirect_uri": DEMO_REDIRECT_URI}
    assert oauth_http.post("/oauth2/token", json=body).status_code == 200


def test_an_omitted_api_version_is_answered_in_the_current_one(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        assert post(api, "{ version { value kind } }").json()["data"]["version"] == {"value": "2026-10", "kind": "current"}


def test_the_older_api_version_is_accepted_and_validated_against_its_own_sdl(sim: MondaySimulator) -> None:
    query = "{ items(ids: [1880100001]) { column_values { id is_leaf } } }"  # is_leaf is new in 2026-10
    with raw_api(sim, version="2026-01") as old, raw_api(sim, version="2026-10") as new:
        refused, accepted = post(old, query).json(), post(new, query).json()
    assert error_codes(refused) == ["undefinedField"]
    assert accepted["data"]["items"][0]["column_values"][0]["is_leaf"] is True


def test_an_unknown_api_version_is_an_error(sim: MondaySimulator) -> None:
    with raw_api(sim, version="2031-04") as api:
        response = post(api, "{ me { id } }")
    assert response.status_code == 400
    assert error_codes(response.json()) == ["InvalidVersionException"]


# -- the SDL -------------------------------------------------------------------------------------


def test_an_unknown_field_is_refused_by_the_sdl_with_http_200_and_no_data(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        response = post(api, "{ boards { id invoice_total } }")
    body = response.json()
    assert response.status_code == 200
    assert "data" not in body
    assert body["errors"][0]["message"] == "Field 'invoice_total' doesn't exist on type 'Board'"
    assert body["errors"][0]["extensions"]["code"] == "undefinedField"


def test_an_unknown_argument_is_refused(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        body = post(api, "{ boards(name: \"x\") { id } }").json()
    assert error_codes(body) == ["argumentNotAccepted"]


def test_a_syntax_error_is_a_parse_error_in_http_200(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        response = post(api, "{ boards { id ")
    assert response.status_code == 200
    assert response.json()["errors"][0]["message"].startswith("Parse error")


# -- the demo workspace --------------------------------------------------------------------------


def test_the_procurement_board_has_the_columns_its_users_configured(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        board = post(api, f"{{ boards(ids: [{INVOICE_BOARD}]) {{ name columns {{ title type settings }} }} }}").json()["data"]["boards"][0]
    titles = {column["title"]: column for column in board["columns"]}
    assert board["name"] == "Procurement — supplier invoices"
    assert {"Invoice #", "Supplier", "Total", "Currency", "Due date", "Status", "Visma ID", "PO"} <= titles.keys()
    assert list(titles["Status"]["settings"]["labels"].values()) == ["Received", "Approved", "Paid"]


def test_newer_boards_have_auto_generated_column_ids(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        columns = post(api, f"{{ boards(ids: [{PO_BOARD}]) {{ columns {{ id title }} }} }}").json()["data"]["boards"][0]["columns"]
    supplier = next(c for c in columns if c["title"] == "Supplier")
    assert supplier["id"].startswith("text_mkq1")


def test_the_reference_boards_start_empty(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        board = post(api, f"{{ boards(ids: [{GL_BOARD}]) {{ name items_count }} }}").json()["data"]["boards"][0]
    assert board == {"name": "GL accounts", "items_count": 0}


def test_sandbox_credentials_are_what_a_fresh_simulator_answers(sim: MondaySimulator) -> None:
    assert sandbox_credentials(0) == sim.credentials()
    assert simulator_class("monday") is MondaySimulator


# -- column values -------------------------------------------------------------------------------


def test_create_item_stores_each_typed_column_value(sim: MondaySimulator) -> None:
    values = {
        "text": "INV-7001", "numbers": "1234.50", "date4": {"date": "2026-12-01"}, "status": {"label": "Received"},
        "person": {"personsAndTeams": [{"id": 58211411, "kind": "person"}]}, "dropdown": {"labels": ["EUR"]},
        "link": {"url": "https://files.example/inv.pdf", "text": "PDF"},
    }  # fmt: skip
    with raw_api(sim) as api:
        created = create(api, values)["data"]["created"]
    shown = {value["id"]: value["text"] for value in created["column_values"]}
    assert {k: shown[k] for k in values} == {
        "text": "INV-7001", "numbers": "1234.50", "date4": "2026-12-01", "status": "Received",
        "person": "Lars Haugen", "dropdown": "EUR", "link": "PDF - https://files.example/inv.pdf",
    }  # fmt: skip


def test_an_unknown_status_label_is_a_column_value_exception(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        body = create(api, {"status": {"label": "Booked"}})
    assert body["data"]["created"] is None
    assert body["errors"][0]["path"] == ["created"]
    assert body["errors"][0]["extensions"]["code"] == "ColumnValueException"
    assert "possible statuses are: {0: Received, 1: Approved, 2: Paid}" in body["errors"][0]["message"]


def test_create_labels_if_missing_adds_the_status_label(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        created = create(api, {"status": {"label": "On hold"}}, labels=True)["data"]["created"]
    assert next(v for v in created["column_values"] if v["id"] == "status")["text"] == "On hold"


def test_a_bad_date_is_a_column_value_exception(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        body = create(api, {"date4": {"date": "2026-02-30"}})
    assert error_codes(body) == ["ColumnValueException"]
    assert body["errors"][0]["extensions"]["error_data"]["column_type"] == "DateColumn"


def test_a_number_sent_as_a_json_number_is_refused(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        assert error_codes(create(api, {"numbers": 1234.5})) == ["ColumnValueException"]


def test_an_unknown_column_id_is_refused(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        assert error_codes(create(api, {"total_amount": "1"})) == ["InvalidColumnIdException"]


def test_an_unknown_board_is_an_invalid_board_id_exception(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        assert error_codes(create(api, {}, board=42)) == ["InvalidBoardIdException"]


def test_one_failing_alias_leaves_the_other_aliases_applied(sim: MondaySimulator) -> None:
    query = f"""mutation {{
      good: create_item(board_id: {INVOICE_BOARD}, item_name: "Good", column_values: "{{\\"text7\\": \\"V-1\\"}}") {{ id }}
      bad: create_item(board_id: {INVOICE_BOARD}, item_name: "Bad", column_values: "{{\\"status\\": \\"Nope\\"}}") {{ id }}
    }}"""
    with raw_api(sim) as api:
        body = post(api, query).json()
    assert body["data"]["good"]["id"] and body["data"]["bad"] is None
    assert [error["path"] for error in body["errors"]] == [["bad"]]
    assert [item["name"] for item in sim.items_on(INVOICE_BOARD)][-1] == "Good"


def test_a_board_holds_at_most_10000_items(sim: MondaySimulator) -> None:
    sim.add_items(GL_BOARD, 10_000)
    with raw_api(sim) as api:
        body = create(api, {}, board=GL_BOARD)
    assert error_codes(body) == ["ItemsLimitationException"]


# -- pages -----------------------------------------------------------------------------------------


def test_items_page_and_next_items_page_list_every_item_once(sim: MondaySimulator) -> None:
    sim.add_items(GL_BOARD, 1_203)
    seen: list[str] = []
    with raw_api(sim) as api:
        page = post(api, ITEMS_PAGE, {"board": str(GL_BOARD), "limit": 500}).json()["data"]["boards"][0]["items_page"]
        seen += [item["id"] for item in page["items"]]
        while page["cursor"]:
            page = post(api, NEXT_PAGE, {"cursor": page["cursor"], "limit": 500}).json()["data"]["next_items_page"]
            seen += [item["id"] for item in page["items"]]
    assert len(seen) == len(set(seen)) == 1_203


def test_a_page_larger_than_500_is_refused(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        body = post(api, ITEMS_PAGE, {"board": str(INVOICE_BOARD), "limit": 501}).json()
    assert error_codes(body) == ["InvalidArgumentException"]


def test_a_cursor_expires_after_60_minutes(sim: MondaySimulator) -> None:
    sim.add_items(GL_BOARD, 3)
    with raw_api(sim) as api:
        cursor = post(api, ITEMS_PAGE, {"board": str(GL_BOARD), "limit": 1}).json()["data"]["boards"][0]["items_page"]["cursor"]
        sim.clock.advance(3_601)
        body = post(api, NEXT_PAGE, {"cursor": cursor, "limit": 1}).json()
    assert error_codes(body) == ["CursorExpiredError"]


def test_items_page_by_column_values_finds_any_of_the_values(sim: MondaySimulator) -> None:
    query = """query ($board: ID!) { items_page_by_column_values(board_id: $board, limit: 50,
      columns: [{column_id: "text7", column_values: ["600000", "600001", "nope"]}]) { cursor items { name } } }"""
    with raw_api(sim) as api:
        page = post(api, query, {"board": str(INVOICE_BOARD)}).json()["data"]["items_page_by_column_values"]
    assert len(page["items"]) == 2 and page["cursor"] is None


def test_items_page_filters_on_a_status_label(sim: MondaySimulator) -> None:
    rules = {"rules": [{"column_id": "status", "compare_value": ["Received"], "operator": "any_of"}]}
    with raw_api(sim) as api:
        items = post(api, ITEMS_PAGE, {"board": str(INVOICE_BOARD), "limit": 50, "query": rules}).json()["data"]["boards"][0]["items_page"]["items"]
    expected = [i["name"] for i in sim.items_on(INVOICE_BOARD)
                if next(v for v in i["column_values"] if v["id"] == "status")["text"] == "Received"]  # fmt: skip
    assert [i["name"] for i in items] == expected and expected


# -- complexity and rate limits --------------------------------------------------------------------


def test_complexity_reports_the_budget_before_and_after_the_query(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        complexity = post(api, "{ complexity { before after query reset_in_x_seconds } me { id } }").json()["data"]["complexity"]
    assert complexity["before"] == 10_000_000
    assert complexity["after"] == complexity["before"] - complexity["query"]


def test_a_query_over_5m_points_is_refused(sim: MondaySimulator) -> None:
    query = "{ boards(limit: 1000) { items_page(limit: 500) { items { id column_values { id text value } } } } }"
    with raw_api(sim) as api:
        body = post(api, query).json()
    assert error_codes(body) == ["maxComplexityExceeded"]


def test_an_exhausted_budget_refuses_the_whole_request_in_http_200_with_retry_in_seconds() -> None:
    sim = MondaySimulator(complexity_per_minute=15_000)
    try:
        with raw_api(sim) as api:
            create(api, {"text7": "first"})
            response = post(api, CREATE, {"board": str(INVOICE_BOARD), "name": "second", "values": "{}"})
            sim.clock.advance(60)
            after_reset = create(api, {}, name="third")
    finally:
        sim.close()
    body = response.json()
    assert response.status_code == 200
    assert body["errors"][0]["extensions"]["code"] == "COMPLEXITY_BUDGET_EXHAUSTED"
    assert 0 < body["errors"][0]["extensions"]["retry_in_seconds"] <= 60
    assert "second" not in [item["name"] for item in sim.items_on(INVOICE_BOARD)]
    assert after_reset["data"]["created"]["name"] == "third"


def test_more_requests_a_minute_than_allowed_answer_429_with_retry_after() -> None:
    sim = MondaySimulator(requests_per_minute=2)
    try:
        with raw_api(sim) as api:
            statuses = [post(api, "{ me { id } }") for _ in range(3)]
    finally:
        sim.close()
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) > 0
    assert error_codes(statuses[2].json()) == ["RATE_LIMIT_EXCEEDED"]


def test_more_concurrent_requests_than_allowed_answer_429() -> None:
    sim = MondaySimulator(max_concurrency=1, mutation_hold_s=0.3)
    try:
        with raw_api(sim) as first, raw_api(sim) as second:
            writer = threading.Thread(target=create, args=(first, {}))
            writer.start()
            _wait_until(lambda: sim.board_busy(INVOICE_BOARD))
            response = post(second, "{ me { id } }")
            writer.join()
    finally:
        sim.close()
    assert response.status_code == 429
    assert error_codes(response.json()) == ["maxConcurrencyExceeded"]


def test_a_second_mutation_on_a_board_being_written_gets_resource_locked() -> None:
    sim = MondaySimulator(mutation_hold_s=0.3)
    try:
        with raw_api(sim) as first, raw_api(sim) as second:
            writer = threading.Thread(target=create, args=(first, {}), kwargs={"name": "first"})
            writer.start()
            _wait_until(lambda: sim.board_busy(INVOICE_BOARD))
            same_board = create(second, {}, name="second")
            other_board = create(second, {}, board=GL_BOARD, name="elsewhere")
            writer.join()
    finally:
        sim.close()
    assert error_codes(same_board) == ["RESOURCE_LOCKED"]
    assert other_board["data"]["created"]["name"] == "elsewhere"


def _wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# -- webhooks --------------------------------------------------------------------------------------

CREATE_WEBHOOK = """mutation ($board: ID!, $url: String!, $event: WebhookEventType!, $config: JSON) {
  create_webhook(board_id: $board, url: $url, event: $event, config: $config) { id board_id event }
}"""
HOOK_URL = "https://connector.example/webhooks/monday"


def webhook_sim(receiver_factory: Any, **settings: Any) -> tuple[MondaySimulator, VerifyingReceiver]:
    holder: dict[str, MondaySimulator] = {}
    receiver = receiver_factory(lambda: holder["sim"].now())
    settings.setdefault("time_scale", 0.001)
    sim = MondaySimulator(webhook_transport=receiver.transport, **settings)
    holder["sim"] = sim
    return sim, receiver


def test_registering_a_webhook_sends_a_challenge_the_url_must_echo() -> None:
    sim, receiver = webhook_sim(lambda clock: VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", clock))
    try:
        with raw_api(sim) as api:
            body = post(api, CREATE_WEBHOOK, {"board": str(INVOICE_BOARD), "url": HOOK_URL, "event": "change_column_value"}).json()
    finally:
        sim.close()
    assert body["data"]["create_webhook"]["event"] == "change_column_value"
    assert len(receiver.challenges) == 1


def test_a_url_that_does_not_echo_the_challenge_is_not_registered() -> None:
    sim, _ = webhook_sim(lambda clock: VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", clock, echo=False))
    try:
        with raw_api(sim) as api:
            body = post(api, CREATE_WEBHOOK, {"board": str(INVOICE_BOARD), "url": HOOK_URL, "event": "create_item"}).json()
        state = sim.collections()["webhooks"]
    finally:
        sim.close()
    assert body["data"]["create_webhook"] is None and error_codes(body) == ["InvalidUrlException"]
    assert state == []


def test_a_user_marking_an_item_received_sends_an_event_with_a_jwt_the_receiver_verifies() -> None:
    sim, receiver = webhook_sim(lambda clock: VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", clock))
    try:
        with raw_api(sim) as api:
            post(api, CREATE_WEBHOOK, {"board": str(INVOICE_BOARD), "url": HOOK_URL, "event": "change_status_column_value",
                                       "config": json.dumps({"columnId": "status"})})  # fmt: skip
        sim.mark_received(1_880_100_001)
        assert sim.flush_webhooks()
    finally:
        sim.close()
    assert receiver.rejected == []
    [event] = receiver.events
    assert (event["pulseId"], event["columnId"], event["value"]["label"]["text"]) == (1_880_100_001, "status", "Received")


def test_an_event_signed_with_another_secret_is_rejected_by_the_receiver() -> None:
    sim, receiver = webhook_sim(lambda clock: VerifyingReceiver("the-connectors-idea-of-the-secret", clock),
                                signing_secret="a-different-signing-secret-0123456789", time_scale=0.00005)  # fmt: skip
    try:
        with raw_api(sim) as api:
            post(api, CREATE_WEBHOOK, {"board": str(INVOICE_BOARD), "url": HOOK_URL, "event": "create_item"})
            create(api, {})
        sim.flush_webhooks(timeout_s=5)
    finally:
        sim.close()
    assert receiver.events == [] and "bad_signature" in receiver.rejected


def test_a_failed_delivery_is_retried_every_minute_scaled_by_time_scale() -> None:
    sim, receiver = webhook_sim(lambda clock: VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", clock))
    try:
        with raw_api(sim) as api:
            post(api, CREATE_WEBHOOK, {"board": str(INVOICE_BOARD), "url": HOOK_URL, "event": "create_item"})
            receiver.fail_next = 2
            create(api, {}, name="Retried")
        assert sim.flush_webhooks()
        outcomes = [d["outcome"] for d in sim.deliveries]
    finally:
        sim.close()
    assert outcomes == ["retrying", "retrying", "delivered"]
    assert [event["pulseName"] for event in receiver.events] == ["Retried"]


# -- state and persistence -------------------------------------------------------------------------


def test_recorded_requests_never_show_the_token(sim: MondaySimulator) -> None:
    with raw_api(sim) as api:
        post(api, "{ me { id } }")
        recorded = api.get("/_sandbox/requests").text
    assert sim.api_token not in recorded


def test_a_restored_account_keeps_its_items_and_webhooks(tmp_path: Path) -> None:
    sim, _ = webhook_sim(lambda clock: VerifyingReceiver("sandbox-monday-signing-secret-not-for-production", clock))
    restored = MondaySimulator()
    try:
        with raw_api(sim) as api:
            post(api, CREATE_WEBHOOK, {"board": str(INVOICE_BOARD), "url": HOOK_URL, "event": "create_item"})
            created = create(api, {"text7": "V-42"}, name="Kept")["data"]["created"]
        sim.save_state(tmp_path / "monday.state")
        assert restored.restore_state(tmp_path / "monday.state")
        assert restored.item(created["id"])["name"] == "Kept"
        assert [hook["url"] for hook in restored.collections()["webhooks"]] == [HOOK_URL]
    finally:
        sim.close()
        restored.close()
