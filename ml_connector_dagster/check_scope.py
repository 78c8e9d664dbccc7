"""Which asset checks a run carries: a webhook's run checks its records, not its whole partition.

A flow's ``reconciled`` check audits a partition against its destination: one Jira issue, Asana task,
monday item or Visma document per record of the day, read back from the destination. A poll or
backfill run carries the partition's changes, so it runs the audit as well. A webhook's run carries
a few records of that day: auditing the whole day each time re-read the destination once per webhook
(an Asana project listed page by page, a monday lookup of full items at 876,001 complexity points per
100 records), spent the vendor budgets the next webhooks needed and, holding the vendor's pool slot
meanwhile, made them wait. Such a check says so in its metadata (:data:`PARTITION_AUDIT`); a
webhook's run carries every other check of its assets (the dead-letter checks read the ledger only)
and leaves the audit to the next poll or backfill run of the partition.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

__all__ = ["PARTITION_AUDIT", "record_checks"]

SCOPE_KEY = "ml_connector/scope"
# The metadata of a check that audits a whole partition against the destination.
PARTITION_AUDIT = {SCOPE_KEY: "partition"}


def _audits_partition(spec: dg.AssetCheckSpec) -> bool:
    scope = spec.metadata.get(SCOPE_KEY)
    return getattr(scope, "value", scope) == PARTITION_AUDIT[SCOPE_KEY]


def record_checks(repository: dg.RepositoryDefinition | None,
                  assets: Iterable[dg.AssetKey]) -> list[dg.AssetCheckKey] | None:  # fmt: skip
    """The checks of ``assets`` a webhook's run carries: all but the partition audits.

    None without a repository (a sensor evaluated on its own in a test): Dagster's default, every check
    of the selected assets.
    """
    if repository is None:
        return None
    graph = repository.asset_graph
    selected = set(assets)
    return sorted((key for key in graph.asset_check_keys
                   if key.asset_key in selected and not _audits_partition(graph.get_check_spec(key))),
                  key=lambda key: key.to_user_string())  # fmt: skip
