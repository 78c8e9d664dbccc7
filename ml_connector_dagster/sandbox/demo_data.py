"""Deterministic Nordic demo data for the sandbox, and the Visma.net records built from it.

Two layers:

- Generic, reusable by every simulator: :class:`Dice` (a tiny keyed random stream, so record ``n``
  of a collection can be regenerated on its own without replaying a sequence), Nordic company and
  person names, addresses, organisation/VAT numbers with valid check digits, currencies, a
  Norwegian chart of accounts (NS 4102 style), departments/projects, and
  :class:`ModificationSchedule` (modification times over the last N days, with clusters of records
  sharing the very same timestamp, the cursor-boundary trap, and a share modified today).
- :class:`VismaDemoData`: Visma.net ERP records (supplier invoices, purchase orders, suppliers,
  GL accounts, customer invoices, payments, journal transactions, dimensions) rendered on demand
  as the API's DTOs. Nothing is stored: a record is a pure function of ``(seed, kind, seq)``, which
  is what lets the simulator hold a million invoices as one sorted list of integers.

Visma writes ``lastModifiedDateTime``-style values in the company's local time with its offset
(``2026-11-21T16:58:29.123+01:00``) and plain dates as local midnight without offset
(``2026-11-21T00:00:00``); :func:`visma_datetime` / :func:`visma_date` produce exactly that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

T = TypeVar("T")

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
DAY_MS = 86_400_000


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@lru_cache(maxsize=256)
def stable_salt(text: str) -> int:
    """A process-independent 64-bit number for a label (``hash()`` is randomised per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Dice:
    """A deterministic random stream keyed by ``(seed, label, index)`` (splitmix64).

    Unlike ``random.Random`` it is cheap to create one per record, so any record can be
    regenerated alone, in any order, with the same result on every platform.
    """

    __slots__ = ("_state",)

    def __init__(self, seed: int, label: str, index: int = 0) -> None:
        self._state = _mix64(_mix64((seed ^ stable_salt(label)) & _MASK64) ^ (index & _MASK64))

    def bits(self) -> int:
        """The next 64 random bits."""
        self._state = (self._state + _GOLDEN) & _MASK64
        return _mix64(self._state)

    def unit(self) -> float:
        """Uniform in [0, 1)."""
        return (self.bits() >> 11) * (1.0 / 9007199254740992)

    def below(self, n: int) -> int:
        """Uniform integer in [0, n)."""
        return self.bits() % n

    def between(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        return low + self.bits() % (high - low + 1)

    def chance(self, probability: float) -> bool:
        return self.unit() < probability

    def choice(self, options: Sequence[T]) -> T:
        return options[self.bits() % len(options)]

    def weighted(self, options: Sequence[tuple[T, float]]) -> T:
        """One of ``(value, weight)`` pairs, by weight."""
        point = self.unit() * sum(weight for _, weight in options)
        for value, weight in options:
            point -= weight
            if point < 0:
                return value
        return options[-1][0]

    def money(self, low: float, high: float) -> float:
        """An amount with two decimals in [low, high]."""
        return round(low + self.unit() * (high - low), 2)


# -- Nordic reference data ---------------------------------------------------------------------


class Country(NamedTuple):
    code: str
    name: str
    currency: str
    legal_forms: tuple[str, ...]
    trades: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]  # (postal code, city)
    streets: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    language: str


COUNTRIES: dict[str, Country] = {
    "NO": Country(
        "NO", "Norge", "NOK", ("AS", "AS", "AS", "ASA"),
        ("Bygg", "Elektro", "Transport", "Logistikk", "Maskin", "Stål", "Trelast", "Rør", "Data",
         "Emballasje", "Kjøling", "Verksted", "Regnskap", "Renhold", "Kontorservice", "Industri"),
        (("0150", "Oslo"), ("5003", "Bergen"), ("7010", "Trondheim"), ("4006", "Stavanger"),
         ("9008", "Tromsø"), ("3015", "Drammen"), ("4610", "Kristiansand"), ("1606", "Fredrikstad"),
         ("6002", "Ålesund"), ("8006", "Bodø")),
        ("Storgata", "Kongens gate", "Industriveien", "Havnegata", "Sjøgata", "Strandveien", "Fjordveien"),
        ("Ola", "Kari", "Ingrid", "Lars", "Nora", "Henrik", "Sigrid", "Magnus", "Astrid", "Eirik"),
        ("Hansen", "Johansen", "Olsen", "Larsen", "Berg", "Haugen", "Bakke", "Lie", "Dahl", "Solberg"),
        "no",
    ),
    "SE": Country(
        "SE", "Sverige", "SEK", ("AB",),
        ("Bygg", "Elteknik", "Transport", "Logistik", "Maskin", "Stål", "Trävaror", "VVS", "Data",
         "Förpackning", "Kyla", "Verkstad"),
        (("111 20", "Stockholm"), ("411 04", "Göteborg"), ("211 19", "Malmö"), ("753 20", "Uppsala"),
         ("581 83", "Linköping"), ("901 84", "Umeå")),
        ("Storgatan", "Kungsgatan", "Industrivägen", "Hamngatan", "Sjövägen"),
        ("Erik", "Anna", "Johan", "Maria", "Karl", "Elin", "Oskar", "Maja"),
        ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Lindqvist", "Berglund"),
        "sv",
    ),
    "DK": Country(
        "DK", "Danmark", "DKK", ("A/S", "ApS"),
        ("Byg", "El", "Transport", "Logistik", "Maskin", "Stål", "Træ", "VVS", "Data", "Emballage"),
        (("1050", "København K"), ("8000", "Aarhus C"), ("5000", "Odense C"), ("9000", "Aalborg"),
         ("6700", "Esbjerg")),
        ("Vestergade", "Nørregade", "Industrivej", "Havnegade", "Strandvejen"),
        ("Mads", "Sofie", "Frederik", "Ida", "Rasmus", "Freja", "Christian", "Emma"),
        ("Nielsen", "Jensen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen"),
        "da",
    ),
    "FI": Country(
        "FI", "Suomi", "EUR", ("Oy", "Oy", "Oyj"),
        ("Rakennus", "Sähkö", "Kuljetus", "Logistiikka", "Kone", "Teräs", "Puu", "LVI", "Data", "Pakkaus"),
        (("00100", "Helsinki"), ("33100", "Tampere"), ("20100", "Turku"), ("90100", "Oulu"),
         ("02150", "Espoo")),
        ("Mannerheimintie", "Teollisuustie", "Satamakatu", "Kauppakatu", "Rantatie"),
        ("Mikko", "Aino", "Juha", "Laura", "Antti", "Helmi", "Ville", "Emilia"),
        ("Virtanen", "Korhonen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen", "Laine"),
        "fi",
    ),
}
# Weighted: the demo company is Norwegian, most of its suppliers are too.
COUNTRY_WEIGHTS: tuple[tuple[str, float], ...] = (("NO", 0.6), ("SE", 0.18), ("DK", 0.12), ("FI", 0.1))

NAME_STEMS = (
    "Fjord", "Nordlys", "Viking", "Polar", "Skagerrak", "Bergen", "Trønder", "Lofoten", "Hardanger",
    "Vestkyst", "Nordkapp", "Telemark", "Glomma", "Dovre", "Jotun", "Fjell", "Isfjord", "Midnattsol",
    "Göta", "Svea", "Norrland", "Mälar", "Vänern", "Kiruna", "Dala", "Öresund", "Jylland", "Fyn",
    "Limfjord", "Bornholm", "Saimaa", "Karelia", "Botnia", "Lappi", "Aura", "Häme", "Åland", "Aurora",
)

# Base currency NOK: what one unit of each currency costs in NOK (demo rates).
CURRENCY_RATES_NOK: dict[str, float] = {
    "NOK": 1.0, "SEK": 0.98, "DKK": 1.55, "EUR": 11.6, "USD": 10.9, "GBP": 13.7,
}
CURRENCIES = tuple(CURRENCY_RATES_NOK)
_PHONE_PREFIX = {"NO": 47, "SE": 46, "DK": 45, "FI": 358}


class Address(NamedTuple):
    line1: str
    postal_code: str
    city: str
    country: Country


def company_name(dice: Dice, country: Country) -> str:
    """A plausible Nordic company name, e.g. ``Fjord Logistikk AS``."""
    legal = dice.choice(country.legal_forms)
    pattern = dice.below(4)
    if pattern == 0:
        return f"{dice.choice(country.last_names)} {dice.choice(country.trades)} {legal}"
    if pattern == 1:
        return f"{dice.choice(NAME_STEMS)}{dice.choice(country.trades).lower()} {legal}"
    return f"{dice.choice(NAME_STEMS)} {dice.choice(country.trades)} {legal}"


def person_name(dice: Dice, country: Country) -> str:
    return f"{dice.choice(country.first_names)} {dice.choice(country.last_names)}"


def street_address(dice: Dice, country: Country) -> Address:
    postal, city = dice.choice(country.cities)
    return Address(f"{dice.choice(country.streets)} {dice.between(1, 120)}", postal, city, country)


def _digits(dice: Dice, count: int, first: str = "") -> list[int]:
    return [int(c) for c in first] + [dice.below(10) for _ in range(count - len(first))]


def organisation_number(dice: Dice, country: Country) -> str:
    """A registry number with a valid check digit (NO orgnr, SE orgnr, DK CVR, FI Y-tunnus)."""
    while True:
        if country.code == "NO":  # 9 digits, mod 11 with weights 3 2 7 6 5 4 3 2
            body = _digits(dice, 8, dice.choice(("8", "9")))
            rest = sum(w * d for w, d in zip((3, 2, 7, 6, 5, 4, 3, 2), body, strict=True)) % 11
            check = 0 if rest == 0 else 11 - rest
            if check != 10:
                return "".join(map(str, body)) + str(check)
        elif country.code == "SE":  # NNNNNN-NNNN, Luhn
            body = _digits(dice, 9, "55")
            total = sum(sum(divmod(d * (2 - i % 2), 10)) for i, d in enumerate(body))
            digits = "".join(map(str, body)) + str((10 - total % 10) % 10)
            return f"{digits[:6]}-{digits[6:]}"
        elif country.code == "DK":  # CVR: 8 digits, weighted sum divisible by 11
            body = _digits(dice, 7, str(dice.between(1, 9)))
            rest = sum(w * d for w, d in zip((2, 7, 6, 5, 4, 3, 2), body, strict=True)) % 11
            check = (11 - rest) % 11
            if check != 10:
                return "".join(map(str, body)) + str(check)
        else:  # FI Y-tunnus: 7 digits + check, weights 7 9 10 5 8 4 2
            body = _digits(dice, 7, str(dice.between(1, 3)))
            rest = sum(w * d for w, d in zip((7, 9, 10, 5, 8, 4, 2), body, strict=True)) % 11
            if rest != 1:
                return "".join(map(str, body)) + "-" + str(0 if rest == 0 else 11 - rest)


def vat_number(country: Country, organisation: str) -> str:
    """The VAT registration id belonging to an organisation number."""
    plain = organisation.replace("-", "")
    return {"NO": f"NO{plain}MVA", "SE": f"SE{plain}01", "DK": f"DK{plain}"}.get(country.code, f"FI{plain}")


class GlAccount(NamedTuple):
    number: str
    description: str
    type: str  # Asset | Liability | Income | Expense (AccountDto.type)
    account_class: str


def _accounts(rows: str) -> tuple[GlAccount, ...]:
    classes = {"Asset": "EIENDEL", "Liability": "GJELD", "Income": "INNTEKT", "Expense": "KOSTNAD"}
    parsed = []
    for row in rows.strip().splitlines():
        number, kind, text = row.split("|")
        parsed.append(GlAccount(number.strip(), text.strip(), kind.strip(), classes[kind.strip()]))
    return tuple(parsed)


GL_ACCOUNTS: tuple[GlAccount, ...] = _accounts("""
1200|Asset|Maskiner og anlegg
1230|Asset|Personbiler
1250|Asset|Inventar
1280|Asset|Kontormaskiner
1400|Asset|Varelager
1500|Asset|Kundefordringer
1570|Asset|Andre kortsiktige fordringer
1700|Asset|Forskuddsbetalte kostnader
1900|Asset|Kontanter
1920|Asset|Bankinnskudd
1950|Asset|Bankinnskudd for skattetrekk
2000|Liability|Aksjekapital
2050|Liability|Annen egenkapital
2400|Liability|Leverandørgjeld
2600|Liability|Forskuddstrekk
2700|Liability|Utgående merverdiavgift, høy sats
2710|Liability|Inngående merverdiavgift, høy sats
2711|Liability|Inngående merverdiavgift, middels sats
2740|Liability|Oppgjørskonto merverdiavgift
2770|Liability|Skyldig arbeidsgiveravgift
2940|Liability|Skyldige feriepenger
2960|Liability|Påløpte kostnader
3000|Income|Salgsinntekt, avgiftspliktig
3100|Income|Salgsinntekt, avgiftsfri
3200|Income|Salgsinntekt, utenfor avgiftsområdet
3400|Income|Offentlige tilskudd
3600|Income|Leieinntekt fast eiendom
3900|Income|Annen driftsrelatert inntekt
4000|Expense|Innkjøp av råvarer og halvfabrikata
4300|Expense|Innkjøp av varer for videresalg
4500|Expense|Fremmedytelser og underentreprise
5000|Expense|Lønn til ansatte
5090|Expense|Påløpte feriepenger
5400|Expense|Arbeidsgiveravgift
5900|Expense|Annen personalkostnad
6000|Expense|Avskrivning på bygninger og anlegg
6100|Expense|Frakt, transport og forsikring ved vareforsendelse
6300|Expense|Leie lokaler
6340|Expense|Lys, varme
6400|Expense|Leie maskiner
6500|Expense|Motordrevet verktøy
6540|Expense|Inventar
6550|Expense|Driftsmaterialer
6600|Expense|Reparasjon og vedlikehold bygninger
6700|Expense|Revisjonshonorar
6705|Expense|Regnskapshonorar
6790|Expense|Annen fremmed tjeneste
6800|Expense|Kontorrekvisita
6860|Expense|Møte, kurs, oppdatering
6900|Expense|Telefon
6940|Expense|Porto
7000|Expense|Drivstoff
7100|Expense|Bilgodtgjørelse, oppgavepliktig
7140|Expense|Reisekostnad, ikke oppgavepliktig
7320|Expense|Reklamekostnad
7350|Expense|Representasjon, fradragsberettiget
7400|Expense|Kontingent, fradragsberettiget
7500|Expense|Forsikringspremie
7770|Expense|Bank- og kortgebyrer
7790|Expense|Annen kostnad, fradragsberettiget
8050|Income|Annen renteinntekt
8060|Income|Valutagevinst (agio)
8150|Expense|Annen rentekostnad
8160|Expense|Valutatap (disagio)
""")
GL_BY_NUMBER = {account.number: account for account in GL_ACCOUNTS}

# What a supplier invoice line on an expense account typically says.
EXPENSE_LINE_TEXTS: dict[str, tuple[str, ...]] = {
    "4000": ("Stålplater 3 mm", "Aluminiumsprofiler", "Granulat PP", "Skruer og bolter, parti"),
    "4300": ("Varer for videresalg", "Reservedeler, lager", "Emballasje for videresalg"),
    "4500": ("Underentreprise montasje", "Sveisearbeid innleid", "Elektroinstallasjon"),
    "6100": ("Frakt", "Fraktkostnad pall", "Ekspressfrakt"),
    "6300": ("Husleie", "Felleskostnader lokaler", "Lagerleie"),
    "6340": ("Strøm", "Fjernvarme", "Nettleie"),
    "6400": ("Leie truck", "Leie lift", "Leie kompressor"),
    "6540": ("Kontorstoler", "Skrivebord hev/senk", "Reoler lager"),
    "6550": ("Verneutstyr", "Smøremidler", "Rengjøringsmidler"),
    "6600": ("Vedlikehold ventilasjon", "Reparasjon tak", "Service heis"),
    "6705": ("Regnskapstjenester", "Lønnskjøring", "Årsoppgjør"),
    "6790": ("Konsulenttjenester", "IT-drift", "Vakthold"),
    "6800": ("Kontorrekvisita", "Printerpapir", "Toner"),
    "6860": ("Kursavgift", "Konferanse", "Sertifisering"),
    "6900": ("Mobilabonnement", "Bredbånd", "Sentralbord"),
    "7140": ("Flyreise", "Hotell", "Togreise"),
    "7320": ("Annonsering", "Messestand", "Trykksaker"),
    "7500": ("Forsikring maskiner", "Ansvarsforsikring", "Transportforsikring"),
}
EXPENSE_ACCOUNTS = tuple(EXPENSE_LINE_TEXTS)


class VatCode(NamedTuple):
    id: str
    description: str
    rate: float


VAT_CODES: tuple[VatCode, ...] = (
    VatCode("1", "Inngående mva, høy sats", 25.0),
    VatCode("11", "Inngående mva, middels sats", 15.0),
    VatCode("13", "Inngående mva, lav sats", 12.0),
    VatCode("0", "Ingen mva-behandling", 0.0),
)
VAT_WEIGHTS = ((VAT_CODES[0], 0.75), (VAT_CODES[1], 0.08), (VAT_CODES[2], 0.05), (VAT_CODES[3], 0.12))

CREDIT_TERMS: tuple[tuple[str, str, int], ...] = (
    ("10D", "10 dager netto", 10), ("14D", "14 dager netto", 14), ("30D", "30 dager netto", 30),
    ("45D", "45 dager netto", 45), ("60D", "60 dager netto", 60),
)
PAYMENT_METHODS: tuple[tuple[str, str], ...] = (
    ("BANK", "Bankoverføring"), ("EFAKTURA", "eFaktura"), ("AVTALEGIRO", "AvtaleGiro"),
)
BRANCHES: tuple[tuple[str, str], ...] = (
    ("1", "Hovedkontor Oslo"), ("2", "Avdeling Bergen"), ("3", "Avdeling Trondheim"),
)
SUPPLIER_CLASSES: dict[str, tuple[str, str]] = {
    "NO": ("INNLAND", "Innenlandske leverandører"), "SE": ("NORDEN", "Nordiske leverandører"),
    "DK": ("NORDEN", "Nordiske leverandører"), "FI": ("NORDEN", "Nordiske leverandører"),
}
DEPARTMENTS: tuple[tuple[str, str], ...] = (
    ("100", "Administrasjon"), ("200", "Salg"), ("300", "Produksjon"), ("400", "Lager og logistikk"),
    ("500", "Innkjøp"), ("600", "IT"), ("700", "Forskning og utvikling"),
)
COST_CENTRES: tuple[tuple[str, str], ...] = (
    ("000", "Felles"), ("110", "Oslo"), ("120", "Bergen"), ("130", "Trondheim"),
    ("210", "Prosjekt Nordlys"), ("220", "Prosjekt Fjordbro"), ("230", "Prosjekt Polar"),
)
PROJECTS: tuple[tuple[str, str], ...] = (
    ("P1001", "Nordlys - ny produksjonslinje"), ("P1002", "Fjordbro - kaianlegg"),
    ("P1003", "Polar - kjølelager"), ("P1004", "Aurora - ERP-oppgradering"),
)

COMPANY_NAME = "Fjordlys Industri AS"
COMPANY_CURRENCY = "NOK"
COMPANY_TIMEZONE = ZoneInfo("Europe/Oslo")


# -- time --------------------------------------------------------------------------------------


def to_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int, tz: Any = UTC) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=tz)


