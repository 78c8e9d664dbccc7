"""Progress bars for long work started from a terminal: tqdm on stderr, for a person watching.

stdout is left to the tables and reports that scripts read. A bar is drawn only when stderr is a
terminal and progress is not switched off: by a command's ``--no-progress``
(:func:`configure_progress`), or for every command by ``ML_CONNECTOR_NO_PROGRESS=1``. Otherwise
:func:`progress_bar` is a silent pass-through, so library code (the sandbox building its tenants,
the benchmarks, chaos runs) can always take its bar from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click
from tqdm import tqdm

if TYPE_CHECKING:
    import dagster as dg

__all__ = [
    "NO_PROGRESS_ENV",
    "configure_progress",
    "no_progress_option",
    "printing_beside_bars",
    "progress_bar",
    "progress_enabled",
    "step_count",
    "step_progress_logger",
]

NO_PROGRESS_ENV = "ML_CONNECTOR_NO_PROGRESS"
T = TypeVar("T")

_switched_on = True


def configure_progress(*, enabled: bool) -> None:
    """Switch bars on or off for this process (a command's ``--no-progress`` says off)."""
    global _switched_on
    _switched_on = enabled


def progress_enabled(stream: TextIO | None = None) -> bool:
    """True when a bar on ``stream`` (default: stderr) would be seen by a person and is wanted."""
    if not _switched_on or os.environ.get(NO_PROGRESS_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    target = sys.stderr if stream is None else stream
    try:
        return bool(target.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable[T] | None = None, *, desc: str, total: float | None = None,
                 unit: str = "it", leave: bool = False) -> tqdm[T]:
    """A bar on stderr over ``iterable`` (or updated by hand up to ``total``); inert when disabled.

    Use it as an iterator or a context manager; ``bar.set_postfix_str(...)`` says what is under way.
    """
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr,
                disable=not progress_enabled(), dynamic_ncols=True)


@contextlib.contextmanager
def printing_beside_bars() -> Iterator[None]:
    """Print lines to the terminal while bars are drawn: the bars step aside and come back after."""
    with tqdm.external_write_mode(file=sys.stderr):
        yield


def no_progress_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--no-progress`` for a click command doing long work (read before the command runs)."""

    def switch(_context: click.Context, _param: click.Parameter, off: bool) -> None:
        configure_progress(enabled=not off)

    return click.option("--no-progress", is_flag=True, expose_value=False, is_eager=True, callback=switch,
                        help=f"Draw no progress bar (bars only ever go to a terminal's stderr; {NO_PROGRESS_ENV}=1 "
                             "turns them off for every command).")(command)


def step_count(job: dg.JobDefinition) -> int:
    """How many steps (ops) a run of ``job`` executes, graph-backed assets counted op by op."""
    import dagster as dg

    def ops_in(graph: dg.GraphDefinition) -> int:
        return sum(ops_in(node.definition) if isinstance(node.definition, dg.GraphDefinition) else 1
                   for node in graph.nodes)

    return ops_in(job.graph)


class _StepsEnded(logging.Handler):
    def __init__(self, bar: tqdm[Any]) -> None:
        super().__init__(logging.DEBUG)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_event", None)
        if event is None or event.event_type_value not in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            return
        if self.bar.total is not None and self.bar.n >= self.bar.total:
            self.bar.total = self.bar.n + 1  # a dynamic fan-out made more steps than the plan showed
        self.bar.update(1)
        self.bar.set_postfix_str(str(event.step_key), refresh=False)


def step_progress_logger(bar: tqdm[Any]) -> dg.LoggerDefinition:
    """A Dagster logger (enable it in run config: ``loggers: {<key>: {}}``) that moves ``bar`` by one
    for each step that ends, succeeded, failed or skipped."""
    import dagster as dg

    def build(_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.Logger("ml_connector.progress", logging.DEBUG)
        log.addHandler(_StepsEnded(bar))
        return log

    return dg.LoggerDefinition(build, description="Counts the steps that end on a terminal progress bar.")
