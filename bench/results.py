"""What a scenario hands to the report: a table of figures, the targets it checks, and notes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, Field

__all__ = ["Outcome", "Target", "timed"]

T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """``call()``'s value and the wall-clock seconds it took."""
    began = time.perf_counter()
    value = call()
    return value, time.perf_counter() - began


class Target(BaseModel):
    """One target of the issue: the measured value, what it must reach, and whether it does."""

    name: str
    value: float
    goal: str
    holds: bool


class Outcome(BaseModel):
    """One scenario's figures (all measured in one run)."""

    key: str
    title: str
    rerun: str = Field(description="The command that runs this scenario alone.")
    headers: list[str] = Field(default_factory=list)
    rows: list[list[str]] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    figures: dict[str, float] = Field(default_factory=dict, description="Key figures, for tests and trends.")
