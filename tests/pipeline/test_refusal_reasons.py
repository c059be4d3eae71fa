"""A record PostgreSQL refuses: the dead letter's reason (and the log line) names the condition, the
SQLSTATE, the constraint, column and table, never PostgreSQL's message, which can quote the value."""

from __future__ import annotations

import logging

import psycopg
import pytest

from tests.hostile import letters, reset, wire
from tests.pipeline.conftest import sync

SECRET = "Jane-Private-4711"


def _contact(n: int, **fields: object) -> dict[str, object]:
    return {"id": str(n), "given_name": "Ann", "update_time": f"2024-05-01T10:00:{n:02d}Z", **fields}


@pytest.mark.parametrize(
    ("ddl", "errcode", "expected"),
    [
        # a trigger whose message quotes the value, as "invalid input syntax ...: \"<value>\"" does
        (
            "create function pg_temp_refuse() returns trigger language plpgsql as $$ begin"
            " if new.last_name like 'Jane%' then raise exception 'invalid input syntax for type x: \"%\"', new.last_name"
            " using errcode = '22P02'; end if; return new; end $$;"
            " create trigger refuse before insert or update on public.sync_contacts for each row execute function pg_temp_refuse()",
            "22P02",
            "refused by PostgreSQL: invalid_text_representation (22P02)",
        ),
        # a check constraint: its DETAIL holds the whole failing row
        (
            "alter table public.sync_contacts add constraint no_janes check (last_name not like 'Jane%')",
            "23514",
            "refused by PostgreSQL: check_violation (23514), constraint no_janes, table public.sync_contacts",
        ),
    ],
    ids=["message quoting the value", "check constraint"],
)
def test_reason_names_the_rule_never_the_value(
    sandbox, migrated_database: str, caplog: pytest.LogCaptureFixture, ddl: str, errcode: str, expected: str
) -> None:
    handle = sandbox(contacts=0)
    reset(migrated_database)
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute(ddl.replace("pg_temp_refuse", "public.test_refuse"))
    records = [_contact(1), _contact(2, family_name=SECRET), _contact(3)]
    handle.state.put_raw_contacts([(wire(r), 1_714_557_600_000 + i) for i, r in enumerate(records)])
    caplog.set_level(logging.DEBUG)
    report = sync(handle, migrated_database, run_id="refusal")
    assert report.counts.inserted == 2 and report.dead_lettered == 1
    [letter] = letters(migrated_database)
    assert letter["keap_id"] == "2" and letter["reason"] == expected
    assert SECRET not in letter["reason"] and errcode in letter["reason"]
    assert all(SECRET not in r.getMessage() for r in caplog.records), "a log line quotes the value"
