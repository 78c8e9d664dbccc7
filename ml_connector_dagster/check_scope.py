"""Which asset checks a run carries: a sensor's run checks its records, not its whole partition.

A flow's ``reconciled`` check audits a partition against its destination: one Jira issue, Asana task,
monday item or Visma document per record of the day, read back from the destination. A sensor's run
carries changes: a webhook's run a few records, a poll run the records of a window. Auditing the
whole day in each re-read the destination once per webhook and once per poll (an Asana project's
tasks read back, a monday lookup of full items at 876,001 complexity points per 100 records, a Jira
search per 40 records), spent the vendor budgets the next runs needed and, holding the vendor's pool
slot meanwhile, made them wait. Such a check says so in its metadata (:data:`PARTITION_AUDIT`); a
sensor's run carries every other check of its assets (the dead-letter checks read the ledger only)
and leaves the audit to the daily audit of the day that ended (:mod:`~ml_connector_dagster.partition_audits`)
and to backfills and runs started by hand.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

__all__ = ["PARTITION_AUDIT", "audits_partition", "record_checks"]

SCOPE_KEY = "ml_connector/scope"
# The metadata of a check that audits a whole partition against the destination.
PARTITION_AUDIT = {SCOPE_KEY: "partition"}


def audits_partition(spec: dg.AssetCheckSpec) -> bool:
    """Whether the check ``spec`` audits a whole partition against the destination."""
    scope = spec.metadata.get(SCOPE_KEY)
    return getattr(scope, "value", scope) == PARTITION_AUDIT[SCOPE_KEY]


def record_checks(repository: dg.RepositoryDefinition | None,
                  assets: dg.AssetSelection | Iterable[dg.AssetKey]) -> list[dg.AssetCheckKey] | None:  # fmt: skip
    """The checks of ``assets`` a sensor's run carries: all but the partition audits.

    None without a repository (a sensor evaluated on its own in a test): Dagster's default, every check
    of the selected assets.
    """
    if repository is None:
        return None
    graph = repository.asset_graph
    selected = assets.resolve(graph) if isinstance(assets, dg.AssetSelection) else set(assets)
    return sorted((key for key in graph.asset_check_keys
                   if key.asset_key in selected and not audits_partition(graph.get_check_spec(key))),
                  key=lambda key: key.to_user_string())  # fmt: skip
