"""JAGGAER vendors matched to Visma suppliers: organisation numbers and names read in every Nordic format."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector_dagster.flows.jaggaer_visma_matching import (
    SupplierIndex,
    match_vendor,
    normalise_name,
    normalise_org_number,
)
from ml_connector_dagster.sandbox.jaggaer.data import JaggaerDemoData
from ml_connector_dagster.sandbox.visma import VismaSimulator

COUNTRIES = ("NO", "SE", "DK", "FI")


def _with_check_digit(country: str, body: list[int]) -> str | None:
    """A registry number of ``country`` from its body digits, or None when no check digit exists for it."""
    if country == "NO":
        rest = sum(w * d for w, d in zip((3, 2, 7, 6, 5, 4, 3, 2), body, strict=True)) % 11
        check = 0 if rest == 0 else 11 - rest
        return None if check == 10 else "".join(map(str, body)) + str(check)
    if country == "SE":
        total = sum(sum(divmod(d * (2 - i % 2), 10)) for i, d in enumerate(body))
        return "".join(map(str, body)) + str((10 - total % 10) % 10)
    if country == "DK":
        rest = sum(w * d for w, d in zip((2, 7, 6, 5, 4, 3, 2), body, strict=True)) % 11
        check = (11 - rest) % 11
        return None if check == 10 else "".join(map(str, body)) + str(check)
    rest = sum(w * d for w, d in zip((7, 9, 10, 5, 8, 4, 2), body, strict=True)) % 11
    return None if rest == 1 else "".join(map(str, body)) + str(0 if rest == 0 else 11 - rest)


@st.composite
def org_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(country, digits) of a valid registry number."""
    country = draw(st.sampled_from(COUNTRIES))
    size = {"NO": 8, "SE": 9, "DK": 7, "FI": 7}[country]
    body = draw(st.lists(st.integers(0, 9), min_size=size, max_size=size))
    digits = _with_check_digit(country, body)
    if digits is None:
        body[-1] = (body[-1] + 1) % 10
        digits = _with_check_digit(country, body)
    if digits is None:
        body[0] = (body[0] + 1) % 10
        digits = _with_check_digit(country, body)
    return country, digits or {"NO": "923456783", "SE": "5566778899", "DK": "12345674", "FI": "12345671"}[country]


@st.composite
def formatted(draw: st.DrawFn, number: tuple[str, str]) -> str:
    """``number`` as some document, clerk or registry might write it."""
    country, digits = number
    if country == "SE":
        digits = draw(st.sampled_from([digits, f"{digits[:6]}-{digits[6:]}"]))
    if country == "FI":
        digits = draw(st.sampled_from([digits, f"{digits[:7]}-{digits[7:]}"]))
    spaced = "".join(ch + draw(st.sampled_from(["", "", " ", "."])) for ch in digits).strip(" .")
    prefix = draw(st.sampled_from(["", f"{country}", f"{country} ", f"{country.lower()}"]))
    suffix = {"NO": draw(st.sampled_from(["", "MVA", " MVA", " mva"])),
              "SE": draw(st.sampled_from(["", "01", " 01"]))}.get(country, "")
    return draw(st.sampled_from([" ", ""])) + prefix + spaced + suffix


@given(st.text(max_size=40), st.sampled_from((None, *COUNTRIES)))
def test_org_number_normalisation_is_idempotent(text: str, country: str | None) -> None:
    once = normalise_org_number(text, country)
    assert once is None or normalise_org_number(once) == once


@given(st.data())
def test_every_format_of_one_org_number_reads_the_same(data: st.DataObject) -> None:
    number = data.draw(org_numbers())
    first, second = data.draw(formatted(number)), data.draw(formatted(number))
    assert normalise_org_number(first, number[0]) == normalise_org_number(second, number[0]) == "".join(number)


@given(org_numbers(), org_numbers(), st.data())
def test_different_org_numbers_never_read_the_same(one: tuple[str, str], other: tuple[str, str],
                                                   data: st.DataObject) -> None:
    if one == other:
        return
    left = normalise_org_number(data.draw(formatted(one)), one[0])
    right = normalise_org_number(data.draw(formatted(other)), other[0])
    assert left != right


@given(org_numbers(), st.integers(0, 9), st.integers(1, 9))
def test_a_mistyped_digit_fails_the_check_and_matches_nothing(number: tuple[str, str], position: int, shift: int) -> None:
    country, digits = number
    index = position % len(digits)
    typo = digits[:index] + str((int(digits[index]) + shift) % 10) + digits[index + 1:]
    assert normalise_org_number(typo, country) is None


@given(st.text(max_size=60))
def test_name_normalisation_is_idempotent(name: str) -> None:
    assert normalise_name(normalise_name(name)) == normalise_name(name)


