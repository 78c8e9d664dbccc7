"""Which Visma supplier a JAGGAER vendor is: explicit links first, then the organisation number, then the name.

In order, the first rule that decides wins:

1. an explicit link: the flow's vendor table / ``vendor_map`` (JAGGAER supplier id -> Visma supplier
   number), or a Visma supplier whose attribute (``vendor_id_attribute``) holds the JAGGAER id;
2. JAGGAER's ``erpNumber``, when it names a Visma supplier that exists (a stale one is noted, not used);
3. the organisation number, read from JAGGAER's tax id and Visma's corporate id / VAT id in any of
   their Nordic formats (:func:`normalise_org_number`) and only when its check digit holds;
4. the name, case, punctuation and legal form (AS, ASA, A/S, AB, Aktiebolag, Oy, Oyj, ApS ...) aside
   (:func:`normalise_name`), when exactly one supplier carries it and no tax id contradicts it.

A vendor no rule decides is *unmatched*, with a reason that says what was tried and why it failed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "MatchMethod",
    "SupplierIndex",
    "VendorMatch",
    "match_vendor",
    "normalise_name",
    "normalise_org_number",
]

MatchMethod = Literal["mapping", "visma_attribute", "erp_number", "org_number", "name"]

# Registry numbers: digits after the country prefix (SE VAT ids add "01", NO ones "MVA").
_DIGITS = {"NO": 9, "SE": 10, "DK": 8, "FI": 8}
_BY_LENGTH = {9: "NO", 10: "SE"}  # 8 digits may be Danish or Finnish: the country must say
_SEPARATORS = re.compile(r"[\s.\-/]+")
_PREFIX = re.compile(r"^([A-Z]{2})(?=[0-9])")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_LEGAL_FORMS = frozenset({"as", "asa", "ab", "aktiebolag", "publ", "oy", "oyj", "aps", "ans", "da", "ks", "is"})


def _mod11(digits: str, weights: tuple[int, ...]) -> int:
    return sum(w * int(d) for w, d in zip(weights, digits, strict=False)) % 11


def _valid_no(digits: str) -> bool:
    rest = _mod11(digits[:8], (3, 2, 7, 6, 5, 4, 3, 2))
    check = 0 if rest == 0 else 11 - rest
    return check != 10 and check == int(digits[8])


def _valid_se(digits: str) -> bool:  # Luhn over all ten digits
    total = sum(sum(divmod(int(d) * (2 - i % 2), 10)) for i, d in enumerate(digits))
    return total % 10 == 0


def _valid_dk(digits: str) -> bool:
    return _mod11(digits, (2, 7, 6, 5, 4, 3, 2, 1)) == 0


def _valid_fi(digits: str) -> bool:
    rest = _mod11(digits[:7], (7, 9, 10, 5, 8, 4, 2))
    return rest != 1 and (0 if rest == 0 else 11 - rest) == int(digits[7])


_CHECKS = {"NO": _valid_no, "SE": _valid_se, "DK": _valid_dk, "FI": _valid_fi}


def normalise_org_number(text: str | None, country: str | None = None) -> str | None:
    """``NO923456789``: country and registry digits of a Nordic org number or VAT id, or None.

    Reads ``NO 923 456 789 MVA``, ``923456789``, ``SE556677889901``, ``556677-8899``,
    ``DK 12 34 56 78``, ``FI 1234567-8`` ...; ``country`` says whose number a bare one is. None
    when the text is no such number, the country cannot be told, or the check digit fails.
    """
    if not text:
        return None
    compact = _SEPARATORS.sub("", text.upper())
    prefix = _PREFIX.match(compact)
    if prefix:
        compact = compact[2:]
    compact = compact.removesuffix("MVA")
    if not _ASCII_DIGITS.fullmatch(compact):
        return None
    code = prefix.group(1) if prefix else (country or "").upper() or _BY_LENGTH.get(len(compact), "")
    if code == "SE" and len(compact) == 12 and compact.endswith("01"):
        compact = compact[:10]
    if code not in _DIGITS or len(compact) != _DIGITS[code] or not _CHECKS[code](compact):
        return None
    return code + compact


def normalise_name(name: str | None) -> str:
    """A company name without case, punctuation or legal form: ``Fjordkraft A/S`` -> ``fjordkraft``."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name or "").casefold())
    text = re.sub(r"[./]", "", text)  # A/S, A.S. and AS are one legal form
    tokens = re.sub(r"[\W_]+", " ", text).split()
    while tokens and tokens[-1] in _LEGAL_FORMS:
        tokens.pop()
    while tokens and tokens[0] in _LEGAL_FORMS:
        tokens.pop(0)
    return " ".join(tokens)


class VendorMatch(BaseModel):
    """The Visma supplier of one JAGGAER vendor (or why there is none)."""

    model_config = ConfigDict(frozen=True)

    jaggaer_id: str
    visma_number: str | None
    method: MatchMethod | None = None
    detail: str = ""

    @property
    def matched(self) -> bool:
        return self.visma_number is not None


@dataclass(frozen=True)
class _Supplier:
    number: str
    name: str
    org_numbers: frozenset[str]


def _country_of(supplier: Mapping[str, Any]) -> str | None:
    address = supplier.get("mainAddress") or {}
    country = address.get("country") if isinstance(address, Mapping) else None
    return country.get("id") if isinstance(country, Mapping) else None


