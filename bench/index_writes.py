"""What an index costs the writes: batches through the real upsert functions (and app writes through the triggers), rolled back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from bench.index_timing import act


@dataclass(frozen=True)
class Workload:
    """One batch of writes: staged by `stage` (as the owner), then `run` as `identity`; both timed."""

    name: str
    title: str
    tables: tuple[str, ...]  # the tables whose indexes it writes
    stage: str  # %(batch)s and %(rows)s; "" for none
    run: str  # %(batch)s, %(rows)s, %(ids)s
    identity: str
    rows: int


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "contacts_new", "10k new contacts (first load)",
        ("public.sync_contacts", "public.sync_status", "public.sync_audit_log", "keap_pipeline.stage_contacts"),
        "insert into keap_pipeline.stage_contacts (batch_id, ordinal, keap_id, email, first_name, last_name, phone,"
        " company, tags, custom_fields, keap_created_at, keap_updated_at, content_hash)"
        " select %(batch)s, s.n, (9000000 + s.n)::text, 'new' || s.n || '@d' || (s.n %% 300) || '.example',"
        " s.first_name, s.last_name, s.phone, s.company, s.tags, s.custom_fields, s.keap_created_at, now(),"
        " md5('new' || s.n)::uuid"
        " from (select c.*, row_number() over () as n"
        "       from (select * from public.sync_contacts tablesample system (3) repeatable (21) limit %(rows)s) as c) as s",
        "select * from keap_pipeline.upsert_contacts_from_stage(%(batch)s, 'keap_wins', 'manual')",
        "ingest", 10_000,
    ),
    Workload(
        "contacts_changed", "10k changed contacts (re-sync)",
        ("public.sync_contacts",),
        "insert into keap_pipeline.stage_contacts (batch_id, ordinal, keap_id, email, first_name, last_name, phone,"
        " company, tags, custom_fields, keap_created_at, keap_updated_at, content_hash)"
        " select %(batch)s, row_number() over (), c.keap_id, c.email, c.first_name, c.last_name, c.phone,"
        " coalesce(c.company, 'Company') || ' Ltd', c.tags, c.custom_fields, c.keap_created_at, now(),"
        " md5(c.keap_id || 'v2')::uuid"
        " from (select * from public.sync_contacts tablesample system (3) repeatable (22)"
        "       where keap_id is not null and deleted_at is null limit %(rows)s) as c",
        "select * from keap_pipeline.upsert_contacts_from_stage(%(batch)s, 'keap_wins', 'manual')",
        "ingest", 10_000,
    ),
    Workload(
        "orders_new", "10k new orders (first load)",
        ("public.sync_orders", "keap_pipeline.stage_orders"),
        "insert into keap_pipeline.stage_orders (batch_id, ordinal, keap_id, keap_contact_id, order_number,"
        " order_date, total_amount, currency, status, line_items, shipping_address, billing_address,"
        " keap_updated_at, content_hash)"
        " select %(batch)s, s.n, (9000000 + s.n)::text, s.keap_contact_id, 'NEW-' || s.n,"
        " now() - interval '1 hour' * s.n, s.total_amount, s.currency, s.status, s.line_items, s.shipping_address,"
        " s.billing_address, now(), md5('o' || s.n)::uuid"
        " from (select o.*, row_number() over () as n"
        "       from (select * from public.sync_orders tablesample system (3) repeatable (23) limit %(rows)s) as o) as s",
        "select * from keap_pipeline.upsert_orders_from_stage(%(batch)s, 'keap_wins', 'manual')",
        "ingest", 10_000,
    ),
    Workload(
        "subscriptions_new", "10k new subscriptions (first load)",
        ("public.sync_subscriptions", "keap_pipeline.stage_subscriptions"),
        "insert into keap_pipeline.stage_subscriptions (batch_id, ordinal, keap_id, keap_contact_id, keap_product_id,"
        " keap_subscription_plan_id, status, start_date, end_date, next_bill_date, billing_cycle, billing_frequency,"
        " amount, keap_updated_at, content_hash)"
        " select %(batch)s, s.n, (9000000 + s.n)::text, s.keap_contact_id, s.keap_product_id,"
        " s.keap_subscription_plan_id, s.status, s.start_date, s.end_date, s.next_bill_date, s.billing_cycle,"
        " s.billing_frequency, s.amount, now(), md5('s' || s.n)::uuid"
        " from (select x.*, row_number() over () as n"
        "       from (select * from public.sync_subscriptions tablesample system (25) repeatable (24) limit %(rows)s) as x) as s",
        "select * from keap_pipeline.upsert_subscriptions_from_stage(%(batch)s, 'keap_wins', 'manual')",
        "ingest", 10_000,
    ),
    Workload(
        "app_edits", "1,000 contacts edited in the app by an admin (audit, queue, sync_status by the triggers)",
        ("public.sync_queue",),
        "",
        "update public.sync_contacts set company = coalesce(company, '') || ' (edited)' where id = any(%(ids)s)",
        "admin", 1_000,
    ),
)


def workloads_for(table: str) -> list[Workload]:
    """The workloads that write `table` (schema-qualified)."""
    return [w for w in WORKLOADS if table in w.tables]


def app_edit_ids(conn: psycopg.Connection, rows: int) -> list[uuid.UUID]:
    """Ids of live ingested contacts an admin edits (the same ones every time)."""
    got = conn.execute(
        "select id from public.sync_contacts tablesample system (3) repeatable (25) where deleted_at is null limit %s",
        (rows,),
    ).fetchall()
    return [r[0] for r in got]


def time_batch(
    conn: psycopg.Connection, workload: Workload, ids: list[uuid.UUID], setup: Sequence[sql.Composable] = ()
) -> tuple[float, float]:
    """One batch in a transaction rolled back afterwards: (ms staging, ms of the statement).

    Args:
        conn: a connection as the owner (superuser), outside a transaction.
        workload: the batch.
        ids: for app_edits, the rows to edit.
        setup: statements run first (a DROP INDEX).
    """
    params = {"batch": uuid.uuid4(), "rows": workload.rows, "ids": ids}
    with conn.transaction(force_rollback=True):
        for statement in setup:
            conn.execute(statement)
        stage_ms = 0.0
        if workload.stage:
            t = time.perf_counter()
            conn.execute(workload.stage, params)  # type: ignore[arg-type]  # our own statement text
            stage_ms = (time.perf_counter() - t) * 1000
        act(conn, workload.identity, None)
        t = time.perf_counter()
        cur = conn.execute(workload.run, params)  # type: ignore[arg-type]
        if cur.description is not None:
            cur.fetchall()
        run_ms = (time.perf_counter() - t) * 1000
    return stage_ms, run_ms
