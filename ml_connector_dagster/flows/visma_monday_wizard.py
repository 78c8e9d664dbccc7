"""``ml-connector map monday --board <id>``: pair a board's columns with Visma fields, then save the pairs.

The wizard reads the board's columns, asks which Visma entity the board holds (the one connector.yaml
already gives it, by default) and its received column, proposes a column for every Visma field
(title similarity and the usual titles, e.g. InvoiceNumber -> "Invoice #", Amount -> "Total", and
only columns whose type can hold the field), lets the user confirm each pair or name another
column (title or id, ``-`` for none), and writes the result as an explicit mapping table (column
ids, titles as comments) into connector.yaml — the rest of the file, comments included, as it
was. The shipped sandbox default is never written: the mapping goes to a copy, and the wizard says
where and how to use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ml_connector_dagster.config import (
    SANDBOX_CONFIG_PATH,
    ConfigError,
    MondayBoardMapping,
    connector_home,
    parse_config,
)
from ml_connector_dagster.systems.monday.client import MondayClient
from ml_connector_dagster.systems.monday.models import Board, Column

from .visma_monday_mapping import MappingError, compatible, find_column, propose_mapping, resolve_mapping
from .visma_monday_receipts import RECEIVED_ENTITIES

__all__ = ["NONE", "config_in_use", "run_map_wizard", "write_board_mapping"]

NONE = "-"
ENTITIES: tuple[str, ...] = ("supplier_invoices", "purchase_orders", "customer_invoices", "gl_accounts", "dimensions")


def config_in_use() -> Path:
    """The connector.yaml this process reads: ``$ML_CONNECTOR_CONFIG``, else the shipped sandbox default."""
    return Path(os.environ.get("ML_CONNECTOR_CONFIG") or SANDBOX_CONFIG_PATH)


def _yaml() -> YAML:
    loader = YAML()
    loader.preserve_quotes = True
    loader.width = 4096  # never re-wrap the user's lines
    return loader


def write_board_mapping(source: Path, entity: str, mapping: MondayBoardMapping, titles: dict[str, str], *,
                        output: Path | None = None) -> Path:  # fmt: skip
    """Write ``mapping`` as ``flows.visma_monday.boards.<entity>`` into ``source`` (or ``output``), keeping the rest.

    ``titles`` (field, or ``received_column``, -> column title) become comments beside the column ids.

    Refuses the shipped sandbox default: the result goes to ``connector.yaml`` in the connector home
    instead. The file is validated before it is written. Returns where it went.
    """
    target = output or source
    if target.resolve() == SANDBOX_CONFIG_PATH.resolve():
        target = connector_home() / "connector.yaml"
    read_from = target if target.exists() else source  # a copy made earlier keeps its own edits
    yaml = _yaml()
    data = yaml.load(read_from.read_text(encoding="utf-8")) if read_from.exists() else CommentedMap()
    flows = data.setdefault("flows", CommentedMap())
    flow = flows.setdefault("visma_monday", CommentedMap()) or CommentedMap()
    flows["visma_monday"] = flow
    boards = flow.setdefault("boards", CommentedMap())
    board = boards.get(entity) or CommentedMap()
    if not isinstance(board, CommentedMap):  # written inline (flow style): comments need block style
        board = CommentedMap(board)
    board.fa.set_block_style()
    board["board_id"] = mapping.board_id
    board["mode"] = "table"
    board.ca.items.pop("mode", None)  # its old comment described the old mode
    table = CommentedMap()
    table.fa.set_block_style()
    for field, column in mapping.table.items():
        table[field] = column
        if titles.get(field) and titles[field] != column:
            table.yaml_add_eol_comment(titles[field], field)
    board["table"] = table
    if mapping.received_column:
        board["received_column"] = mapping.received_column
        if titles.get("received_column"):
            board.yaml_add_eol_comment(titles["received_column"], "received_column")
    else:
        board.pop("received_column", None)
    boards[entity] = board
    try:
        parse_config(_plain(data), str(target))
    except ConfigError as exc:
        raise click.ClickException(f"the mapping would make {target} invalid: {exc}") from None
    with target.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return target


def _plain(value: Any) -> Any:
    """ruamel's round-trip nodes as plain Python (what the config models validate)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, str) else value