def visma_datetime(ms: int) -> str:
    """A Visma timestamp: company local time with offset, .NET-style trimmed fraction."""
    local = datetime.fromtimestamp(ms // 1000, tz=COMPANY_TIMEZONE)
    fraction = f"{ms % 1000:03d}".rstrip("0")
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}{offset[:3]}:{offset[3:]}"


def visma_date(day: date) -> str:
    """A Visma date field: local midnight, no offset."""
    return f"{day.isoformat()}T00:00:00"


def local_date(ms: int) -> date:
    return datetime.fromtimestamp(ms // 1000, tz=COMPANY_TIMEZONE).date()


class ModificationSchedule:
    """When each generated record was last modified: pure in ``(kind, seq)``, anchored at ``anchor_ms``.

    Times fall in ``[anchor - days, anchor]``. A share of records joins *clusters* that share one
    exact millisecond (bulk imports, mass releases: the trap for ``>`` cursors and page
    boundaries), and a share lands today, so a sync started now has fresh work.
    """

    def __init__(
        self,
        seed: int,
        anchor_ms: int,
        days: float,
        *,
        cluster_share: float = 0.08,
        records_per_cluster: int = 20,
        today_share: float = 0.1,
    ) -> None:
        self.seed = seed
        self.anchor_ms = anchor_ms
        self.window_ms = max(int(days * DAY_MS), 60_000)
        self.cluster_share = cluster_share
        self.records_per_cluster = records_per_cluster
        self.today_share = today_share
        midnight = datetime.fromtimestamp(anchor_ms / 1000, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.today_ms = min(max(anchor_ms - to_ms(midnight), 60_000), self.window_ms)

    def clusters(self, count: int) -> int:
        """How many timestamp clusters a collection of ``count`` records has."""
        return max(2, count // (self.records_per_cluster * 12))

    def modified_ms(self, kind: str, seq: int, count: int) -> int:
        dice = Dice(self.seed, kind, seq)
        if dice.chance(self.cluster_share):
            return self.cluster_ms(kind, dice.below(self.clusters(count)))
        span = self.today_ms if dice.chance(self.today_share) else self.window_ms
        return self.anchor_ms - 1 - int(dice.unit() * span)

    def cluster_ms(self, kind: str, cluster: int) -> int:
        """The shared timestamp of one cluster; cluster 0 is always today."""
        dice = Dice(self.seed, kind + "/cluster", cluster)
        span = self.today_ms if cluster == 0 else self.window_ms
        return self.anchor_ms - 1 - int(dice.unit() * span)


# -- Visma.net records -------------------------------------------------------------------------

SUPPLIER_INVOICES = "supplier_invoices"
PURCHASE_ORDERS = "purchase_orders"
SUPPLIERS = "suppliers"
ACCOUNTS = "accounts"
CUSTOMER_INVOICES = "customer_invoices"
PAYMENTS = "payments"
SUPPLIER_PAYMENTS = "supplier_payments"
JOURNAL_TRANSACTIONS = "journal_transactions"
CUSTOMERS = "customers"  # referenced by AR records, not served as a collection
VISMA_KINDS = (
    SUPPLIER_INVOICES, PURCHASE_ORDERS, SUPPLIERS, ACCOUNTS, CUSTOMER_INVOICES, PAYMENTS, JOURNAL_TRANSACTIONS,
    SUPPLIER_PAYMENTS,
)

_SI_STATUS = (("Open", 40), ("Closed", 25), ("Balanced", 14), ("Hold", 10), ("Prebooked", 5), ("Scheduled", 3),
              ("Voided", 3))
_SI_APPROVAL = {"Open": "ApprovedInApproval", "Closed": "ApprovedInApproval", "Balanced": "InProgressApproval",
                "Hold": "New", "Prebooked": "SentToApproval", "Scheduled": "ApprovedInApproval", "Voided": "Canceled"}
_PO_STATUS = (("Open", 40), ("Closed", 25), ("Balanced", 10), ("Hold", 10), ("PendingPrint", 5), ("Printed", 5),
              ("Cancelled", 5))
_AR_STATUS = (("Open", 45), ("Closed", 35), ("Balanced", 8), ("Hold", 7), ("PendingEmail", 5))
# A generated supplier payment pays an Open invoice in part (it stays Open) or a Closed one in full.
_PAYABLE = frozenset({"Open", "Closed"})
INVALID_REASONS = ("missing_amount", "garbled_amount", "unknown_currency")
INVALID_EVERY = 150  # about one supplier invoice in INVALID_EVERY is malformed on purpose


class Party(NamedTuple):
    """A supplier or customer, as every record that references it sees it."""

    internal_id: int
    number: str
    name: str
    country: Country
    currency: str
    organisation: str
    vat: str
    address: Address
    contact: str
    email: str
    phone: str
    credit_terms: tuple[str, str, int]
    payment_method: tuple[str, str]


def _round(value: float) -> float:
    return round(value + 0.0, 2)


class VismaDemoData:
    """The Visma.net demo company's records, rendered on demand from ``(seed, kind, seq)``.

    ``seq`` is a record's position in its collection (0-based). ``render`` returns the DTO
    without ``lastModifiedDateTime``, ``timeStamp`` and ``metadata``, which belong to the
    simulator (they change when the record is edited).
    """

    def __init__(self, *, seed: int, size: int, days: float, anchor: datetime) -> None:
        self.seed = seed
        self.size = size
        self.anchor_ms = to_ms(anchor)
        self.schedule = ModificationSchedule(seed, self.anchor_ms, days)
        self.counts: dict[str, int] = {
            SUPPLIER_INVOICES: size,
            PURCHASE_ORDERS: max(1, size // 2),
            SUPPLIERS: max(20, size // 20),
            CUSTOMERS: max(20, size // 20),
            ACCOUNTS: len(GL_ACCOUNTS),
            CUSTOMER_INVOICES: max(1, size // 2),
            PAYMENTS: max(1, size // 4),
            JOURNAL_TRANSACTIONS: max(1, size // 2),
            SUPPLIER_PAYMENTS: max(1, size // 3),
        }
        self._parties: dict[tuple[str, int], Party] = {}
        self._renderers = {
            SUPPLIER_INVOICES: self._supplier_invoice,
            PURCHASE_ORDERS: self._purchase_order,
            SUPPLIERS: self._supplier,
            ACCOUNTS: self._account,
            CUSTOMER_INVOICES: self._customer_invoice,
            PAYMENTS: self._payment,
            JOURNAL_TRANSACTIONS: self._journal_transaction,
            SUPPLIER_PAYMENTS: self._supplier_payment,
        }

    # -- identity and time ---------------------------------------------------------------------
    def number(self, kind: str, seq: int) -> str:
        """The record's business id (invoice number, order number, supplier number, account ...)."""
        if kind == ACCOUNTS:
            return GL_ACCOUNTS[seq].number
        if kind == SUPPLIERS:
            return str(10001 + seq)
        if kind == CUSTOMERS:
            return str(20001 + seq)
        if kind == PURCHASE_ORDERS:
            return f"PO{seq + 1:06d}"
        return f"{seq + 1:06d}"

    def seq_of(self, kind: str, number: str) -> int | None:
        """Inverse of :meth:`number` (None if ``number`` is not of this collection's shape)."""
        if kind == ACCOUNTS:
            return next((i for i, account in enumerate(GL_ACCOUNTS) if account.number == number), None)
        text = number[2:] if kind == PURCHASE_ORDERS and number.startswith("PO") else number
        if not text.isdigit() or not text.isascii():
            return None
        offset = {SUPPLIERS: 10001, CUSTOMERS: 20001}.get(kind, 1)
        seq = int(text) - offset
        return seq if seq >= 0 and self.number(kind, seq) == number else None

    def modified_ms(self, kind: str, seq: int) -> int:
        """When the generated record was last modified (before anyone edits it)."""
        if kind == SUPPLIER_PAYMENTS and (invoice := self.paid_invoice(seq)) is not None:
            # Releasing the payment changed its invoice (balance, status) in the same transaction.
            return self.schedule.modified_ms(SUPPLIER_INVOICES, invoice, self.counts[SUPPLIER_INVOICES])
        return self.schedule.modified_ms(kind, seq, self.counts[kind])

    def created_ms(self, kind: str, seq: int) -> int:
        """Created up to 45 days before its first modification (a supplier payment: hours before its release)."""
        span = DAY_MS // 4 if kind == SUPPLIER_PAYMENTS else 45 * DAY_MS
        return self.modified_ms(kind, seq) - int(Dice(self.seed, kind + "/created", seq).unit() * span)

    def invalid_reason(self, kind: str, seq: int) -> str | None:
        """Why a generated record is malformed on purpose (quarantine fodder), or None."""
        if kind != SUPPLIER_INVOICES or seq >= self.counts[kind]:
            return None
        dice = Dice(self.seed, kind + "/invalid", seq)
        return dice.choice(INVALID_REASONS) if dice.below(INVALID_EVERY) == 0 else None

    def paid_invoice(self, seq: int) -> int | None:
        """The generated supplier invoice generated supplier payment ``seq`` pays (None: a prepayment).

        Payment ``seq`` looks only at its own block of invoices, so the inverse
        (:meth:`payment_of_invoice`) is as cheap: no invoice is paid twice, none needs a scan.
        """
        stride = self._payment_stride()
        for candidate in range(seq * stride, min((seq + 1) * stride, self.counts[SUPPLIER_INVOICES])):
            if self._invoice_head(candidate)[2] in _PAYABLE and self.invalid_reason(SUPPLIER_INVOICES, candidate) is None:
                return candidate
        return None

    def payment_of_invoice(self, seq: int) -> int | None:
        """The generated supplier payment that pays generated supplier invoice ``seq``, if one does."""
        payment = seq // self._payment_stride()
        return payment if payment < self.counts[SUPPLIER_PAYMENTS] and self.paid_invoice(payment) == seq else None

    def amount_paid(self, payment: int, amount: float, status: str) -> float:
        """What generated payment ``payment`` pays of an invoice of ``amount``: all of a Closed one, part of an Open one."""
        if status == "Closed":
            return amount
        return _round(amount * Dice(self.seed, SUPPLIER_PAYMENTS + "/share", payment).between(20, 80) / 100)

    def _payment_stride(self) -> int:
        return max(1, self.counts[SUPPLIER_INVOICES] // self.counts[SUPPLIER_PAYMENTS])

    def journal_line_count(self, seq: int) -> int:
        return Dice(self.seed, JOURNAL_TRANSACTIONS + "/lines", seq).between(2, 5)

    def render(self, kind: str, seq: int, created_ms: int | None = None) -> dict[str, Any]:
        """The DTO of record ``seq``; ``created_ms`` overrides the generated creation time."""
        created = self.created_ms(kind, seq) if created_ms is None else created_ms
        return drop_none(self._renderers[kind](seq, created))

    # -- parties -------------------------------------------------------------------------------
    def party(self, kind: str, seq: int) -> Party:
        """Supplier or customer ``seq`` (cached: every invoice of a supplier sees the same one)."""
        key = (kind, seq)
        cached = self._parties.get(key)
        if cached is not None:
            return cached
        dice = Dice(self.seed, kind, seq)
        country = COUNTRIES[dice.weighted(COUNTRY_WEIGHTS)]
        name = company_name(dice, country)
        organisation = organisation_number(dice, country)
        currency = dice.choice(("EUR", "USD")) if dice.chance(0.08) else country.currency
        domain = "".join(ch for ch in name.lower().split(" ")[0] if ch.isascii() and ch.isalnum()) or "firma"
        party = Party(
            internal_id=(7000 if kind == SUPPLIERS else 9000) + seq,
            number=self.number(kind, seq),
            name=name,
            country=country,
            currency=currency,
            organisation=organisation,
            vat=vat_number(country, organisation),
            address=street_address(dice, country),
            contact=person_name(dice, country),
            email=f"faktura@{domain}.{country.code.lower()}",
            phone=f"+{_PHONE_PREFIX[country.code]} {dice.between(20000000, 99999999)}",
            credit_terms=dice.choice(CREDIT_TERMS),
            payment_method=dice.choice(PAYMENT_METHODS),
        )
        if len(self._parties) < 200_000:
            self._parties[key] = party
        return party

    def _supplier_ref(self, seq: int) -> Party:
        return self.party(SUPPLIERS, seq % self.counts[SUPPLIERS])

    # -- renderers -----------------------------------------------------------------------------
    def _invoice_head(self, seq: int) -> tuple[Dice, int, str]:
        """The first draws of a supplier invoice: its dice (to draw on from), supplier and status."""
        dice = Dice(self.seed, SUPPLIER_INVOICES, seq)
        supplier = dice.below(self.counts[SUPPLIERS])
        return dice, supplier, dice.weighted(_SI_STATUS)

    def _supplier_invoice(self, seq: int, created: int) -> dict[str, Any]:
        dice, supplier_seq, status = self._invoice_head(seq)
        supplier = self._supplier_ref(supplier_seq)
        day = local_date(created)
        currency = supplier.currency
        rate = CURRENCY_RATES_NOK[currency]
        po_number = self.number(PURCHASE_ORDERS, dice.below(self.counts[PURCHASE_ORDERS])) if dice.chance(0.5) else None
        department = dice.choice(DEPARTMENTS)
        centre = dice.choice(COST_CENTRES)
        lines = []
        for line_number in range(1, dice.between(1, 4) + 1):
            account = GL_BY_NUMBER[dice.choice(EXPENSE_ACCOUNTS)]
            vat = dice.weighted(VAT_WEIGHTS)
            quantity = float(dice.between(1, 40))
            unit_cost = dice.money(40, 9000)
            cost = _round(quantity * unit_cost)
            lines.append({
                "lineNumber": line_number,
                "inventoryNumber": None,
                "stockItem": False,
                "transactionDescription": dice.choice(EXPENSE_LINE_TEXTS[account.number]),
                "quantity": quantity,
                "uom": "STK",
                "unitCost": _round(unit_cost * rate),
                "unitCostInCurrency": unit_cost,
                "cost": _round(cost * rate),
                "costInCurrency": cost,
                "discountPercent": 0.0,
                "discountAmount": 0.0,
                "discountAmountInCurrency": 0.0,
                "manualDiscount": False,
                "account": {"type": account.type, "active": True, "number": account.number,
                            "description": account.description},
                "subaccount": _subaccount(department, centre),
                "vatCode": {"id": vat.id, "description": vat.description},
                "poNumber": po_number,
                "poLineNr": line_number if po_number else None,
                "branchNumber": {"number": BRANCHES[0][0], "name": BRANCHES[0][1]},
                "note": None,
                "_vatRate": vat.rate,
            })
        invoice = supplier_invoice_document(
            number=self.number(SUPPLIER_INVOICES, seq),
            supplier=supplier,
            lines=lines,
            currency=currency,
            status=status,
            document_type=dice.weighted((("Invoice", 92), ("CreditAdj", 5), ("DebitAdj", 3))),
            day=day,
            created_ms=created,
            supplier_reference=f"{dice.between(10000, 999999)}",
            description=f"{lines[0]['transactionDescription']} - {supplier.name}",
            version=1,
        )
        payment = self.payment_of_invoice(seq) if status == "Open" else None
        if payment is not None:  # paid in part: the rest is still owed
            invoice["balance"] = _round(invoice["amount"] - self.amount_paid(payment, invoice["amount"], status))
            invoice["balanceInCurrency"] = _round(invoice["balance"] * rate)
        reason = self.invalid_reason(SUPPLIER_INVOICES, seq)
        if reason == "missing_amount":
            del invoice["amount"]
        elif reason == "garbled_amount":
            invoice["amount"] = f"{invoice['amount']:,.2f}".replace(",", " ").replace(".", ",")
        elif reason == "unknown_currency":
            invoice["currencyId"] = dice.choice(("XXX", "NOKK", "KR"))
        return invoice

    def _purchase_order(self, seq: int, created: int) -> dict[str, Any]:
        dice = Dice(self.seed, PURCHASE_ORDERS, seq)
        supplier = self._supplier_ref(dice.below(self.counts[SUPPLIERS]))
        day = local_date(created)
        status = dice.weighted(_PO_STATUS)
        lines = []
        for line_number in range(1, dice.between(1, 5) + 1):
            account = GL_BY_NUMBER[dice.choice(EXPENSE_ACCOUNTS)]
            quantity = float(dice.between(1, 200))
            unit_cost = dice.money(20, 5000)
            received = quantity if status == "Closed" else float(dice.between(0, int(quantity)))
            lines.append({
                "lineNbr": line_number,
                "branch": {"number": BRANCHES[0][0], "name": BRANCHES[0][1]},
                "inventory": {"number": f"ART-{dice.between(1000, 9999)}",
                              "description": dice.choice(EXPENSE_LINE_TEXTS[account.number])},
                "lineType": "NonStock",
                "warehouse": {"id": "HOVED", "description": "Hovedlager"},
                "lineDescription": dice.choice(EXPENSE_LINE_TEXTS[account.number]),
                "uom": "STK",
                "orderQty": quantity,
                "qtyOnReceipts": received,
                "unitCost": unit_cost,
                "extCost": _round(quantity * unit_cost),
                "discountPercent": 0.0,
                "discountAmount": 0.0,
                "manualDiscount": False,
                "amount": _round(quantity * unit_cost),
                "receivedAmt": _round(received * unit_cost),
                "receiptAction": "AcceptButWarn",
                "taxCategory": {"number": "1", "description": "Høy sats"},
                "account": {"type": account.type, "number": account.number, "description": account.description},
                "requested": visma_date(day + timedelta(days=14)),
                "promised": visma_date(day + timedelta(days=dice.between(7, 30))),
                "completed": status == "Closed",
                "canceled": status == "Cancelled",
                "orderType": "RegularOrder",
                "orderNumber": self.number(PURCHASE_ORDERS, seq),
                "note": None,
            })
        return purchase_order_document(
            number=self.number(PURCHASE_ORDERS, seq), supplier=supplier, lines=lines, status=status, day=day,
            description=f"Innkjøp {lines[0]['lineDescription'].lower()}", promised_days=dice.between(7, 30),
        )

    def _supplier(self, seq: int, created: int) -> dict[str, Any]:
        party = self.party(SUPPLIERS, seq)
        dice = Dice(self.seed, SUPPLIERS + "/status", seq)
        class_id, class_text = SUPPLIER_CLASSES[party.country.code]
        address = _address(party.address, 1000 + seq * 3)
        contact = {"contactId": 5000 + seq, "name": party.name, "attention": party.contact, "email": party.email,
                   "web": None, "phone1": party.phone, "phone2": None, "fax": None}
        return {
            "internalId": party.internal_id,
            "number": party.number,
            "name": party.name,
            "status": dice.weighted((("Active", 90), ("OnHold", 4), ("HoldPayments", 3), ("Inactive", 3))),
            "mainAddress": address,
            "mainContact": contact,
            "accountReference": None,
            "supplierClass": {"id": class_id, "description": class_text},
            "creditTerms": {"id": party.credit_terms[0], "description": party.credit_terms[1]},
            "documentLanguage": party.country.language,
            "currencyId": party.currency,
            "remitAddress": address,
            "remitContact": contact,
            "paymentMethod": {"id": party.payment_method[0], "description": party.payment_method[1]},
            "cashAccount": "1920",
            "chargeBearer": "Shared",
            "accountUsedForPayment": "IBAN" if party.country.code != "NO" else "BBAN",
            "paymentBy": "DueDate",
            "paymentLeadTime": 0,
            "paySeparately": False,
            "supplierAddress": address,
            "supplierContact": contact,
            "location": {"countryId": party.country.code, "id": "MAIN", "name": "Hovedlokasjon"},
            "vatRegistrationId": party.vat,
            "corporateId": party.organisation,
            "vatZone": {"id": "01" if party.country.code == "NO" else "03",
                        "description": "Innenlands" if party.country.code == "NO" else "Utland",
                        "defaultVatCategory": "1"},
            "glAccounts": {
                "supplierAccount": {"type": "Liability", "number": "2400", "description": "Leverandørgjeld"},
                "expenseAccount": {"type": "Expense", "number": "4300",
                                   "description": GL_BY_NUMBER["4300"].description},
            },
            "attributes": [],
            "supplierPaymentMethodDetails": [{
                "paymentMethodDetailDescription": "Kontonummer",
                "paymentMethodDetailValue": f"{dice.between(1000, 9999)}.{dice.between(10, 99)}.{dice.between(10000, 99999)}",
                "paymentMethodDetailID": "ACCOUNT",
            }],
            "retainageApply": False,
            "retainagePct": 0.0,
            "note": None,
            "landedCostSupplier": False,
            "currencyOverride": False,
            "currencyRateOverride": False,
        }

    def _account(self, seq: int, created: int) -> dict[str, Any]:
        account = GL_ACCOUNTS[seq]
        return {
            "accountID": 100 + seq,
            "accountCD": account.number,
            "accountGroupCD": account.number[:2],
            "accountClass": account.account_class,
            "type": account.type,
            "active": True,
            "description": account.description,
            "accountClassDescription": {"EIENDEL": "Eiendeler", "GJELD": "Egenkapital og gjeld",
                                        "INNTEKT": "Inntekter", "KOSTNAD": "Kostnader"}[account.account_class],
            "useDefaultSub": False,
            "postOption": "Summary",
            "currency": None,
            "taxCategory": "1" if account.type in ("Income", "Expense") else None,
            "cashAccount": account.number in ("1900", "1920", "1950"),
            "publicCode1": account.number,
            "controlAccountModule": {"1500": "AR", "2400": "AP"}.get(account.number),
            "allowManualEntry": account.number not in ("1500", "2400"),
        }

    def _customer_invoice(self, seq: int, created: int) -> dict[str, Any]:
        dice = Dice(self.seed, CUSTOMER_INVOICES, seq)
        customer = self.party(CUSTOMERS, dice.below(self.counts[CUSTOMERS]))
        day = local_date(created)
        status = dice.weighted(_AR_STATUS)
        currency = customer.currency
        rate = CURRENCY_RATES_NOK[currency]
        lines = []
        detail = vat_total = 0.0
        for line_number in range(1, dice.between(1, 4) + 1):
            quantity = float(dice.between(1, 50))
            price = dice.money(100, 20000)
            amount = _round(quantity * price)
            detail += amount
            vat_total += amount * 0.25
            lines.append({
                "lineNumber": line_number,
                "inventoryNumber": f"VARE-{dice.between(100, 999)}",
                "description": dice.choice(("Stålkonstruksjon", "Montasje", "Serviceavtale", "Reservedeler",
                                            "Konsulenttimer", "Frakt")),
                "quantity": quantity,
                "unitPrice": _round(price * rate),
                "unitPriceInCurrency": price,
                "amount": _round(amount * rate),
                "amountInCurrency": amount,
                "account": {"type": "Income", "active": True, "number": "3000",
                            "description": GL_BY_NUMBER["3000"].description},
                "vatCode": {"id": "3", "description": "Utgående mva, høy sats"},
                "uom": "STK",
                "discountPercent": 0.0,
                "discountAmount": 0.0,
                "discountAmountInCurrency": 0.0,
                "manualDiscount": False,
                "branchNumber": {"number": BRANCHES[0][0], "name": BRANCHES[0][1]},
            })
        total = _round(detail + vat_total)
        balance = 0.0 if status == "Closed" else total
        return {
            "creditTerms": {"id": customer.credit_terms[0], "description": customer.credit_terms[1]},
            "documentDueDate": visma_date(day + timedelta(days=customer.credit_terms[2])),
            "exchangeRate": rate,
            "taxDetails": [{"taxId": "3", "recordId": 1, "vatId": {"number": "3", "description": "Utgående mva"},
                            "vatRate": 25.0, "taxableAmount": _round(detail), "vatAmount": _round(vat_total)}],
            "invoiceLines": lines,
            "hold": status == "Hold",
            "discountTotal": 0.0,
            "detailTotal": _round(detail),
            "detailTotalInCurrency": _round(detail * rate),
            "vatTaxableTotal": _round(detail),
            "vatExemptTotal": 0.0,
            "paymentReference": f"{dice.between(10**9, 10**10 - 1)}",
            "customer": {"number": customer.number, "name": customer.name},
            "documentType": "Invoice",
            "referenceNumber": self.number(CUSTOMER_INVOICES, seq),
            "postPeriod": f"{day:%m%Y}",
            "financialPeriod": f"{day:%Y%m}",
            "documentDate": visma_date(day),
            "origInvoiceDate": visma_date(day),
            "status": status,
            "currencyId": currency,
            "amount": total,
            "amountInCurrency": _round(total * rate),
            "balance": balance,
            "balanceInCurrency": _round(balance * rate),
            "cashDiscount": 0.0,
            "paymentMethod": {"id": customer.payment_method[0], "description": customer.payment_method[1]},
            "customerRefNumber": f"Best. {dice.between(1000, 9999)}",
            "invoiceText": f"{lines[0]['description']} - {customer.name}",
            "createdDateTime": visma_datetime(created),
            "vatTotal": _round(vat_total),
            "vatTotalInCurrency": _round(vat_total * rate),
            "location": {"countryId": customer.country.code, "id": "MAIN", "name": "Hovedlokasjon"},
            "branchNumber": {"number": BRANCHES[0][0], "name": BRANCHES[0][1]},
            "cashAccount": "1920",
        }

    def _payment(self, seq: int, created: int) -> dict[str, Any]:
        dice = Dice(self.seed, PAYMENTS, seq)
        customer = self.party(CUSTOMERS, dice.below(self.counts[CUSTOMERS]))
        day = local_date(created)
        lines = []
        total = 0.0
        for _ in range(dice.between(1, 3)):
            invoice = self.number(CUSTOMER_INVOICES, dice.below(self.counts[CUSTOMER_INVOICES]))
            paid = dice.money(500, 60000)
            total += paid
            lines.append({"documentType": "Invoice", "refNbr": invoice, "amountPaid": paid, "cashDiscountTaken": 0.0,
                          "balanceWriteOff": 0.0, "date": visma_date(day - timedelta(days=dice.between(10, 40))),
                          "dueDate": visma_date(day), "balance": 0.0, "description": f"Faktura {invoice}",
                          "currency": customer.currency, "postPeriod": f"{day:%m%Y}", "crossRate": 1.0})
        status = dice.weighted((("Closed", 60), ("Open", 25), ("Balanced", 10), ("Hold", 5)))
        total = _round(total)
        rate = CURRENCY_RATES_NOK[customer.currency]
        return {
            "type": "Payment",
            "refNbr": self.number(PAYMENTS, seq),
            "status": status,
            "hold": status == "Hold",
            "applicationDate": visma_date(day),
            "applicationPeriod": f"{day:%Y%m}",
            "paymentRef": f"KID {dice.between(10**9, 10**10 - 1)}",
            "customer": {"number": customer.number, "name": customer.name},
            "location": {"countryId": customer.country.code, "id": "MAIN", "name": "Hovedlokasjon"},
            "paymentMethod": {"id": "BANK", "description": "Bankoverføring"},
            "cashAccount": "1920",
            "currency": customer.currency,
            "paymentAmount": total,
            "paymentAmountInCurrency": _round(total * rate),
            "appliedToDocuments": total if status == "Closed" else 0.0,
            "appliedToOrders": 0.0,
            "availableBalance": 0.0 if status == "Closed" else total,
            "availableBalanceInCurrency": 0.0 if status == "Closed" else _round(total * rate),
            "writeOffAmount": 0.0,
            "financeCharges": 0.0,
            "deductedCharges": 0.0,
            "branch": BRANCHES[0][0],
            "paymentLines": lines,
            "ordersToApply": [],
            "financialDetails": {"paymentDate": visma_date(day)},
        }

    def _supplier_payment(self, seq: int, created: int) -> dict[str, Any]:
        dice = Dice(self.seed, SUPPLIER_PAYMENTS, seq)
        number = self.number(SUPPLIER_PAYMENTS, seq)
        payment_ref = f"{dice.between(10**9, 10**10 - 1)}"
        invoice_seq = self.paid_invoice(seq) if seq < self.counts[SUPPLIER_PAYMENTS] else None
        if invoice_seq is None:  # paid ahead, before any invoice: applied to invoices later
            supplier = self._supplier_ref(dice.below(self.counts[SUPPLIERS]))
            return supplier_payment_document(
                number=number, supplier=supplier, payment_type="Prepayment", day=local_date(created),
                currency=supplier.currency, amount=dice.money(1000, 50000), applications=[], payment_ref=payment_ref,
            )  # fmt: skip
        invoice = self.render(SUPPLIER_INVOICES, invoice_seq)
        supplier = self._supplier_ref(self._invoice_head(invoice_seq)[1])
        day = max(local_date(created), date.fromisoformat(invoice["date"][:10]))
        paid = self.amount_paid(seq, invoice["amount"], invoice["status"])
        return supplier_payment_document(
            number=number, supplier=supplier, payment_type="Payment", day=day, currency=invoice["currencyId"],
            amount=paid, applications=[payment_application(invoice, paid, day)], payment_ref=payment_ref,
        )  # fmt: skip

    def _journal_transaction(self, seq: int, created: int) -> dict[str, Any]:
        dice = Dice(self.seed, JOURNAL_TRANSACTIONS, seq)
        day = local_date(created)
        module = dice.weighted((("ModuleGL", 50), ("ModuleAP", 35), ("ModuleAR", 15)))
        reference = None
        if module == "ModuleAP":
            reference = self.number(SUPPLIER_INVOICES, dice.below(self.counts[SUPPLIER_INVOICES]))
            description = f"Leverandørfaktura {reference}"
            closing = "2400"
        elif module == "ModuleAR":
            reference = self.number(CUSTOMER_INVOICES, dice.below(self.counts[CUSTOMER_INVOICES]))
            description = f"Kundefaktura {reference}"
            closing = "1500"
        else:
            description = dice.choice(("Periodisering husleie", "Avskrivninger", "Lønnsavsetning",
                                       "Korrigering mva", "Bankgebyrer"))
            closing = "1920"
        count = self.journal_line_count(seq)
        department = dice.choice(DEPARTMENTS)
        centre = dice.choice(COST_CENTRES)
        lines = []
        total = 0.0
        for line_number in range(1, count):
            account = GL_BY_NUMBER[dice.choice(EXPENSE_ACCOUNTS)]
            amount = dice.money(100, 50000)
            total += amount
            lines.append(_journal_line(line_number, account, amount, 0.0, description, reference, module,
                                       department, centre))
        total = _round(total)
        lines.append(_journal_line(count, GL_BY_NUMBER[closing], 0.0, total, description, reference, module,
                                   department, centre))
        status = dice.weighted((("Posted", 70), ("Released", 10), ("Balanced", 12), ("Hold", 8)))
        return {
            "module": module,
            "batchNumber": self.number(JOURNAL_TRANSACTIONS, seq),
            "status": status,
            "hold": status == "Hold",
            "transactionDate": visma_date(day),
            "postPeriod": f"{day:%m%Y}",
            "financialPeriod": f"{day:%Y%m}",
            "ledger": "1",
            "ledgerDescription": "Hovedbok",
            "currencyId": COMPANY_CURRENCY,
            "exchangeRate": 1.0,
            "autoReversing": False,
            "reversingEntry": False,
            "description": description,
            "debitTotal": total,
            "debitTotalInCurrency": total,
            "creditTotal": total,
            "creditTotalInCurrency": total,
            "controlTotal": total,
            "controlTotalInCurrency": total,
            "createVatTransaction": False,
            "skipVatAmountValidation": False,
            "transactionCode": {"ModuleGL": "GJ", "ModuleAP": "INV", "ModuleAR": "INV"}[module],
            "transactionCodeDescription": {"ModuleGL": "Generell journal", "ModuleAP": "Leverandørfaktura",
                                           "ModuleAR": "Kundefaktura"}[module],
            "branch": BRANCHES[0][0],
            "journalTransactionLines": lines,
            "attachments": [],
        }

    def dimensions(self, modified_ms: int) -> list[dict[str, Any]]:
        """The dimensions (``DtoDimension``): SUBACCOUNT (department, cost centre) and PROJECT."""

        def segment(segment_id: int, description: str, values: Sequence[tuple[str, str]], dim: str) -> dict[str, Any]:
            stamp = visma_datetime(modified_ms - segment_id * 3_600_000)
            return {
                "internalId": _uuid(self.seed, f"{dim}/{segment_id}"),
                "segmentId": segment_id,
                "description": description,
                "length": len(values[0][0]),
                "publicId": _uuid(self.seed, f"{dim}/{segment_id}/public"),
                "timeStamp": stamp,
                "lastModified": stamp,
                "validate": True,
                "segmentValues": [
                    {"internalId": _uuid(self.seed, f"{dim}/{segment_id}/{value}"), "segmentId": segment_id,
                     "valueId": value, "description": text,
                     "publicId": _uuid(self.seed, f"{dim}/{segment_id}/{value}/public"), "active": True,
                     "timeStamp": stamp, "lastModified": stamp}
                    for value, text in values
                ],
                "isAutoNumber": False,
                "consolNumChar": 0,
                "consolOrder": segment_id,
            }

        return [
            {"id": "SUBACCOUNT", "length": 6, "description": "Underkonto",
             "segments": [segment(1, "Avdeling", DEPARTMENTS, "SUBACCOUNT"),
                          segment(2, "Kostnadssted", COST_CENTRES, "SUBACCOUNT")]},
            {"id": "PROJECT", "length": 5, "description": "Prosjekt",
             "segments": [segment(1, "Prosjekt", PROJECTS, "PROJECT")]},
        ]


def drop_none(value: Any) -> Any:
    """The value without null members (Visma leaves empty fields out of its JSON)."""
    if isinstance(value, dict):
        return {k: drop_none(v) if isinstance(v, dict | list) else v for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) if isinstance(v, dict | list) else v for v in value]
    return value


def _uuid(seed: int, label: str) -> str:
    raw = hashlib.blake2b(f"{seed}/{label}".encode(), digest_size=16).hexdigest()
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"


def _address(address: Address, address_id: int) -> dict[str, Any]:
    return {
        "addressId": address_id,
        "addressLine1": address.line1,
        "addressLine2": None,
        "addressLine3": None,
        "postalCode": address.postal_code,
        "city": address.city,
        "country": {"id": address.country.code, "name": address.country.name},
        "county": None,
    }


def _subaccount(department: tuple[str, str], centre: tuple[str, str]) -> dict[str, Any]:
    return {
        "subaccountNumber": f"{department[0]}-{centre[0]}",
        "subaccountId": int(department[0]) * 1000 + int(centre[0]),
        "description": f"{department[1]} / {centre[1]}",
        "active": True,
        "segments": [
            {"segmentId": 1, "segmentDescription": "Avdeling", "segmentValue": department[0],
             "segmentValueDescription": department[1]},
            {"segmentId": 2, "segmentDescription": "Kostnadssted", "segmentValue": centre[0],
             "segmentValueDescription": centre[1]},
        ],
    }


def _journal_line(
    line_number: int,
    account: GlAccount,
    debit: float,
    credit: float,
    description: str,
    reference: str | None,
    module: str,
    department: tuple[str, str],
    centre: tuple[str, str],
) -> dict[str, Any]:
    return {
        "lineNumber": line_number,
        "accountNumber": account.number,
        "description": account.description,
        "subaccount": _subaccount(department, centre),
        "referenceNumber": reference,
        "debitAmount": debit,
        "debitAmountInCurrency": debit,
        "creditAmount": credit,
        "creditAmountInCurrency": credit,
        "transactionDescription": description,
        "branch": BRANCHES[0][0],
        "module": module,
        "attachments": [],
    }


def supplier_invoice_document(
    *,
    number: str,
    supplier: Party,
    lines: list[dict[str, Any]],
    currency: str,
    status: str,
    document_type: str,
    day: date,
    created_ms: int,
    supplier_reference: str,
    description: str,
    version: int,
) -> dict[str, Any]:
    """A ``SupplierInvoiceDto`` whose totals agree with its lines (lines carry a private ``_vatRate``)."""
    rate = CURRENCY_RATES_NOK.get(currency, 1.0)
    detail = _round(sum(line["costInCurrency"] for line in lines))
    vat_total = _round(sum(line["costInCurrency"] * line.pop("_vatRate", 25.0) / 100 for line in lines))
    amount = _round(detail + vat_total)
    balance = 0.0 if status in ("Closed", "Voided") else amount
    terms = supplier.credit_terms
    due = day + timedelta(days=terms[2])
    return {
        "taxDetailLines": [{"taxId": "1", "recordId": 1, "vatId": {"number": "1", "description": VAT_CODES[0].description},
                            "vatRate": 25.0, "taxableAmount": detail, "vatAmount": vat_total}],
        "invoiceLines": lines,
        "hold": status == "Hold",
        "exchangeRate": rate,
        "paymentRefNo": None,
        "creditTerms": {"id": terms[0], "description": terms[1]},
        "retainageApply": False,
        "cashDiscountDate": visma_date(due),
        "detailTotal": detail,
        "detailTotalInCurrency": _round(detail * rate),
        "discountTotal": 0.0,
        "discountTotalInCurrency": 0.0,
        "vatTaxableTotal": detail,
        "vatTaxableTotalInCurrency": _round(detail * rate),
        "vatExemptTotal": 0.0,
        "vatExemptTotalInCurrency": 0.0,
        "withholdingTax": 0.0,
        "withholdingTaxInCurrency": 0.0,
        "roundingDiff": 0.0,
        "roundingDiffInCurrency": 0.0,
        "amount": amount,
        "vatAmount": vat_total,
        "taxCalculationMode": "TaxSetting",
        "supplierTaxZone": {"id": "01", "description": "Innenlands", "defaultVatCategory": "1"},
        "paySelected": status == "Open",
        "documentVersionNumber": version,
        "supplier": {"internalId": supplier.internal_id, "number": supplier.number, "name": supplier.name},
        "documentType": document_type,
        "referenceNumber": number,
        "postPeriod": f"{day:%m%Y}",
        "financialPeriod": f"{day:%Y%m}",
        "date": visma_date(day),
        "origInvoiceDate": visma_date(day),
        "dueDate": visma_date(due),
        "approvalStatus": _SI_APPROVAL.get(status, "New"),
        "status": status,
        "currencyId": currency,
        "balance": balance,
        "balanceInCurrency": _round(balance * rate),
        "cashDiscount": 0.0,
        "cashDiscountInCurrency": 0.0,
        "paymentMethod": {"id": supplier.payment_method[0], "description": supplier.payment_method[1]},
        "supplierReference": supplier_reference,
        "description": description,
        "createdDateTime": visma_datetime(created_ms),
        "note": None,
        "location": {"countryId": supplier.country.code, "id": "MAIN", "name": "Hovedlokasjon"},
        "vatTotal": vat_total,
        "vatTotalInCurrency": _round(vat_total * rate),
        "branchNumber": {"number": BRANCHES[0][0], "name": BRANCHES[0][1]},
        "payDate": visma_date(due),
        "paymentMessage": None,
        "cashAccount": "1920",
    }


_CURRENCY_NAMES = {"NOK": ("Norske kroner", "kr"), "SEK": ("Svenske kroner", "kr"), "DKK": ("Danske kroner", "kr"),
                   "EUR": ("Euro", "€"), "USD": ("US-dollar", "$"), "GBP": ("Britiske pund", "£")}


def _currency_member(code: str) -> dict[str, Any]:
    """A ``currency`` member as SupplierPaymentDto nests it (an object, where invoices have a bare code)."""
    name, symbol = _CURRENCY_NAMES.get(code, (code, code))
    return {"id": code, "description": name, "symbol": symbol, "isBaseCurrency": code == COMPANY_CURRENCY,
            "decimalPrecision": 2, "isUsedForAccounting": True}


def payment_application(invoice: dict[str, Any], paid: float, day: date) -> dict[str, Any]:
    """A ``SupplierPaymentAdjustmentDto``: ``paid`` of ``invoice`` (a SupplierInvoiceDto, balance after it)."""
    return {
        "branch": BRANCHES[0][0],
        "docType": invoice.get("documentType", "Invoice"),
        "invoiceRefNbr": invoice["referenceNumber"],
        "amountPaid": paid,
        "cashDiscountTaken": 0.0,
        "withholdingTax": 0.0,
        "applicationPeriod": f"{day:%Y%m}",
        "date": invoice.get("date"),
        "dueDate": invoice.get("dueDate"),
        "cashDiscountDate": invoice.get("cashDiscountDate"),
        "balance": invoice.get("balance"),
        "cashDiscountBalance": 0.0,
        "description": invoice.get("description"),
        "currency": invoice.get("currencyId"),
        "postPeriod": f"{day:%m%Y}",
        "supplierRef": invoice.get("supplierReference"),
    }


def supplier_payment_document(
    *,
    number: str,
    supplier: Party,
    payment_type: str,
    day: date,
    currency: str,
    amount: float,
    applications: list[dict[str, Any]],
    payment_ref: str | None,
) -> dict[str, Any]:
    """A released ``SupplierPaymentDto`` of ``amount``: Closed once applied in full, Open while some is unapplied."""
    applied = _round(sum(line["amountPaid"] for line in applications))
    unapplied = _round(amount - applied)
    return {
        "type": payment_type,
        "refNbr": number,
        "status": "Closed" if unapplied == 0 else "Open",
        "hold": False,
        "applicationDate": visma_date(day),
        "applicationPeriod": f"{day:%Y%m}",
        "paymentRef": payment_ref,
        "supplier": {"internalId": supplier.internal_id, "number": supplier.number, "name": supplier.name},
        "location": {"countryId": supplier.country.code, "id": "MAIN", "name": "Hovedlokasjon"},
        "paymentMethod": supplier.payment_method[0],
        "cashAccount": "1920",
        "currency": _currency_member(currency),
        "description": f"Betaling {supplier.name}"[:50],
        "paymentAmount": _round(amount),
        "financeCharges": 0.0,
        "balance": unapplied,
        "unappliedBalance": unapplied,
        "appliedAmount": applied,
        "released": True,
        "branch": BRANCHES[0][0],
        "paymentLines": applications,
    }


def purchase_order_document(
    *,
    number: str,
    supplier: Party,
    lines: list[dict[str, Any]],
    status: str,
    day: date,
    description: str,
    promised_days: int,
) -> dict[str, Any]:
    """A ``PurchaseOrderDto`` whose totals agree with its lines."""
    rate = CURRENCY_RATES_NOK.get(supplier.currency, 1.0)
    line_total = _round(sum(line["amount"] for line in lines))
    tax_total = _round(line_total * 0.25)
    open_qty = sum(line["orderQty"] - line["qtyOnReceipts"] for line in lines)
    open_balance = _round(sum(line["amount"] - line["receivedAmt"] for line in lines) * 1.25)
    return {
        "shippingDestinationType": "CompanyLocation",
        "shipTo": {"internalId": 1, "number": "1", "name": COMPANY_NAME},
        "warehouse": {"id": "HOVED", "description": "Hovedlager"},
        "fobPoint": None,
        "shipVia": None,
        "shipTerms": None,
        "terms": {"id": supplier.credit_terms[0], "description": supplier.credit_terms[1]},
        "supplierVatZone": {"id": "01", "description": "Innenlands", "defaultVatCategory": "1"},
        "discountDetails": [],
        "dontPrint": True,
        "printed": status == "Printed",
        "dontEmail": False,
        "emailed": status not in ("Hold", "Balanced", "PendingPrint"),
        "openQuantity": float(open_qty) if status not in ("Closed", "Cancelled") else 0.0,
        "openBalance": open_balance if status not in ("Closed", "Cancelled") else 0.0,
        "orderType": "RegularOrder",
        "orderNbr": number,
        "hold": status == "Hold",
        "status": status,
        "date": visma_date(day),
        "promisedOn": visma_date(day + timedelta(days=promised_days)),
        "description": description,
        "supplier": {"internalId": supplier.internal_id, "number": supplier.number, "name": supplier.name},
        "location": {"id": 1, "name": "Hovedlokasjon"},
        "currency": supplier.currency,
        "supplierRef": None,
        "exchangeRate": rate,
        "lineTotal": line_total,
        "lineTotalInBaseCurrency": _round(line_total * rate),
        "vatExemptTotal": 0.0,
        "vatExemptTotalInBaseCurrency": 0.0,
        "taxTotal": tax_total,
        "taxTotalInBaseCurrency": _round(tax_total * rate),
        "orderTotal": _round(line_total + tax_total),
        "orderTotalInBaseCurrency": _round((line_total + tax_total) * rate),
        "controlTotal": _round(line_total + tax_total),
        "controlTotalInBaseCurrency": _round((line_total + tax_total) * rate),
        "branch": {"number": BRANCHES[0][0], "name": BRANCHES[0][1]},
        "lines": lines,
        "taxDetails": [{"taxId": "1", "recordId": 1, "vatId": {"number": "1", "description": VAT_CODES[0].description},
                        "vatRate": 25.0, "taxableAmount": line_total, "vatAmount": tax_total}],
        "purchaseReceipts": [],
        "note": None,
    }


__all__ = [
    "ACCOUNTS",
    "COMPANY_TIMEZONE",
    "COUNTRIES",
    "CURRENCIES",
    "CURRENCY_RATES_NOK",
    "CUSTOMER_INVOICES",
    "DAY_MS",
    "GL_ACCOUNTS",
    "JOURNAL_TRANSACTIONS",
    "PAYMENTS",
    "PURCHASE_ORDERS",
    "SUPPLIERS",
    "SUPPLIER_INVOICES",
    "SUPPLIER_PAYMENTS",
    "VISMA_KINDS",
    "Dice",
    "ModificationSchedule",
    "Party",
    "VismaDemoData",
    "company_name",
    "drop_none",
    "from_ms",
    "local_date",
    "organisation_number",
    "payment_application",
    "purchase_order_document",
    "stable_salt",
    "supplier_invoice_document",
    "supplier_payment_document",
    "to_ms",
    "vat_number",
    "visma_date",
    "visma_datetime",
]
