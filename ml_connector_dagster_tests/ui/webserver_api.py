"""The few questions the browser test asks the Dagster webserver's GraphQL API directly.

The browser shows what an operator sees; these answers say when there is something to see (a run
finished, a backfill completed) and pin down what a picture cannot (edges, cursors).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

REPOSITORY = {"repositoryLocationName": "ml_connector", "repositoryName": "__repository__"}


def graphql(ui_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST one query; its ``data``, or an AssertionError naming the GraphQL errors."""
    response = httpx.post(f"{ui_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body.get("errors") or response.text
    return body["data"]


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 1.0) -> T:
    """Call ``probe`` until it answers something truthy; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(every_s)


def mark_welcome_seen(ui_url: str) -> None:
    """Dismiss the "Join the Dagster community" dialog the UI opens on loopback, for every browser."""
    graphql(ui_url, "mutation { setNuxSeen }")


def sensor_runs(ui_url: str, sensor: str) -> list[dict[str, Any]]:
    """The runs ``sensor`` requested, newest first: id, status and partition tag."""
    data = graphql(ui_url, """
        query ($sensor: String!) {
          runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: $sensor}]}) {
            ... on Runs { results { runId status tags { key value } } }
          }
        }""", {"sensor": sensor})  # fmt: skip
    return data["runsOrError"]["results"]


def active_runs(ui_url: str) -> list[str]:
    """Ids of the runs queued or in progress."""
    data = graphql(ui_url, """
        { runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
            ... on Runs { results { runId } } } }""")  # fmt: skip
    return [run["runId"] for run in data["runsOrError"]["results"]]


def backfill(ui_url: str, backfill_id: str) -> dict[str, Any]:
    """The backfill's status, partition names and runs."""
    data = graphql(ui_url, """
        query ($id: String!) {
          partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { status partitionNames runs(limit: 50) { runId status } }
          }
        }""", {"id": backfill_id})  # fmt: skip
    return data["partitionBackfillOrError"]


def sensor_cursors(ui_url: str) -> dict[str, str | None]:
    """Every sensor of the code location with its last stored cursor."""
    data = graphql(ui_url, """
        query ($repository: RepositorySelector!) {
          repositoryOrError(repositorySelector: $repository) {
            ... on Repository {
              sensors { name sensorState { typeSpecificData { ... on SensorData { lastCursor } } } }
            }
          }
        }""", {"repository": REPOSITORY})  # fmt: skip
    return {sensor["name"]: (sensor["sensorState"]["typeSpecificData"] or {}).get("lastCursor")
            for sensor in data["repositoryOrError"]["sensors"]}  # fmt: skip


def upstream_keys(ui_url: str) -> dict[str, set[str]]:
    """Asset key -> the keys it depends on, as the webserver resolved the code location."""
    data = graphql(ui_url, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    return {"/".join(node["assetKey"]["path"]): {"/".join(key["path"]) for key in node["dependencyKeys"]}
            for node in data["assetNodes"]}  # fmt: skip
