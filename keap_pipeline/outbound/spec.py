"""What every entity the pusher sends has in common: reading Keap's current records, comparing them with rows.

An entity's spec (outbound/contacts.py, outbound/tags.py) says how a row becomes requests; the
rest is shared here: Keap's records are read in batches by id, normalized by the ingestion's own
normalizer (so they stage, hash and compare exactly as a sync sees them), and compared with the
rows column by column.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from keap_pipeline.entities import Entity
from keap_pipeline.jsontext import decode_json
from keap_pipeline.outbound.plan import Plan, Step, Unsendable

if TYPE_CHECKING:
    import psycopg

    from keap_pipeline.keap import KeapClient

# ids per listing request when the pusher reads Keap's current records (a URL of ~1.2 kB)
IDS_PER_REQUEST = 100


@dataclass(frozen=True)
class Normalized:
    """Keap records as the ingestion stages them: the frame, each record's values by keap_id, the rejected."""

    frame: pl.DataFrame
    values: dict[str, dict[str, Any]]
    ordinals: dict[str, int]
    rejected: dict[str, str]


def digits(value: Any, field: str) -> str:
    """A Keap id from a row (a tag id, a custom field id): digits, or Unsendable naming the field."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and 0 < len(value) <= 18:
        return value
    raise Unsendable(f"{field} must be Keap ids (strings of digits)")


class OutboundSpec(ABC):
    """How the pusher sends one entity. Subclasses say how a row becomes requests.

    Attributes:
        entity: the entity table's row (target, staging table, normalizer).
        path: the records' path (``/contacts``).
        id_filter: the listing filter that takes a list of ids (``ids``, ``tag_ids``).
        fields: ``fields`` for listings and answers (empty: the endpoint returns whole records).
        compared: the row columns a push brings to Keap (compared with Keap's record).
        created_compared: those a create sends (a record found after a crash must match them).
    """

    entity: Entity
    path: str
    id_filter: str
    fields: tuple[str, ...]
    compared: tuple[str, ...]
    created_compared: tuple[str, ...]
    # how much earlier than the unconfirmed send a record it created may say it was created (clocks differ)
    clock_skew: timedelta = timedelta(minutes=5)

    @property
    def table(self) -> str:
        """The sync table's name (sync_queue.entity_type)."""
        return self.entity.table_name

    def record_path(self, keap_id: str) -> str:
        """The path of one record (its id checked to be digits)."""
        return f"{self.path}/{digits(keap_id, 'keap_id')}"

    def fetch(self, client: KeapClient, keap_ids: Sequence[str]) -> list[Any]:
        """Keap's current records of these ids (the missing ones are deleted or merged in Keap).

        Args:
            client: the Keap client.
            keap_ids: ids, digits.

        Returns:
            The records Keap lists for them.
        """
        records: list[Any] = []
        wanted = sorted(set(keap_ids), key=int)
        for start in range(0, len(wanted), IDS_PER_REQUEST):
            chunk = wanted[start : start + IDS_PER_REQUEST]
            term = f"{self.id_filter}=={','.join(digits(k, 'keap_id') for k in chunk)}"
            for page in client.iter_pages(
                self.entity.endpoint, fields=self.fields or None, filters=(term,), page_size=1000
            ):
                records.extend(page.records)
        return records

    def normalize(self, records: Sequence[Any], fetched_at: datetime | None = None) -> Normalized:
        """Keap records through the ingestion's normalizer: the staging frame and each record's values.

        Args:
            records: records as Keap answered them.
            fetched_at: when they were read (default now).

        Returns:
            The frame (ordinal = position in ``records``), values and ordinals by keap_id (the last
            record of an id wins), and the reasons of the records the ingestion could not load.
        """
        result = self.entity.resolve_normalizer()(list(records), fetched_at=fetched_at or datetime.now(UTC))
        values: dict[str, dict[str, Any]] = {}
        ordinals: dict[str, int] = {}
        jsonb = {c.name for c in self.entity.staging_columns if c.pg_type == "jsonb"}
        for row in result.frame.iter_rows(named=True):
            decoded = {
                k: decode_json(v.encode("utf-8")) if k in jsonb and v is not None else v for k, v in row.items()
            }
            values[row["keap_id"]] = decoded
            ordinals[row["keap_id"]] = row["ordinal"]
        rejected = {r.keap_id: r.reason for r in result.rejected if r.keap_id is not None}
        return Normalized(result.frame, values, ordinals, rejected)

    def same(self, column: str, local: Any, keap: Any) -> bool:
        """Whether the row's value of `column` is what Keap holds (subclasses compare some columns their way)."""
        return bool(local == keap)

    def changed(self, row: dict[str, Any], keap: dict[str, Any], context: Any, columns: Iterable[str] | None = None) -> list[str]:
        """The compared columns whose row value Keap does not hold."""
        return [
            c for c in (self.compared if columns is None else columns)
            if not self.same(c, self.local_value(row, c, context), self.keap_value(keap, c, context))
        ]

    def local_value(self, row: dict[str, Any], column: str, context: Any) -> Any:
        """The row's value of a compared column, in the form Keap's normalized value takes."""
        return row.get(column)

    def keap_value(self, keap: dict[str, Any], column: str, context: Any) -> Any:
        """Keap's normalized value of a compared column."""
        return keap.get(column)

    def matches(self, sent: dict[str, Any], keap: dict[str, Any], context: Any) -> bool:
        """Whether Keap's (normalized) record holds what a create sent (a row as it was sent)."""
        return not self.changed(sent, keap, context, columns=self.created_compared)

    def matches_all(self, sent: dict[str, Any], keap: dict[str, Any], context: Any) -> bool:
        """Whether Keap's record holds a row as it was sent in every compared column (the pusher's own write)."""
        return not self.changed(sent, keap, context)

    def context(self, conn: psycopg.Connection, rows: Sequence[dict[str, Any]]) -> Any:
        """What building this batch's plans needs from the database (tags: the tag categories); None by default."""
        return None

    @abstractmethod
    def create_plan(self, row: dict[str, Any], context: Any) -> Plan:
        """The request that creates the row's record in Keap (its answer's id links the row).

        Raises:
            Unsendable: the row cannot be sent as it is.
        """

    @abstractmethod
    def change_plan(self, row: dict[str, Any], current: dict[str, Any], changed: Sequence[str], context: Any) -> Plan:
        """The requests that bring Keap's record (as Keap answered it) to the row, for these changed columns.

        Raises:
            Unsendable: the row cannot be sent as it is.
        """

    def delete_plan(self, keap_id: str) -> Plan:
        """DELETE the record (a 404 means it is gone already)."""
        step = Step(f"DELETE {self.path}/{{id}}", "DELETE", self.record_path(keap_id), gone_ok=True)
        return Plan(steps=(step,), deletes=True)

    def read_back(self, keap_id: str) -> Step:
        """GET the record as it is now (after requests whose answers are not the record)."""
        params = {"fields": ",".join(self.fields)} if self.fields else {}
        return Step(f"GET {self.path}/{{id}}", "GET", self.record_path(keap_id), params=params, returns_record=True)

    @abstractmethod
    def lookup(self, client: KeapClient, row: dict[str, Any], since: datetime) -> list[Any]:
        """Keap records that an unconfirmed create of this row (sent at or after `since`) may have made."""
