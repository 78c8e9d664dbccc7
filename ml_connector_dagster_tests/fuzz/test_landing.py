"""A page mixing good and broken records: the good ones land, each broken one is a dead letter naming its field.

For every source asset, through the lander its asset runs (``assets/landing.py``) on a real ledger
(SQLite, and Postgres when the machine has it): neighbours are never held back by a bad record,
nothing is dropped silently, and each quarantined record is kept as it came, with its reason.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import dagster as dg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ml_connector_dagster.assets.landing import Lander
from ml_connector_dagster.core.landing import LandingStore, id_problem
from ml_connector_dagster.core.ledger import Ledger

from .mutations import Mutation, mutated, names_the_place
from .sources import SOURCES, Source, read_as_the_lander_does

PAGE = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
@PAGE
@given(data=st.data())
def test_a_page_lands_its_good_records_and_quarantines_each_broken_one_by_field(
    source: Source, ledger: Ledger, data: st.DataObject
) -> None:
    samples = source.valid_samples()
    half = max(1, len(samples) // 2)
    good, to_break = samples[:half], samples[half:] or samples[:1]
    broken: list[tuple[Any, Mutation]] = [data.draw(mutated([record]), label="broken") for record in to_break]
    # A vendor never returns one id twice in a page; a mutation that gives a broken record a good one's
    # id would make "which copy wins" the question, which this test does not ask.
    good_ids = {source.rules.raw_id(raw) for raw in good}
    assume(all(letter_id(source, raw) not in good_ids for raw, _ in broken))
    page = data.draw(st.permutations([*good, *(raw for raw, _ in broken)]), label="page")
    asset = f"{source.name}_{uuid.uuid4().hex[:8]}"  # each example its own asset: letters never mix
    lander = Lander(dg.AssetKey(asset.split("/")), source.rules, ledger, "run-1", None)

    lander.take(page, None)

    verdicts = {id(raw): read_as_the_lander_does(source.rules, raw) for raw, _ in broken}
    mutations = {id(raw): mutation for raw, mutation in broken}
    quarantined = [raw for raw in page if isinstance(verdicts.get(id(raw)), str)]
    still_good = [verdicts[id(raw)] for raw, _ in broken if not isinstance(verdicts[id(raw)], str)]
    expected_ids = {source.rules.validate(source.rules.to_plain(r)).record_id for r in good}
    expected_ids |= {record.record_id for record in still_good}  # type: ignore[attr-defined]
    landed = LandingStore(ledger).get_many(source.rules.system, source.rules.entity, expected_ids)
    assert set(landed) == expected_ids, "a good record did not land"
    assert lander.tally.read == len(page)
    assert lander.tally.quarantined == len(quarantined)
    # One open letter per record id: a later broken copy of the same id replaces the earlier one.
    letters = {_json(letter.record): letter for letter in ledger.open_dead_letters(asset)}
    last_of_id = {letter_id(source, raw): raw for raw in quarantined}
    assert len(letters) == len(last_of_id), "a broken record was not kept"
    for raw in last_of_id.values():
        wrapped = raw if isinstance(raw, dict) else {"value": raw}
        letter = letters.get(_json(wrapped))
        assert letter is not None, f"{mutations[id(raw)]}: not kept as it came"
        assert letter.error == verdicts[id(raw)]
        if mutations[id(raw)].kind != "whole":
            assert names_the_place(letter.error, mutations[id(raw)]), f"{mutations[id(raw)]}: {letter.error}"


def letter_id(source: Source, raw: Any) -> str:
    """The id a dead letter is filed under: the record's own, else one derived from its content."""
    wrapped = raw if isinstance(raw, dict) else {"value": raw}
    own = source.rules.raw_id(wrapped)
    return own if own is not None and id_problem(own) is None else f"unidentified:{_json(wrapped)}"


def _visma_invoices() -> Source:
    return next(source for source in SOURCES if source.name == "visma/supplier_invoices")


def test_a_record_whose_id_the_ledger_cannot_key_is_quarantined_by_its_id_field(ledger: Ledger) -> None:
    source = _visma_invoices()
    good, long_id = source.valid_samples()[:2]
    page = [good, {**long_id, "referenceNumber": "9" * 300}]
    lander = Lander(dg.AssetKey(["visma", "supplier_invoices"]), source.rules, ledger, "run-1", None)
    lander.take(page, None)
    assert set(LandingStore(ledger).get_many("visma", source.rules.entity, [good["referenceNumber"]])) == {
        good["referenceNumber"]
    }
    [letter] = ledger.open_dead_letters("visma/supplier_invoices")
    assert "referenceNumber: the id is longer than 255 characters" in letter.error
    assert letter.source_id.startswith("unidentified:")
    assert letter.record["referenceNumber"] == "9" * 300


def test_a_broken_record_with_a_nul_in_its_id_is_kept_under_a_derived_id(ledger: Ledger) -> None:
    source = _visma_invoices()
    good, broken = source.valid_samples()[:2]
    page = [{**broken, "referenceNumber": "12\x0034", "amount": "lots"}, good]
    Lander(dg.AssetKey(["visma", "supplier_invoices"]), source.rules, ledger, "run-1", None).take(page, None)
    [letter] = ledger.open_dead_letters("visma/supplier_invoices")
    assert letter.source_id.startswith("unidentified:")
    assert "amount" in letter.error
    assert letter.record["referenceNumber"] == "12\x0034"
    assert LandingStore(ledger).get_many("visma", source.rules.entity, [good["referenceNumber"]])


def test_broken_records_differing_only_by_nan_and_null_are_kept_apart(ledger: Ledger) -> None:
    """Both records had no id; their derived one came from a canonical JSON that writes NaN as null, so
    the second overwrote the first's dead letter (found by the property above)."""
    source = _visma_invoices()
    Lander(dg.AssetKey(["visma", "supplier_invoices"]), source.rules, ledger, "run-1", None).take([None, math.nan], None)

    letters = ledger.open_dead_letters("visma/supplier_invoices")

    assert len(letters) == 2
    assert len({letter.source_id for letter in letters}) == 2
