"""A document's currency is an ISO 4217 code, not three capitals that look like one."""

from __future__ import annotations

import pytest

from ml_connector_dagster.core.currency import ISO_4217, iso_currency_code


@pytest.mark.parametrize("code", ["NOK", "SEK", "EUR", "USD", "HRK"])
def test_a_current_or_recently_withdrawn_code_is_a_currency(code: str) -> None:
    assert iso_currency_code(code) == code


@pytest.mark.parametrize("value", ["NKR", "KR", "NOKK", "nok", "XXX", "XTS", ""])
def test_an_abbreviation_a_placeholder_or_a_lower_case_code_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match=f"'{value}' is not an ISO 4217 currency code"):
        iso_currency_code(value)


def test_every_listed_code_is_three_capitals() -> None:
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_4217)
