"""Which Visma document of a kind carries a JAGGAER document's marker: what every create and the audit ask.

Visma cannot be asked by the marker ("JAGGAER <label> <id>" in the description), and its change
filter has a lower bound only: the one faithful answer was a listing of every document of the kind
modified since some moment. The audit asked it from the oldest link of its partition (a day synced
ninety days ago read ninety days of supplier invoices, every time), and a create in doubt from its
pending mark. Kept in the ledger's destination index (:mod:`~ml_connector_dagster.core.destination_index`),
the kind is listed whole once and then only as far as it changed: one ``lastModifiedDateTime >=``
listing per push or audit. The watermark is Visma's own timestamp, read back with ``CLOCK_SKEW`` of
overlap for late commits. A deleted document is not in a listing of changes: an update answered 404
says so, and the audit reads back the documents it counts that the listing did not just show.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from ml_connector_dagster.core.destination_index import DestinationIndex, IndexedDestination, Listed, ReadBack
from ml_connector_dagster.core.http import ApiError, NotFound
from ml_connector_dagster.core.ledger import Ledger
from ml_connector_dagster.systems.visma.client import VismaClient, modified_at

from .jaggaer_visma_plan import DocumentKind
from .jaggaer_visma_render import find_marker

__all__ = ["CLOCK_SKEW", "MarkerIndex"]

CLOCK_SKEW = timedelta(minutes=5)  # late commits: a document may show up with a stamp this far behind


class MarkerIndex(IndexedDestination):
    """The kind's Visma documents by the JAGGAER id their marker names, refreshed before it is first read."""

    def __init__(self, client: VismaClient, ledger: Ledger, kind: DocumentKind) -> None:
        self.client, self.kind, self.page_size = client, kind, client.page_size
        super().__init__(DestinationIndex(ledger, f"visma:{kind.entity.value}:jaggaer {kind.label}",
                                          overlap=CLOCK_SKEW))

    def changes(self, since: datetime | None) -> Iterator[Listed]:
        pages = self.client.iter_pages(self.kind.entity) if since is None else self.client.iter_changed(
            self.kind.entity, since)
        for page in pages:
            for raw in page:
                number = raw.get(self.kind.visma_id_field)
                if number is not None:
                    yield Listed(str(number), find_marker(raw.get("description"), self.kind.label), modified_at(raw))

    def read_back(self, dest_ids: list[str]) -> ReadBack:
        """One GET per document (Visma has no multi-get): a 404 is gone."""
        gone: set[str] = set()
        unread: set[str] = set()
        for number in dest_ids:
            try:
                self.client.get(self.kind.entity, number)
            except NotFound:
                gone.add(number)
            except ApiError:
                unread.add(number)
        return ReadBack(gone=gone, unread=unread)
