"""``ml-connector map monday --board <id>``, driven through click's CliRunner with typed answers.

The board is the simulator's, served on 127.0.0.1; connector.yaml is a temporary copy that the
wizard edits in place (comments and all other settings kept) — except the shipped sandbox default,
which it never writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ml_connector_dagster.cli import main
from ml_connector_dagster.config import SANDBOX_CONFIG_PATH, active_config, load_config
from ml_connector_dagster.flows.visma_monday_mapping import resolve_mapping
from ml_connector_dagster.flows.visma_monday_wizard import run_map_wizard
from ml_connector_dagster.sandbox.monday import INVOICE_BOARD, PO_BOARD, MondaySimulator
from ml_connector_dagster.sandbox.serve import served
from ml_connector_dagster_tests.monday_sandbox import monday_client

CONFIG = """\
# Fjordlys' connector: hand-written, comments matter
systems:
  monday:
    mode: real
    base_url: {url}
    rate_per_s: 100   # plenty for a wizard
flows:
  visma_monday:
    boards:
      purchase_orders:
        board_id: "{board}"
        mode: position    # the old way
        group_id: topics
    received_label: Received
"""


@pytest.fixture
def sim() -> Iterator[MondaySimulator]:
    simulator = MondaySimulator()
    try:
        yield simulator
    finally:
        simulator.close()


@pytest.fixture
def config(sim: MondaySimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with served(sim) as server:
        path = tmp_path / "connector.yaml"
        path.write_text(CONFIG.format(url=server.base_url, board=PO_BOARD))
        monkeypatch.setenv("ML_CONNECTOR_CONFIG", str(path))
        monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("MONDAY_API_TOKEN", sim.api_token)
        active_config.cache_clear()
        yield path
    active_config.cache_clear()


def wizard(*answers: str, board: int = PO_BOARD) -> Any:
    return CliRunner().invoke(main, ["map", "monday", "--board", str(board)], input="".join(f"{a}\n" for a in answers))


def board_settings(path: Path, entity: str = "purchase_orders") -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["flows"]["visma_monday"]["boards"][entity]


def test_accepting_every_proposal_writes_a_mapping_table_and_keeps_the_rest_of_the_file(config: Path,
                                                                                       sim: MondaySimulator) -> None:
    # entity (configured: purchase_orders), received column (Status), six fields, then "write it?"
    result = wizard("", "", "", "", "", "", "", "", "y")
    assert result.exit_code == 0, result.output
    written = board_settings(config)
    columns = {c.title: c.id for c in sim.tenant.boards[PO_BOARD].columns}
    assert written["mode"] == "table" and written["group_id"] == "topics"
    assert written["table"] == {"Supplier": columns["Supplier"], "Amount": columns["Amount"],
                                "Currency": columns["Currency"], "OrderDate": columns["Order date"],
                                "PromisedDate": columns["Promised date"], "VismaId": columns["Visma ID"]}
    assert written["received_column"] == columns["Status"]
    text = config.read_text()
    assert "# Fjordlys' connector: hand-written, comments matter" in text and "# plenty for a wizard" in text
    assert "# the old way" not in text  # the mode changed, its comment went with it
    assert re.search(rf"OrderDate: {columns['Order date']}\s+# Order date", text)  # ids, titles beside them
    assert load_config(config).flows.visma_monday is not None  # still a valid connector.yaml


def test_the_proposals_follow_the_titles_people_gave(config: Path) -> None:
    result = wizard("", "", "", "", "", "", "", "", "", "n", board=INVOICE_BOARD)  # 7 fields on this board
    assert "InvoiceNumber  -> Invoice # (text, text)" in result.output
    assert "Amount         -> Total (numbers, numbers)" in result.output
    assert "nothing written" in result.output


def test_a_column_that_cannot_hold_the_field_is_refused_and_asked_again(config: Path, sim: MondaySimulator) -> None:
    # Amount -> "Buyer" (a people column) is refused; then "-" leaves Amount out; PromisedDate -> "Order date" is taken
    result = wizard("", "", "", "Buyer", "-", "", "", "Order date", "-", "", "y")
    assert result.exit_code == 0, result.output
    assert "'Buyer' is a people column: it cannot hold Amount (numbers)" in result.output
    assert "'Order date' is already taken by another field" in result.output
    assert set(board_settings(config)["table"]) == {"Supplier", "Currency", "OrderDate", "VismaId"}


def test_leaving_out_the_visma_id_writes_nothing_and_says_why(config: Path) -> None:
    before = config.read_text()
    result = wizard("", "", "", "", "", "", "", "-")
    assert result.exit_code != 0 and "Visma id" in result.output and "nothing was written" in result.output
    assert config.read_text() == before


def test_the_shipped_sandbox_default_is_never_written_a_copy_is(sim: MondaySimulator, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path))
    shipped = SANDBOX_CONFIG_PATH.read_bytes()
    answers = iter(["purchase_orders", "Status", "", "", "", "", "", ""])
    said: list[str] = []
    with monday_client(sim) as client:
        written = run_map_wizard(client, str(PO_BOARD), config_path=SANDBOX_CONFIG_PATH,
                                 prompt=lambda text, default=None, **_: next(answers) or default,
                                 confirm=lambda *_, **__: True, echo=said.append)  # fmt: skip
        board = client.board(str(PO_BOARD))
    assert SANDBOX_CONFIG_PATH.read_bytes() == shipped
    assert written == tmp_path / "connector.yaml"
    assert any(f"export ML_CONNECTOR_CONFIG={written}" in line for line in said)
    copy = load_config(written)
    assert copy.systems.visma is not None  # the rest of the sandbox default came along
    mapping = copy.flows.visma_monday.boards["purchase_orders"]  # type: ignore[union-attr]
    assert resolve_mapping("purchase_orders", board, mapping).columns.keys() == {
        "Supplier", "Amount", "Currency", "OrderDate", "PromisedDate", "VismaId"}
