"""Keap's tag categories into keap_pipeline.tag_categories, before each tags run (the name sync_tags.category shows).

The listing is small (an account has tens of categories) and has no cursor: every tags run reads
it whole and upserts it in one set-based statement, in one transaction, as the ingestion role;
unchanged categories cost no write. A category that cannot be stored (no id, a name too long or
missing, a NUL or lone surrogate, a bad update time) is a dead letter of entity
``tag_categories`` with the field and the rule, committed with the upsert. A category Keap no
longer lists is kept (a tag may still name it).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from keap_pipeline.db.connect import connect
from keap_pipeline.db.dead_letters import NewDeadLetter, record_dead_letters
from keap_pipeline.db.load import begin_load
from keap_pipeline.jsontext import UndecodableRecord, list_spans
from keap_pipeline.keap.client import KeapClient
from keap_pipeline.normalize.fields import Reject, instant_us, required_text, text, utf8
from keap_pipeline.normalize.frame import record_id, valid_id
from keap_pipeline.normalize.timestamps import EPOCH

log = logging.getLogger(__name__)

ENTITY = "tag_categories"
# keap_pipeline.tag_categories (sql/26): keap_id and name are varchar(255)
_LIMIT = 255

_UPSERT = """
    insert into keap_pipeline.tag_categories as t (keap_id, name, description, keap_updated_at)
    select c.keap_id, c.name, c.description, c.keap_updated_at
    from rows from (
        pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[]),
        pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::timestamptz[])
    ) as c (keap_id, name, description, keap_updated_at)
    on conflict (keap_id) do update
    set name = excluded.name,
        description = excluded.description,
        keap_updated_at = excluded.keap_updated_at,
        updated_at = pg_catalog.now()
    where (t.name, t.description, t.keap_updated_at)
        is distinct from (excluded.name, excluded.description, excluded.keap_updated_at)
"""


def _category(record: Any) -> tuple[str, str, str | None, datetime | None]:
    """(keap_id, name, description, update time) of one TagCategory; raises Reject."""
    keap_id = record_id(record, _LIMIT)
    name = required_text(record.get("name"), "name", "name", _LIMIT)
    description = text(record.get("description"), "description", "description", None)
    for field, value in (("id", keap_id), ("name", name), ("description", description)):
        utf8(value, field)
    updated = instant_us(record.get("update_time"), "update_time", required=False)
    return keap_id, name, description, None if updated is None else EPOCH + timedelta(microseconds=updated)


def load_tag_categories(client: KeapClient, database_url: str) -> int:
    """Page through /tags/categories and upsert every category into keap_pipeline.tag_categories.

    Args:
        client: a Keap client.
        database_url: the database.

    Returns:
        How many distinct categories were read and stored (unchanged ones included, dead letters not).

    Raises:
        KeapError: the listing failed (nothing is written).
    """
    rows: dict[str, tuple[str, str, str | None, datetime | None]] = {}
    letters: list[NewDeadLetter] = []
    for page in client.iter_pages(ENTITY, page_size=1000):
        spans = list_spans(page.raw, ENTITY) if page.raw is not None else None
        if spans is not None and len(spans) != len(page.records):
            spans = None
        for i, record in enumerate(page.records):
            raw = page.raw[spans[i][0] : spans[i][1]] if spans is not None and page.raw is not None else None
            if isinstance(record, UndecodableRecord):
                letters.append(NewDeadLetter(None, record, record.reason, None, raw=raw))
                continue
            try:
                row = _category(record)
            except Reject as exc:
                letters.append(NewDeadLetter(valid_id(record, _LIMIT), record, exc.reason, exc.field, raw=raw))
                continue
            rows.pop(row[0], None)
            rows[row[0]] = row  # listed twice: the later one, as for every entity
    columns = list(zip(*rows.values(), strict=True)) if rows else [(), (), (), ()]
    with connect(database_url) as conn:
        begin_load(conn, lock_timeout_seconds=30, relaxed_commit=False)
        if rows:
            conn.execute(_UPSERT, [list(c) for c in columns])
        if letters:
            record_dead_letters(conn, ENTITY, letters, run_id=None)
        conn.commit()
    if letters:
        log.warning("%s: %d categories could not be stored; see the dead letters", ENTITY, len(letters))
    return len(rows)