@pytest.mark.parametrize(("typed", "registered"), [
    ("FJORDKRAFT A/S", "Fjordkraft AS"), ("Fjordkraft a.s.", "Fjordkraft AS"), ("Fjordkraft", "Fjordkraft ASA"),
    ("AB Botnia Maskin", "Botnia Maskin AB"), ("Botnia Maskin Aktiebolag", "Botnia Maskin AB"),
    ("Botnia Maskin AB (publ)", "Botnia Maskin AB"), ("Oy Saimaa Tekniikka", "Saimaa Tekniikka Oy"),
    ("Saimaa Tekniikka Oy Ab", "Saimaa Tekniikka Oy"), ("Jysk Stål ApS", "Jysk Stål A/S"),
])  # fmt: skip
def test_a_legal_form_written_any_way_names_the_same_company(typed: str, registered: str) -> None:
    assert normalise_name(typed) == normalise_name(registered)


def test_names_that_differ_beyond_their_legal_form_stay_apart() -> None:
    assert normalise_name("Vestkyst Elektro AS") != normalise_name("Vestkyst Transport AS")


# -- the cascade -------------------------------------------------------------------------------------


def supplier(number: str, name: str, corporate_id: str | None = None, *, country: str = "NO",
             attributes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"number": number, "name": name, "corporateId": corporate_id,
            "mainAddress": {"country": {"id": country}}, "attributes": attributes or []}


INDEX = SupplierIndex.of([
    supplier("10001", "Vestkyst Elektro AS", "944305769"),
    supplier("10002", "Botnia Maskin AB", "556677-8899", country="SE"),
    supplier("10003", "Fjordkraft AS", "923456783", attributes=[{"id": "JAGGAERID", "value": "310099"}]),
    supplier("10004", "Nordlys Bygg AS"),
    supplier("10005", "Nordlys Bygg AS"),
], attribute="JAGGAERID")


def vendor(**fields: Any) -> dict[str, Any]:
    return {"supplierId": 310001, "name": "Someone Else AS", "country": "NO", **fields}


def test_the_vendor_mapping_wins_over_every_other_rule() -> None:
    match = match_vendor(vendor(taxId="NO 944 305 769 MVA"), INDEX, {"310001": "10002"})
    assert (match.visma_number, match.method) == ("10002", "mapping")


def test_a_mapping_to_a_supplier_visma_does_not_have_is_unmatched_and_says_so() -> None:
    match = match_vendor(vendor(), INDEX, {"310001": "19999"})
    assert match.visma_number is None and "19999, which does not exist" in match.detail


def test_a_jaggaer_id_kept_on_the_visma_supplier_matches_it() -> None:
    match = match_vendor(vendor(supplierId=310099), INDEX, {})
    assert (match.visma_number, match.method) == ("10003", "visma_attribute")


def test_a_stale_erp_number_is_noted_and_the_org_number_decides() -> None:
    match = match_vendor(vendor(erpNumber="19999", taxId="SE556677889901", country="SE"), INDEX, {})
    assert (match.visma_number, match.method) == ("10002", "org_number")


def test_the_org_number_matches_whatever_its_format_on_either_side() -> None:
    match = match_vendor(vendor(taxId="NO944305769MVA", name="Vestkyst Elektro"), INDEX, {})
    assert (match.visma_number, match.method) == ("10001", "org_number")


def test_a_namesake_with_another_org_number_is_not_matched_by_name() -> None:
    match = match_vendor(vendor(name="Vestkyst Elektro AS", taxId="934399080"), INDEX, {})
    assert match.visma_number is None
    assert "matches Visma supplier 10001 (Vestkyst Elektro AS) but its organisation number" in match.detail


def test_a_name_alone_matches_when_nothing_contradicts_it() -> None:
    match = match_vendor(vendor(name="BOTNIA MASKIN AKTIEBOLAG", country="SE"), INDEX, {})
    assert (match.visma_number, match.method) == ("10002", "name")


def test_a_name_two_suppliers_share_is_ambiguous() -> None:
    match = match_vendor(vendor(name="Nordlys Bygg A/S"), INDEX, {})
    assert match.visma_number is None and "ambiguous" in match.detail


def test_name_matching_can_be_switched_off() -> None:
    match = match_vendor(vendor(name="Botnia Maskin AB", country="SE"), INDEX, {}, by_name=False)
    assert match.visma_number is None and "JAGGAER has no tax id" in match.detail


def test_the_demo_tenants_vendors_match_except_the_ones_made_not_to() -> None:
    visma = VismaSimulator(size=60)
    try:
        jaggaer = JaggaerDemoData(seed=0, size=60, days=14, anchor=visma.data_anchor)
        index = SupplierIndex.of(visma.collections()["suppliers"])
        matches = [match_vendor(v, index, {}) for v in jaggaer.records["vendors"].values()]
    finally:
        visma.close()
    wrong = [m for m in matches if m.matched and jaggaer.vendor_parties[int(m.jaggaer_id)].number != m.visma_number]
    assert wrong == []
    unmatched = {int(m.jaggaer_id) for m in matches if not m.matched}
    assert unmatched == {vendor_id for vendor_id, party in jaggaer.vendor_parties.items() if not party.number}
