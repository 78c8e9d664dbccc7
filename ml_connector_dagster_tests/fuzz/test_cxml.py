"""cXML parsing under hostile input: replies the connector reads, documents the JAGGAER simulator reads.

Either a status or a clear error (``CxmlReplyUnreadable``; a cXML 4xx from the simulator), never
another exception; and nothing outside the document is ever read: no external entity (a local
file), no external DTD or parameter entity fetched over the network, no entity expanded.
``test_jaggaer_cxml.py`` already covers garbage bytes and the billion-laughs bomb on replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ml_connector_dagster.sandbox.jaggaer import JaggaerSimulator
from ml_connector_dagster.sandbox.serve import ServedApp
from ml_connector_dagster.sandbox.transport import InProcessTransport
from ml_connector_dagster.systems.jaggaer.cxml import (
    CxmlReplyUnreadable,
    CxmlStatus,
    parse_reply,
    safe_parser,
)

FILE_SECRET = "contents-of-a-local-file-4b8e1d"
VALID_REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.069/cXML.dtd">'
    b'<cXML payloadID="1.2.reply@j1p" timestamp="2026-03-01T10:00:00+01:00" xml:lang="en-US">'
    b'<Response><Status code="201" text="Accepted">queued for processing</Status></Response></cXML>'
)


class Trap:
    """A web server that counts every request: an external DTD or entity must never be fetched."""

    def __init__(self) -> None:
        self.hits: list[str] = []

        async def anything(request: Request) -> Response:
            self.hits.append(request.url.path)
            return PlainTextResponse(f'<!ENTITY leak "{FILE_SECRET}">', media_type="application/xml-dtd")

        self.app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def trap() -> Iterator[tuple[Trap, str]]:
    served = Trap()
    server = ServedApp(served.app, "xxe trap").start()
    try:
        yield served, server.base_url
    finally:
        server.stop()


@pytest.fixture
def local_file(tmp_path: Path) -> str:
    path = tmp_path / "secret.txt"
    path.write_text(FILE_SECRET)
    return path.as_uri()


def hostile_documents(file_uri: str, trap_url: str) -> dict[str, bytes]:
    """Classic XML attacks, each aimed at a cXML reply's Status."""
    status = '<cXML><Response><Status code="200" text="{text}">{body}</Status></Response></cXML>'
    return {
        "external entity (file)": (f'<?xml version="1.0"?><!DOCTYPE cXML [<!ENTITY xxe SYSTEM "{file_uri}">]>'
                                   + status.format(text="ok", body="&xxe;")).encode(),
        "external entity in an attribute": (f'<!DOCTYPE cXML [<!ENTITY xxe SYSTEM "{file_uri}">]>'
                                            + status.format(text="&xxe;", body="")).encode(),
        "external entity (network)": (f'<!DOCTYPE cXML [<!ENTITY xxe SYSTEM "{trap_url}/entity">]>'
                                      + status.format(text="ok", body="&xxe;")).encode(),
        "parameter entity (network)": (f'<!DOCTYPE cXML [<!ENTITY % p SYSTEM "{trap_url}/param.dtd"> %p;]>'
                                       + status.format(text="ok", body="&leak;")).encode(),
        "external DTD": (f'<!DOCTYPE cXML SYSTEM "{trap_url}/cXML.dtd">'
                         + status.format(text="ok", body="&leak;")).encode(),
        "XInclude": ('<cXML xmlns:xi="http://www.w3.org/2001/XInclude"><Response><Status code="200" text="ok">'
                     f'<xi:include href="{file_uri}" parse="text"/></Status></Response></cXML>').encode(),
        "quadratic blowup": (b'<!DOCTYPE cXML [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
                             + status.format(text="ok", body="&a;" * 2_000).encode()),
    }  # fmt: skip


ATTACKS = list(hostile_documents("file:///x", "http://127.0.0.1:1"))


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_hostile_reply_is_read_without_touching_anything_outside_it(
    attack: str, local_file: str, trap: tuple[Trap, str]
) -> None:
    served, url = trap
    before = len(served.hits)
    document = hostile_documents(local_file, url)[attack]
    try:
        status = parse_reply(document)
    except CxmlReplyUnreadable as error:
        assert FILE_SECRET not in str(error)
    else:
        assert FILE_SECRET not in f"{status.text} {status.message}"
        assert len(status.message) <= 1000
    assert len(served.hits) == before, f"{attack}: fetched {served.hits[before:]}"


def test_the_shared_parser_refuses_to_resolve_load_or_fetch() -> None:
    parser = safe_parser()
    document = b'<!DOCTYPE r [<!ENTITY e "expanded">]><r>&e;</r>'
    root = etree.fromstring(document, parser)
    assert "expanded" not in etree.tostring(root).decode().replace("<!ENTITY e", "")
    assert root.getroottree().docinfo.internalDTD is not None  # kept, not applied


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_jaggaer_simulator_refuses_a_hostile_document_with_a_cxml_status(
    attack: str, local_file: str, trap: tuple[Trap, str]
) -> None:
    served, url = trap
    before = len(served.hits)
    simulator = JaggaerSimulator(size=4)
    transport = InProcessTransport(simulator.app)
    try:
        with httpx.Client(transport=transport, base_url="http://jaggaer.sandbox") as client:
            response = client.post(simulator.cxml_path, content=hostile_documents(local_file, url)[attack],
                                   headers={"content-type": "text/xml"})  # fmt: skip
    finally:
        transport.close()
        simulator.close()
    assert response.status_code < 500
    status = parse_reply(response.content)
    assert 400 <= status.code < 500
    assert FILE_SECRET not in response.text
    assert len(served.hits) == before


def _mutations(document: bytes) -> st.SearchStrategy[bytes]:
    """A valid document cut, spliced, or with bytes replaced, inserted or dropped."""
    size = len(document)
    index = st.integers(0, size)
    return st.one_of(
        index.map(lambda i: document[:i]),
        st.tuples(index, st.binary(min_size=1, max_size=12)).map(lambda p: document[: p[0]] + p[1] + document[p[0] :]),
        st.tuples(index, st.integers(1, 20)).map(lambda p: document[: p[0]] + document[p[0] + p[1] :]),
        st.tuples(index, st.sampled_from([b"&", b"<", b">", b'"', b"]]>", b"\x00", b"&#0;", b"&amp", b"<!--",
                                           b"<![CDATA[", b"\xff", "\u2028".encode(), b"&lt;Status"])).map(
            lambda p: document[: p[0]] + p[1] + document[p[0] :]
        ),
        st.sampled_from([b"200", b"0", b"-1", b"2000", b"", b"20 0", "٢٠٠".encode(), b"2e2", b"0x1"]).map(
            lambda code: document.replace(b'code="201"', b'code="' + code + b'"')
        ),
    )  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_mutations(VALID_REPLY))
def test_a_mutated_reply_gives_a_status_or_a_clear_error(document: bytes) -> None:
    try:
        status = parse_reply(document)
    except CxmlReplyUnreadable as error:
        assert str(error).startswith("the reply")
    else:
        assert isinstance(status, CxmlStatus)
        assert 0 <= status.code <= 999
