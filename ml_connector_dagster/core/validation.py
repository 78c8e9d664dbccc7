"""A vendor record validated on its own, its failure told as one line that names every field.

Each vendor's models (``systems/<vendor>/models.py``) say what a record is; this is how any of them is
checked at the boundary, so that a bad record becomes a dead letter naming its field while its
neighbours land.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["describe_error", "validate_record"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_error(error: ValidationError) -> str:
    """One line naming every offending field by its API name: ``totalAmount: Input should be ...``."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(record)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate_record(model: type[ModelT], raw: Any) -> ModelT | str:
    """The record as ``model``, or the reason it is not one (every offending field named)."""
    if not isinstance(raw, Mapping):
        return f"(record): expected an object, got {type(raw).__name__}"
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return describe_error(error)
