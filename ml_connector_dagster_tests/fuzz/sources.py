"""The source assets' record rules, with the demo records each one reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_connector_dagster.assets.acumatica import ACUMATICA_SOURCES
from ml_connector_dagster.assets.jaggaer import JAGGAER_SOURCES
from ml_connector_dagster.assets.landing import RecordRules
from ml_connector_dagster.assets.visma import VISMA_SOURCES

from .samples import records

__all__ = ["SOURCES", "Source", "read_as_the_lander_does"]

# Visma's simulator's collection for each source whose name differs.
_VISMA_COLLECTION = {"gl_transactions": "journal_transactions", "gl_accounts": "accounts"}


@dataclass(frozen=True)
class Source:
    """One source asset's rules and where its demo records come from."""

    name: str
    rules: RecordRules
    system: str
    collection: str

    def valid_samples(self) -> list[dict[str, Any]]:
        valid = [r for r in records(self.system, self.collection)
                 if not isinstance(self.rules.validate(self.rules.to_plain(r)), str)]  # fmt: skip
        assert valid, f"no valid {self.name} among the demo records"
        return valid


SOURCES = [
    *(
        Source(f"visma/{s.name}", s.rules, "visma", _VISMA_COLLECTION.get(s.name, s.name))
        for s in VISMA_SOURCES
    ),
    *(Source(f"jaggaer/{s.name}", s.rules, "jaggaer", s.name) for s in JAGGAER_SOURCES),
    *(Source(f"acumatica/{s.name}", s.rules, "acumatica", s.name) for s in ACUMATICA_SOURCES),
]


def read_as_the_lander_does(rules: RecordRules, raw: Any) -> object:
    """Timestamp, id, plain form, validation: what ``Lander.take`` asks of one wire record read whole
    (no window); a reason string for a record it would quarantine, else the validated record."""
    record = raw if isinstance(raw, dict) else {"value": raw}
    moment = rules.modified_at(record)
    assert moment is None or moment.tzinfo is not None
    source_id = rules.raw_id(record)
    assert source_id is None or isinstance(source_id, str)
    if moment is None and rules.always_dated:
        return rules.unreadable_timestamp
    return rules.validate(rules.to_plain(record))
