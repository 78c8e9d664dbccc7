"""Coverage-guided fuzz targets (atheris/libFuzzer) for the parsers that meet raw bytes from outside.

Run one as ``python -m ml_connector_dagster_tests.fuzz.atheris_targets <target> [libFuzzer flags]``;
``test_atheris.py`` does, for a bounded number of runs. libFuzzer ends the process when done, so a
target never runs inside pytest's own process. An input that raises anything but the parser's own
refusal is a crash: libFuzzer writes it under ``-artifact_prefix`` and exits non-zero.

- ``webhooks``: any body (the first byte picks the system), authentically signed, through each system's verifier (what the receiver
  does once the body is read): events, a handshake reply, or ``WebhookRejected`` / ``ValidationError``.
- ``cxml``: any bytes as a JAGGAER reply: a ``CxmlStatus`` or ``CxmlReplyUnreadable``.
- ``config``: any text as connector.yaml: a config or a ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["ml_connector_dagster"]):
    from pydantic import ValidationError

    from ml_connector_dagster.config import ConfigError, load_config
    from ml_connector_dagster.core.ledger import Ledger
    from ml_connector_dagster.core.vault import Vault
    from ml_connector_dagster.systems.jaggaer.cxml import CxmlReplyUnreadable, parse_reply
    from ml_connector_dagster.webhooks.contract import WebhookRejected, WebhookRequest
    from ml_connector_dagster_tests.security.senders import SENDERS, Sender  # the verifiers, instrumented too

__all__ = ["TARGETS", "main", "seeds"]


def _webhooks() -> Callable[[bytes], None]:
    home = Path(tempfile.mkdtemp(prefix="atheris-webhooks-"))
    ledger = Ledger.open(f"sqlite:///{home / 'ledger.db'}")
    vault = Vault(ledger.engine, ["n1qCw5ZXmMmqQTFRVEuF4dZ5dCxOb_-5zM3iQKaHZlE="])
    senders: list[tuple[Sender, object]] = []
    for make in SENDERS.values():
        sender = make()
        senders.append((sender, sender.verifier(ledger, vault)))

    def one(data: bytes) -> None:
        if not data:
            return
        # The first byte picks the system, the rest is the body (see seeds()).
        sender, verifier = senders[data[0] % len(senders)]
        body = data[1:]
        query = dict(
            part.split("=", 1) for part in sender.route().partition("?")[2].split("&") if "=" in part
        )
        request = WebhookRequest(
            body=body, headers=sender.sign(body), query=query, received_at=datetime.now(UTC)
        )
        with contextlib.suppress(WebhookRejected, ValidationError):
            verifier.verify(request)  # type: ignore[attr-defined]

    return one


def _cxml() -> Callable[[bytes], None]:
    def one(data: bytes) -> None:
        with contextlib.suppress(CxmlReplyUnreadable):
            parse_reply(data)

    return one


def _config() -> Callable[[bytes], None]:
    path = Path(tempfile.mkdtemp(prefix="atheris-config-")) / "connector.yaml"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        with contextlib.suppress(ConfigError):
            load_config(path)

    return one


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "webhooks": _webhooks,
    "cxml": _cxml,
    "config": _config,
}
_REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.069/cXML.dtd">'
    b'<cXML payloadID="1.2.reply@j1p" timestamp="2026-03-01T10:00:00+01:00"><Response>'
    b'<Status code="201" text="Accepted">queued</Status></Response></cXML>'
)


def seeds(target: str) -> list[bytes]:
    """Valid inputs for ``target`` to start the corpus from (libFuzzer mutates from there)."""
    if target == "webhooks":
        return [
            bytes([index]) + json.dumps(make().payload()).encode()
            for index, make in enumerate(SENDERS.values())
        ]
    if target == "cxml":
        return [_REPLY]
    return [
        (Path(__file__).resolve().parents[2] / "ml_connector_dagster" / "connector.sandbox.yaml").read_bytes()
    ]


def main(argv: list[str]) -> None:
    """``argv[1]`` names the target; the rest go to libFuzzer (``-runs=``, corpus directories ...).

    An empty corpus directory is seeded with :func:`seeds` first.
    """
    name, flags = argv[1], argv[2:]
    for corpus in (Path(arg) for arg in flags if not arg.startswith("-")):
        if corpus.is_dir() and not any(corpus.iterdir()):
            for number, seed in enumerate(seeds(name)):
                (corpus / f"seed-{number}").write_bytes(seed)
    atheris.Setup([argv[0], *flags], TARGETS[name]())
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