def _describe(column: Column | None) -> str:
    return NONE if column is None else f"{column.title} ({column.id}, {column.type})"


def _configured_entity(config_path: Path, board_id: str) -> str | None:
    try:
        data = _yaml().load(config_path.read_text(encoding="utf-8")) or {}
    except OSError:
        return None
    boards = ((data.get("flows") or {}).get("visma_monday") or {}).get("boards") or {}
    return next((entity for entity, board in boards.items() if str((board or {}).get("board_id")) == str(board_id)), None)


def _ask_column(board: Board, field: Any, proposed: Column | None, prompt: Callable[..., Any],
                echo: Callable[[str], None], taken: set[str]) -> Column | None:  # fmt: skip
    default = proposed.title if proposed is not None else NONE
    while True:
        answer = str(prompt(f"  {field.name} ({field.kind})", default=default)).strip()
        if answer in ("", NONE):
            return None
        column = find_column(board, answer)
        if column is None or column.type == "name":
            echo(f"    no column {answer!r} on the board; give a title, an id, or {NONE} for none")
        elif not compatible(field, column):
            echo(f"    {column.title!r} is a {column.type} column: it cannot hold {field.name} ({field.kind})")
        elif column.id in taken:
            echo(f"    {column.title!r} is already taken by another field")
        else:
            return column


def run_map_wizard(client: MondayClient, board_id: str, *, config_path: Path, entity: str | None = None,
                   output: Path | None = None, prompt: Callable[..., Any] = click.prompt,
                   confirm: Callable[..., bool] = click.confirm, echo: Callable[[str], None] = click.echo) -> Path | None:  # fmt: skip
    """Walk the user through mapping board ``board_id``; write the mapping (returns where) or None if declined."""
    if entity is not None and entity not in ENTITIES:
        raise click.BadParameter(f"{entity!r} is not one of {', '.join(ENTITIES)}", param_hint="--entity")
    board = client.board(board_id)
    echo(f"Board {board.id} {board.name!r}: {', '.join(c.title for c in board.columns if c.type != 'name')}")
    entity = entity or prompt("Which Visma records go to this board?", type=click.Choice(ENTITIES),
                              default=_configured_entity(config_path, board.id) or "supplier_invoices")
    received = None
    if entity in RECEIVED_ENTITIES:
        statuses = [c for c in board.columns if c.type == "status"]
        default = statuses[0].title if statuses else NONE
        while True:
            answer = str(prompt("Received column (the status your team sets on receipt; - for none)", default=default))
            received = None if answer.strip() in ("", NONE) else find_column(board, answer.strip())
            if answer.strip() in ("", NONE) or (received is not None and received.type == "status"):
                break
            echo(f"    {answer!r} is no status column of the board")
    echo("Proposed pairs (Enter keeps the proposal; a column title or id changes it; - leaves the field out):")
    chosen: dict[str, Column] = {}
    for proposal in propose_mapping(entity, board, received_column=received.id if received else None):
        column = _ask_column(board, proposal.field, proposal.column, prompt, echo, {c.id for c in chosen.values()})
        if column is not None:
            chosen[proposal.field.name] = column
    mapping = MondayBoardMapping(board_id=board.id, mode="table", table={f: c.id for f, c in chosen.items()},
                                 received_column=received.id if received else None)  # fmt: skip
    try:
        resolve_mapping(entity, board, mapping)
    except MappingError as exc:
        raise click.ClickException(f"{exc}; nothing was written") from None
    for field, column in chosen.items():
        echo(f"  {field:<14} -> {_describe(column)}")
    if not confirm(f"Write this mapping for {entity} to connector.yaml?", default=True):
        echo("nothing written")
        return None
    titles = {f: c.title for f, c in chosen.items()} | ({"received_column": received.title} if received else {})
    written = write_board_mapping(config_path, entity, mapping, titles, output=output)
    echo(f"written to {written}")
    if written.resolve() != config_path.resolve():
        why = "the shipped sandbox default is never changed; " if config_path.resolve() == SANDBOX_CONFIG_PATH.resolve() else ""
        echo(f"{why}use it with: export ML_CONNECTOR_CONFIG={written}")
    return written