def _attribute(supplier: Mapping[str, Any], attribute: str | None) -> str | None:
    if not attribute:
        return None
    for item in supplier.get("attributes") or []:
        if isinstance(item, Mapping) and str(item.get("id", "")).casefold() == attribute.casefold():
            value = str(item.get("value") or "").strip()
            return value or None
    return None


@dataclass
class SupplierIndex:
    """Visma's suppliers, indexed by number, JAGGAER id attribute, organisation number and name."""

    by_number: dict[str, _Supplier] = field(default_factory=dict)
    by_jaggaer_id: dict[str, str] = field(default_factory=dict)
    by_org_number: dict[str, list[str]] = field(default_factory=dict)
    by_name: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, suppliers: Iterable[Mapping[str, Any]], *, attribute: str | None = None) -> SupplierIndex:
        """The index of Visma supplier records (``SupplierDto`` as the API answers them)."""
        index = cls()
        for raw in suppliers:
            number = str(raw.get("number") or "")
            if not number:
                continue
            country = _country_of(raw)
            org = {key for text in (raw.get("corporateId"), raw.get("vatRegistrationId"))
                   if (key := normalise_org_number(text, country))}
            supplier = _Supplier(number, str(raw.get("name") or ""), frozenset(org))
            index.by_number[number] = supplier
            if (jaggaer_id := _attribute(raw, attribute)) is not None:
                index.by_jaggaer_id[jaggaer_id] = number
            for key in org:
                index.by_org_number.setdefault(key, []).append(number)
            if name := normalise_name(supplier.name):
                index.by_name.setdefault(name, []).append(number)
        return index


def _describe(index: SupplierIndex, number: str) -> str:
    return f"Visma supplier {number} ({index.by_number[number].name})"


def _by_name(vendor_id: str, name: str, org: str | None, index: SupplierIndex, tried: list[str]) -> VendorMatch:
    key = normalise_name(name)
    candidates = index.by_name.get(key, []) if key else []
    if not candidates:
        tried.append(f"no Visma supplier is named {name!r}")
        return VendorMatch(jaggaer_id=vendor_id, visma_number=None, detail="; ".join(tried))
    agreeing = [n for n in candidates if not (org and index.by_number[n].org_numbers and org not in index.by_number[n].org_numbers)]
    if len(agreeing) == 1:
        return VendorMatch(jaggaer_id=vendor_id, visma_number=agreeing[0], method="name",
                           detail=f"name {name!r} matches {_describe(index, agreeing[0])}")
    if not agreeing:
        others = ", ".join(sorted({o for n in candidates for o in index.by_number[n].org_numbers}))
        tried.append(f"name {name!r} matches {', '.join(_describe(index, n) for n in candidates)} but its "
                     f"organisation number {others} differs from JAGGAER's {org}")
    else:
        tried.append(f"name {name!r} is ambiguous: {', '.join(_describe(index, n) for n in agreeing)}")
    return VendorMatch(jaggaer_id=vendor_id, visma_number=None, detail="; ".join(tried))


def match_vendor(vendor: Mapping[str, Any], index: SupplierIndex, explicit: Mapping[str, str], *,
                 by_name: bool = True) -> VendorMatch:
    """The Visma supplier of a JAGGAER vendor record (``supplierId``, ``name``, ``taxId``, ``country``, ``erpNumber``)."""
    vendor_id = str(vendor.get("supplierId") or "")
    tried: list[str] = []
    if vendor_id in explicit:
        number = explicit[vendor_id]
        if number in index.by_number:
            return VendorMatch(jaggaer_id=vendor_id, visma_number=number, method="mapping",
                               detail=f"vendor mapping names {_describe(index, number)}")
        return VendorMatch(jaggaer_id=vendor_id, visma_number=None,
                           detail=f"the vendor mapping names Visma supplier {number}, which does not exist")
    if vendor_id in index.by_jaggaer_id:
        number = index.by_jaggaer_id[vendor_id]
        return VendorMatch(jaggaer_id=vendor_id, visma_number=number, method="visma_attribute",
                           detail=f"{_describe(index, number)} carries JAGGAER id {vendor_id}")
    erp_number = str(vendor.get("erpNumber") or "").strip()
    if erp_number in index.by_number:
        return VendorMatch(jaggaer_id=vendor_id, visma_number=erp_number, method="erp_number",
                           detail=f"JAGGAER's erpNumber names {_describe(index, erp_number)}")
    if erp_number:
        tried.append(f"erpNumber {erp_number} is not a Visma supplier")
    tax_id = vendor.get("taxId")
    org = normalise_org_number(tax_id, vendor.get("country"))
    if org is not None:
        numbers = index.by_org_number.get(org, [])
        if len(numbers) == 1:
            return VendorMatch(jaggaer_id=vendor_id, visma_number=numbers[0], method="org_number",
                               detail=f"organisation number {org} matches {_describe(index, numbers[0])}")
        tried.append(f"organisation number {org} is " + (
            f"shared by {', '.join(_describe(index, n) for n in numbers)}" if numbers else "not on any Visma supplier"))
        if numbers:
            return VendorMatch(jaggaer_id=vendor_id, visma_number=None, detail="; ".join(tried))
    elif tax_id:
        tried.append(f"tax id {tax_id!r} is not a valid Nordic organisation number")
    else:
        tried.append("JAGGAER has no tax id")
    if not by_name:
        return VendorMatch(jaggaer_id=vendor_id, visma_number=None, detail="; ".join(tried))
    return _by_name(vendor_id, str(vendor.get("name") or ""), org, index, tried)
