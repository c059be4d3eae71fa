"""The entity table (Python) and the staging tables (SQL) describe the same columns, in the same order."""

from __future__ import annotations

import psycopg

from keap_pipeline.db.load import KEY_COLUMNS
from keap_pipeline.entities import ENTITIES


def _columns(db: psycopg.Connection, qualified: str) -> list[tuple[str, str, bool]]:
    return [
        (name, type_, not_null)
        for name, type_, not_null in db.execute(
            "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull"
            " from pg_catalog.pg_attribute a where a.attrelid = %s::regclass and a.attnum > 0"
            " and not a.attisdropped order by a.attnum",
            (qualified,),
        )
    ]


def _normal(pg_type: str) -> str:
    return {"varchar": "character varying", "timestamptz": "timestamp with time zone"}.get(
        pg_type.split("(")[0], pg_type.split("(")[0]
    ) + ("(" + pg_type.split("(")[1] if "(" in pg_type else "")


def test_staging_tables_match_the_entity_table(db: psycopg.Connection) -> None:
    checked = 0
    for entity in ENTITIES.values():
        if entity.staging_table is None:
            continue
        live = _columns(db, entity.staging_table)
        assert live[0][0] == "batch_id", "COPY puts the batch id first"
        expected = [(c.name, _normal(c.pg_type), not c.nullable) for c in entity.staging_columns]
        assert live[1:] == expected, entity.name
        if entity.keys_staging_table:
            keys = [name for name, _, _ in _columns(db, entity.keys_staging_table)]
            assert keys == ["batch_id", *KEY_COLUMNS], entity.name
        checked += 1
    assert checked >= 1
