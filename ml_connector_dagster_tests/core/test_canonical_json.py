"""The canonical JSON of content hashes is byte for byte the standard library's, only faster."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector_dagster.core import canonical_json as canonical_json_module
from ml_connector_dagster.core.canonical_json import canonical_json, canonical_json_stdlib, loads

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.decimals(allow_nan=False, allow_infinity=False) | st.datetimes(timezones=st.just(UTC))
    | st.dates() | st.uuids()
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


@settings(max_examples=500)
@given(st.dictionaries(st.text(max_size=8), _values, max_size=6))
def test_any_payload_is_written_exactly_as_the_standard_library_writes_it(payload: dict) -> None:
    assert canonical_json(payload) == canonical_json_stdlib(payload)


@given(st.floats(min_value=1e-10, max_value=1e-4) | st.floats(min_value=-1e-4, max_value=-1e-10))
def test_tiny_floats_keep_the_standard_librarys_notation(value: float) -> None:
    assert canonical_json({"amount": value}) == canonical_json_stdlib({"amount": value})


def test_ids_that_look_like_exponents_are_written_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_path(payload: object) -> str:
        raise AssertionError(f"took the standard library's path: {payload}")

    monkeypatch.setattr(canonical_json_module, "canonical_json_stdlib", slow_path)
    payload = {"id": "abf9d924-1bd4-507e-8788-4ad284136faa", "note": "ratio 0.00001, 1e-7", "amount": 0.1}

    assert canonical_json(payload) == json.dumps(payload, sort_keys=True, separators=(",", ":"))


@given(st.lists(st.floats(min_value=1e-10, max_value=1e-4), min_size=1, max_size=3))
def test_tiny_floats_in_a_list_keep_the_standard_librarys_notation(values: list[float]) -> None:
    assert canonical_json({"amounts": values}) == canonical_json_stdlib({"amounts": values})


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=4), st.lists(
    st.floats(min_value=-1e-3, max_value=1e-3) | st.floats(min_value=1, max_value=1e6) | st.uuids().map(str)
    | st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,6})?e-[0-9]{1,2}", fullmatch=True), max_size=4), max_size=4))
def test_small_floats_beside_ids_and_number_like_text_are_written_as_the_standard_library_writes_them(
    payload: dict[str, list[object]],
) -> None:
    assert canonical_json(payload) == canonical_json_stdlib(payload)


def test_characters_beyond_ascii_are_escaped_as_the_standard_library_escapes_them() -> None:
    payload = {"supplier": "Øresund Bygg AB \x7f \u2028 😀", "ключ": "é"}
    assert canonical_json(payload) == canonical_json_stdlib(payload)
    assert canonical_json(payload).isascii()


def test_integers_beyond_64_bits_and_non_string_keys_take_the_standard_librarys_path() -> None:
    assert canonical_json({"big": 10**30}) == '{"big":1000000000000000000000000000000}'
    assert canonical_json({"k": {1: "a"}}) == canonical_json_stdlib({"k": {1: "a"}})


def test_dates_decimals_and_ids_are_written_as_their_text() -> None:
    moment = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    ident = uuid.UUID(int=7)
    assert canonical_json({"at": moment, "amount": Decimal("12.50"), "id": ident}) == (
        f'{{"amount":"12.50","at":"{moment}","id":"{ident}"}}'
    )


def test_a_non_finite_float_is_written_as_null() -> None:
    assert canonical_json({"amount": math.nan}) == '{"amount":null}'


def test_reading_accepts_what_the_standard_library_stored() -> None:
    assert loads('{"a":NaN,"b":100000000000000000000}')["b"] == 10**20
    assert loads(b'{"a":[1,2.5,"x"]}') == {"a": [1, 2.5, "x"]}
