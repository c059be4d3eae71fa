-- 31: the indexes as measured, query by query (issue 16; bench/bench_indexes.py, the figures are in
-- docs/benchmarks.md "Indexes, query by query", the reasons in docs/schema.md). PostgreSQL 15, 1M
-- contacts, 1M orders.
--
-- A. Contacts by tag and by custom field value get an index they can use: keap_pipeline.contact_lookup.
--    Through RLS no index serves `tags @> ...` or `custom_fields @> ...`: policies are security barriers,
--    and a query's condition becomes an index condition only when its operator is LEAKPROOF, which jsonb's
--    containment and existence operators are not (1.6-2.0 s at 1M, every contact read). Without RLS the
--    GIN indexes return every match unordered: a tag on 4,000 contacts is 4,000 rows to fetch and sort for
--    a page of 50 (30-110 ms at 1M). One btree key per (contact, tag) and per (contact, custom field
--    value), ordered by contact id, makes the newest page of any key an index range. A statement trigger
--    on sync_contacts keeps it (every write path: the ingestion's upsert and app writes); the app reads it
--    through public.contacts_with_tag / public.contacts_by_custom_field (sql/functions/80-contact-lookups.sql).
--    The two GIN indexes (the request's idx_contacts_tags and idx_contacts_custom) then serve no query the
--    app sends and are dropped.

create table keap_pipeline.contact_lookup (
    key uuid not null,
    contact_id uuid not null
);

comment on table keap_pipeline.contact_lookup is
    'One row per (contact, tag) and (contact, custom field value), keyed by keap_pipeline.contact_lookup_key; '
    'kept by the sync_contacts_lookup_* triggers, read by public.contacts_with_tag and public.contacts_by_custom_field.';

-- like the other internal tables: RLS on, no policy, no grant (only the owner's functions read it)
alter table keap_pipeline.contact_lookup enable row level security;

-- The key of a tag ('tag', its Keap id, NULL) or of a custom field value ('field', its Keap id, the JSON
-- value as stored: jsonb's text of a value is canonical, except that a number keeps the digits written).
create function keap_pipeline.contact_lookup_key(p_kind text, p_name text, p_value jsonb)
returns uuid
language sql
immutable
parallel safe
set search_path = ''
as $$
    select pg_catalog.md5(
        p_kind operator(pg_catalog.||) ':' operator(pg_catalog.||) p_name
        operator(pg_catalog.||) coalesce('=' operator(pg_catalog.||) p_value::text, '')
    )::uuid
$$;

-- Every key of one contact's tags and custom fields.
create function keap_pipeline.contact_lookup_keys(p_tags jsonb, p_fields jsonb)
returns setof uuid
language sql
immutable
parallel safe
set search_path = ''
as $$
    select keap_pipeline.contact_lookup_key('tag', t.value, null)
    from pg_catalog.jsonb_array_elements_text(p_tags) as t(value)
    union all
    select keap_pipeline.contact_lookup_key('field', f.key, f.value)
    from pg_catalog.jsonb_each(p_fields) as f
$$;

revoke all on function keap_pipeline.contact_lookup_key(text, text, jsonb) from public;
revoke all on function keap_pipeline.contact_lookup_keys(jsonb, jsonb) from public;

-- SECURITY DEFINER: app users' writes must keep a table they cannot read (as the audit trigger does);
-- a trigger function cannot be called directly. The keys are contact_lookup_keys(tags, custom_fields)
-- written out: a function call per key would cost more than the rest of the trigger (the tests check
-- that the two agree). Updates touch the keys of rows whose tags or custom fields changed only. EXECUTE,
-- as in trigger_sync_on_update: a plan cached for an empty transition table made later large updates
-- quadratic (tests/db/test_sync_triggers.py).
create function keap_pipeline.maintain_contact_lookup()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'INSERT' then
        execute $sql$
            insert into keap_pipeline.contact_lookup (key, contact_id)
            select pg_catalog.md5('tag:' || t.value)::uuid, n.id
            from new_rows as n
            cross join lateral pg_catalog.jsonb_array_elements_text(n.tags) as t(value)
            union all
            select pg_catalog.md5('field:' || f.key || '=' || f.value::text)::uuid, n.id
            from new_rows as n
            cross join lateral pg_catalog.jsonb_each(n.custom_fields) as f
            on conflict do nothing
        $sql$;
    elsif tg_op = 'UPDATE' then
        execute $sql$
            delete from keap_pipeline.contact_lookup as l
            using (
                select pg_catalog.md5('tag:' || t.value)::uuid as key, o.id
                from old_rows as o
                join new_rows as n
                    on n.id = o.id
                   and n.tags is distinct from o.tags
                cross join lateral pg_catalog.jsonb_array_elements_text(o.tags) as t(value)
                union all
                select pg_catalog.md5('field:' || f.key || '=' || f.value::text)::uuid, o.id
                from old_rows as o
                join new_rows as n
                    on n.id = o.id
                   and n.custom_fields is distinct from o.custom_fields
                cross join lateral pg_catalog.jsonb_each(o.custom_fields) as f
            ) as gone
            where l.key = gone.key
              and l.contact_id = gone.id
        $sql$;
        execute $sql$
            insert into keap_pipeline.contact_lookup (key, contact_id)
            select pg_catalog.md5('tag:' || t.value)::uuid, n.id
            from new_rows as n
            join old_rows as o
                on o.id = n.id
               and o.tags is distinct from n.tags
            cross join lateral pg_catalog.jsonb_array_elements_text(n.tags) as t(value)
            union all
            select pg_catalog.md5('field:' || f.key || '=' || f.value::text)::uuid, n.id
            from new_rows as n
            join old_rows as o
                on o.id = n.id
               and o.custom_fields is distinct from n.custom_fields
            cross join lateral pg_catalog.jsonb_each(n.custom_fields) as f
            on conflict do nothing
        $sql$;
    else
        execute $sql$
            delete from keap_pipeline.contact_lookup as l
            using (
                select pg_catalog.md5('tag:' || t.value)::uuid as key, o.id
                from old_rows as o
                cross join lateral pg_catalog.jsonb_array_elements_text(o.tags) as t(value)
                union all
                select pg_catalog.md5('field:' || f.key || '=' || f.value::text)::uuid, o.id
                from old_rows as o
                cross join lateral pg_catalog.jsonb_each(o.custom_fields) as f
            ) as gone
            where l.key = gone.key
              and l.contact_id = gone.id
        $sql$;
    end if;
    return null;
end
$$;

revoke all on function keap_pipeline.maintain_contact_lookup() from public;

create trigger sync_contacts_lookup_insert
    after insert on public.sync_contacts
    referencing new table as new_rows
    for each statement execute function keap_pipeline.maintain_contact_lookup();
create trigger sync_contacts_lookup_update
    after update on public.sync_contacts
    referencing old table as old_rows new table as new_rows
    for each statement execute function keap_pipeline.maintain_contact_lookup();
create trigger sync_contacts_lookup_delete
    after delete on public.sync_contacts
    referencing old table as old_rows
    for each statement execute function keap_pipeline.maintain_contact_lookup();

-- the contacts already loaded, then the key (built once from them, not grown by 8 million inserts)
insert into keap_pipeline.contact_lookup (key, contact_id)
select distinct k.key, k.id
from (
    select pg_catalog.md5('tag:' || t.value)::uuid as key, c.id
    from public.sync_contacts as c
    cross join lateral pg_catalog.jsonb_array_elements_text(c.tags) as t(value)
    union all
    select pg_catalog.md5('field:' || f.key || '=' || f.value::text)::uuid, c.id
    from public.sync_contacts as c
    cross join lateral pg_catalog.jsonb_each(c.custom_fields) as f
) as k;
alter table keap_pipeline.contact_lookup
    add constraint contact_lookup_pkey
        primary key (key, contact_id);

drop index public.idx_contacts_tags;
drop index public.idx_contacts_custom;

-- B. The others, each by the queries it serves (bench/dashboard_queries.py; with and without it).
-- * idx_sync_contacts_sync_status becomes (updated_at desc, sync_status), still partial on the unsynced
--   rows: the work list (`sync_status <> 'completed' ... order by updated_at desc`) and a status page
--   (`sync_status = 'error' ... order by updated_at desc`) read it in order and stop after a page; on
--   (sync_status) alone they fetched and sorted every unsynced row (40,000 at 1M).
drop index public.idx_sync_contacts_sync_status;
create index idx_sync_contacts_sync_status
    on public.sync_contacts (updated_at desc, sync_status)
    where sync_status <> 'completed';

-- * idx_sync_contacts_updated_at is dropped: what it served is now served by idx_active_contacts (the
--   completed rows, newest first), idx_sync_contacts_sync_status (the others) and contact_lookup (tags and
--   custom fields), and updated_at changes on every write, so each update wrote an entry here.
drop index public.idx_sync_contacts_updated_at;

-- * idx_sync_orders_date_status is partial on `sync_status <> 'completed'` (the request's predicate) and
--   live rows: 13's `sync_status in ('pending', 'error', 'conflict')` is the same set (a check constraint
--   says so), but the planner cannot prove `<> 'completed'` implies it, so the work list as the app writes
--   it never used the index; `in (...)` implies `<> 'completed'`, so both forms use it now.
drop index public.idx_sync_orders_date_status;
create index idx_sync_orders_date_status
    on public.sync_orders (order_date desc, sync_status)
    where sync_status <> 'completed'
      and deleted_at is null;

-- * idx_audit_log_created (the request's BRIN) is dropped: no query chose it; idx_audit_created (btree)
--   serves the time ranges and the newest-first reads that BRIN cannot order.
drop index public.idx_audit_log_created;

-- * idx_sync_conflicts_detected and idx_sync_conflicts_resolved are replaced by idx_sync_conflicts_open:
--   the open conflicts newest first are a range of a partial index (a few thousand rows) instead of every
--   NULL of resolved_at fetched and sorted; no query read detected_at alone.
drop index public.idx_sync_conflicts_detected;
drop index public.idx_sync_conflicts_resolved;
create index idx_sync_conflicts_open
    on public.sync_conflicts (detected_at desc)
    where resolved_at is null;

-- * idx_sync_orders_status (status alone: four values, the largest 62% of the orders) is dropped: orders
--   by status and date range read idx_sync_orders_order_date and filter the status.
drop index public.idx_sync_orders_status;

-- * idx_sync_queue_status is dropped: the worker's claim orders by (priority, scheduled_at) and reads
--   idx_sync_queue_priority; no query read (status, scheduled_at).
drop index public.idx_sync_queue_status;

-- * idx_sync_tags_name (13's, for the dropped unique name) is dropped: 2,000 tags are read faster
--   without it (1.2x with it through RLS, 0.9x as service_role); tags are a small table.
drop index public.idx_sync_tags_name;
