"""Every vendor record parser, fed near-valid records: a record, or an error naming the broken field.

Sources (Visma, JAGGAER, Acumatica) are read through the rules their source asset lands with
(``RecordRules``: timestamp, id, plain form, validation), so the very code a run uses is fuzzed;
destination records (Jira, Asana, monday) through the models their clients parse answers with.
Never any other exception: a crash would fail the page, and with it the good records beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ml_connector_dagster.assets.acumatica import ACUMATICA_SOURCES
from ml_connector_dagster.assets.jaggaer import JAGGAER_SOURCES
from ml_connector_dagster.assets.visma import VISMA_SOURCES
from ml_connector_dagster.systems.asana import models as asana
from ml_connector_dagster.systems.jira import models as jira
from ml_connector_dagster.systems.monday import models as monday

from .mutations import mutated, names_the_place
from .samples import records
from .sources import SOURCES, Source, read_as_the_lander_does

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
@FUZZ
@given(data=st.data())
def test_a_broken_source_record_is_read_or_refused_by_the_name_of_its_field(
    source: Source, data: st.DataObject
) -> None:
    raw, mutation = data.draw(mutated(source.valid_samples()), label="record")
    outcome = read_as_the_lander_does(source.rules, raw)
    if isinstance(outcome, str):
        assert outcome.strip(), "an empty reason"
        if mutation.kind != "whole":
            assert names_the_place(outcome, mutation), f"{mutation}: {outcome!r}"
    else:
        assert mutation.kind != "whole", f"{mutation} was taken for a record"


@dataclass(frozen=True)
class Parser:
    """A destination client's parser of one answer record."""

    name: str
    parse: Callable[[Any], BaseModel]
    system: str
    collection: str


PARSERS = [
    Parser("jira issue", jira.JiraIssue.model_validate, "jira", "issues"),
    Parser("jira field", jira.JiraField.model_validate, "jira", "fields"),
    Parser("jira user", jira.JiraUser.model_validate, "jira", "users"),
    Parser("asana task", asana.Task.model_validate, "asana", "tasks"),
    Parser("asana custom field", asana.CustomField.model_validate, "asana", "custom_fields"),
    Parser("asana project", asana.Project.model_validate, "asana", "projects"),
    Parser("asana user", asana.User.model_validate, "asana", "users"),
    Parser("monday board", monday.Board.model_validate, "monday", "boards"),
    Parser("monday item", monday.Item.from_api, "monday", "items"),
    Parser("monday user", monday.MondayUser.model_validate, "monday", "users"),
]


def test_every_demo_answer_record_parses() -> None:
    for parser in PARSERS:
        for raw in records(parser.system, parser.collection):
            parser.parse(raw)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
@FUZZ
@given(data=st.data())
def test_a_broken_answer_record_parses_or_fails_validation_naming_its_field(
    parser: Parser, data: st.DataObject
) -> None:
    raw, mutation = data.draw(mutated(records(parser.system, parser.collection)), label="record")
    try:
        parser.parse(raw)
    except ValidationError as error:
        if mutation.kind != "whole":
            assert names_the_place(str(error), mutation), f"{mutation}: {error}"


def test_a_monday_item_with_an_unkeyed_column_value_fails_validation_naming_it() -> None:
    raw = dict(records("monday", "items")[0])
    raw["column_values"] = [{"type": "text", "text": "no id"}, *raw["column_values"]]
    with pytest.raises(ValidationError, match=r"column_values\.#0\.id"):
        monday.Item.from_api(raw)


def test_a_monday_item_without_a_name_fails_validation_naming_it() -> None:
    raw = {key: value for key, value in records("monday", "items")[0].items() if key != "name"}
    with pytest.raises(ValidationError, match="name"):
        monday.Item.from_api(raw)


def _id_key(source: Source) -> str:
    """The wire name of a source's record id (Acumatica's is ``id``)."""
    system, name = source.name.split("/")
    assets = {"visma": VISMA_SOURCES, "jaggaer": JAGGAER_SOURCES, "acumatica": ACUMATICA_SOURCES}[system]
    model = next(asset.model for asset in assets if asset.name == name)
    id_field = getattr(model, "id_field", "id")
    return model.model_fields[id_field].alias or id_field


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
@pytest.mark.parametrize("bad_id", ["", "   ", "7" * 256, "10\x0042"])
def test_a_source_record_whose_id_the_ledger_cannot_key_is_refused_by_its_id_field(
    source: Source, bad_id: str
) -> None:
    record = {**source.valid_samples()[0], _id_key(source): bad_id}
    outcome = read_as_the_lander_does(source.rules, record)
    assert isinstance(outcome, str)
    assert _id_key(source) in outcome
