-- Monitoring views, and the counters behind sync_health. The views are security_invoker = true: they
-- run with the reader's rights, so RLS applies (a view owned by postgres would otherwise show every
-- row to whoever may read the view).
-- requires: 28
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The texts are
-- 17's (the views; sync_health since extended) and 28's (the counting functions). CREATE OR REPLACE
-- VIEW can only add columns at the end; to drop or retype a column, drop the view first in this file
-- (`drop view if exists ...;` before its create).

-- ---------------------------------------------------------------------------------------------
-- The counters (sql/28): delta rows appended by statement triggers, summed by the view
-- ---------------------------------------------------------------------------------------------

-- The statement that appends the deltas of a set of sync-table rows: p_plus counted in, p_minus out
-- (transition tables, or the table itself for the recount), p_links the (Keap id column, link
-- column) pairs of the entity's parent links, flattened. One aggregate over a few columns, grouped
-- before the metrics are spelt out, so a 1,000-row statement costs one small hash aggregate.
create or replace function keap_pipeline.sync_rows_delta_sql(p_entity text, p_plus text, p_minus text, p_links text[])
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_cols text := 'r.deleted_at is null as live, r.sync_status, r.last_synced_at, r.created_at';
    v_group text := '';
    v_metrics text := '';
    v_links text[] := array(select pg_catalog.unnest(p_links));
    v_i integer := 1;
begin
    if p_plus is null and p_minus is null then
        raise exception 'sync_rows_delta_sql: give the rows to count in (p_plus), out (p_minus) or both';
    end if;
    if pg_catalog.cardinality(v_links) % 2 <> 0 then
        raise exception 'sync_rows_delta_sql: links come in pairs (Keap id column, link column), got %', p_links;
    end if;
    while v_i < pg_catalog.cardinality(v_links) loop
        v_cols := v_cols || pg_catalog.format(', (r.%I is not null and r.%I is null) as u%s', v_links[v_i], v_links[v_i + 1], v_i);
        v_group := v_group || pg_catalog.format(', r.u%s', v_i);
        v_metrics := v_metrics || pg_catalog.format(
            E',\n            (%L, case when g.live and g.u%s then g.n end)', 'unlinked:' || v_links[v_i + 1], v_i
        );
        v_i := v_i + 2;
    end loop;
    -- last_synced_at is a high-water mark: a row only when the statement raised the newest of its
    -- live rows (an app's edit of content leaves it as it was, and writes no counter row at all)
    return pg_catalog.format($sql$
        with g as (
            select r.live, r.sync_status%3$s,
                   pg_catalog.sum(r.sign) as n,
                   pg_catalog.sum(r.sign * (extract(epoch from (r.last_synced_at - r.created_at)) * 1000000)::bigint) as micros,
                   pg_catalog.sum(r.sign) filter (where r.last_synced_at is not null) as timed,
                   pg_catalog.max(r.last_synced_at) filter (where r.sign = 1) as newest,
                   pg_catalog.max(r.last_synced_at) filter (where r.sign = -1) as was_newest
            from (%2$s) as r
            group by r.live, r.sync_status%3$s
        )
        insert into public.sync_health_counters (entity_type, metric, n, at)
        select %1$L, m.metric, pg_catalog.sum(m.n), null
        from g
        cross join lateral (values
            ('records', case when g.live then g.n end),
            ('status:' || g.sync_status, case when g.live then g.n end),
            ('deleted', case when not g.live then g.n end),
            ('sync_micros', case when g.live then g.micros end),
            ('timed', case when g.live then g.timed end)%4$s
        ) as m (metric, n)
        group by m.metric
        having pg_catalog.sum(m.n) <> 0
        union all
        select %1$L, 'last_synced_at', 0, t.newest
        from (
            select pg_catalog.max(g.newest) filter (where g.live) as newest,
                   pg_catalog.max(g.was_newest) filter (where g.live) as was_newest
            from g
        ) as t
        where t.newest > coalesce(t.was_newest, '-infinity')$sql$,
        p_entity,
        pg_catalog.concat_ws(
            ' union all ',
            case when p_plus is not null then pg_catalog.format('select 1 as sign, %s from %s as r', v_cols, p_plus) end,
            case when p_minus is not null then pg_catalog.format('select -1 as sign, %s from %s as r', v_cols, p_minus) end
        ),
        v_group,
        v_metrics
    );
end
$$;

comment on function keap_pipeline.sync_rows_delta_sql(text, text, text, text[]) is
    'The INSERT of sync_health_counters deltas for sync-table rows counted in and out; used by define_health_counting and recount_sync_health.';

revoke execute on function keap_pipeline.sync_rows_delta_sql(text, text, text, text[]) from public;

-- The same for a bookkeeping table: what one row counts as (its entity, its metric, whether it
-- counts). sync_conflicts: open conflicts; sync_queue: items by status; dead_letters: open letters
-- (a tag category's under sync_tags, whose run loads them; an entity not in the five is not counted).
create or replace function keap_pipeline.sync_items_delta_sql(p_table regclass, p_plus text, p_minus text)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
    v_item text;
begin
    v_item := case p_table
        when 'public.sync_conflicts'::regclass then
            'r.entity_type::text as entity_type, ''open_conflicts'' as metric, r.resolved_at is null as counts'
        when 'public.sync_queue'::regclass then
            'r.entity_type::text as entity_type, ''queue:'' || r.status as metric, true as counts'
        when 'keap_pipeline.dead_letters'::regclass then
            'case r.entity when ''tag_categories'' then ''sync_tags'' else ''sync_'' || r.entity end as entity_type,'
            ' ''dead_letters'' as metric, r.status = ''open'' as counts'
    end;
    if v_item is null then
        raise exception 'sync_items_delta_sql: no counts defined for %', p_table
            using hint = 'Count public.sync_conflicts, public.sync_queue or keap_pipeline.dead_letters.';
    end if;
    if p_plus is null and p_minus is null then
        raise exception 'sync_items_delta_sql: give the rows to count in (p_plus), out (p_minus) or both';
    end if;
    return pg_catalog.format($sql$
        insert into public.sync_health_counters (entity_type, metric, n)
        select r.entity_type, r.metric, pg_catalog.sum(r.sign)
        from (%s) as r
        where r.counts
          and r.entity_type in ('sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products')
        group by r.entity_type, r.metric
        having pg_catalog.sum(r.sign) <> 0$sql$,
        pg_catalog.concat_ws(
            ' union all ',
            case when p_plus is not null then pg_catalog.format('select 1 as sign, %s from %s as r', v_item, p_plus) end,
            case when p_minus is not null then pg_catalog.format('select -1 as sign, %s from %s as r', v_item, p_minus) end
        )
    );
end
$$;

comment on function keap_pipeline.sync_items_delta_sql(regclass, text, text) is
    'The INSERT of sync_health_counters deltas for rows of sync_conflicts, sync_queue or dead_letters counted in and out.';

revoke execute on function keap_pipeline.sync_items_delta_sql(regclass, text, text) from public;

-- Generates the counting trigger function of one table, keap_pipeline.count_health_<table>(): the
-- statements above written out for INSERT, UPDATE and DELETE as static SQL, so each session plans
-- them once (an EXECUTEd statement was planned on every call: 1.3 ms an app write). No join: a plan
-- made for a small transition table stays linear for a large one. SECURITY DEFINER: an app user's
-- write must count, and app users may not write counts. p_links: a sync table's parent links
-- (an empty array when it has none); NULL for a bookkeeping table.
create or replace function keap_pipeline.define_health_counting(p_table regclass, p_links text[] default null)
returns void
language plpgsql
volatile
set search_path = ''
as $define$
declare
    v_table text := (select c.relname from pg_catalog.pg_class as c where c.oid = p_table);
    v_name text := 'count_health_' || v_table;
    v_sql text[];
begin
    -- a sync table has links (maybe none): its rows are counted by status; a bookkeeping table has none
    v_sql := case when p_links is not null then array[
        keap_pipeline.sync_rows_delta_sql(v_table, 'new_rows', null, p_links),
        keap_pipeline.sync_rows_delta_sql(v_table, 'new_rows', 'old_rows', p_links),
        keap_pipeline.sync_rows_delta_sql(v_table, null, 'old_rows', p_links)
    ] else array[
        keap_pipeline.sync_items_delta_sql(p_table, 'new_rows', null),
        keap_pipeline.sync_items_delta_sql(p_table, 'new_rows', 'old_rows'),
        keap_pipeline.sync_items_delta_sql(p_table, null, 'old_rows')
    ] end;
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
-- transition tables carry no statistics; JIT would compile for imagined costs (see 20-sync-triggers)
set jit = off
as $body$
begin
    -- (a statement that changed no row still fires its statement trigger: INSERT ... ON CONFLICT
    -- fires both INSERT and UPDATE, one of them empty)
    if tg_op = 'INSERT' then
        if exists (select 1 from new_rows) then%2$s;
        end if;
    elsif tg_op = 'UPDATE' then
        if exists (select 1 from new_rows) then%3$s;
        end if;
    elsif tg_op = 'DELETE' then
        if exists (select 1 from old_rows) then%4$s;
        end if;
    end if;
    return null;
end
$body$;
$f$, v_name, v_sql[1], v_sql[2], v_sql[3]);
    execute pg_catalog.format(
        'comment on function keap_pipeline.%I() is %L', v_name,
        'Statement trigger of ' || p_table::text || ': appends its sync_health_counters deltas. Generated by define_health_counting.'
    );
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I() from public, anon, authenticated', v_name);
end
$define$;

comment on function keap_pipeline.define_health_counting(regclass, text[]) is
    'Generates keap_pipeline.count_health_<table>(), the counting statement trigger of a sync or bookkeeping table.';

revoke execute on function keap_pipeline.define_health_counting(regclass, text[]) from public;

-- TRUNCATE fires no row or transition-table trigger: take the table's counts back out. Its writers
-- hold locks TRUNCATE waits for, so every delta of the table is committed and seen here.
create or replace function keap_pipeline.uncount_truncated()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into public.sync_health_counters (entity_type, metric, n)
    select c.entity_type, c.metric, -pg_catalog.sum(c.n)
    from public.sync_health_counters as c
    where case tg_table_name
        when 'sync_conflicts' then c.metric = 'open_conflicts'
        when 'sync_queue' then c.metric like 'queue:%'
        when 'dead_letters' then c.metric = 'dead_letters'
        else c.entity_type = tg_table_name
             and (c.metric in ('records', 'deleted', 'sync_micros', 'timed')
                  or c.metric like 'status:%'
                  or c.metric like 'unlinked:%')
    end
    group by c.entity_type, c.metric
    having pg_catalog.sum(c.n) <> 0;
    return null;
end
$$;

comment on function keap_pipeline.uncount_truncated() is
    'TRUNCATE trigger of the counted tables: appends the deltas that take the truncated table''s counts out of sync_health_counters.';

revoke execute on function keap_pipeline.uncount_truncated() from public, anon, authenticated;

-- The counted tables, with the parent links of the sync tables (keap_pipeline.entities: the links
-- whose parent is an entity; a tag's category is a lookup, as for the checks)
create or replace function keap_pipeline.health_counted_tables()
returns table (counted regclass, links text[])
language sql
immutable
set search_path = ''
as $$
    values
        ('public.sync_contacts'::regclass, array[]::text[]),
        ('public.sync_orders'::regclass, array['keap_contact_id', 'contact_id']),
        ('public.sync_tags'::regclass, array[]::text[]),
        ('public.sync_subscriptions'::regclass, array['keap_contact_id', 'contact_id', 'keap_product_id', 'product_id']),
        ('public.sync_products'::regclass, array[]::text[]),
        ('public.sync_conflicts'::regclass, null),
        ('public.sync_queue'::regclass, null),
        ('keap_pipeline.dead_letters'::regclass, null)
$$;

comment on function keap_pipeline.health_counted_tables() is
    'The tables sync_health_counters counts, and the parent links of the sync tables among them.';

revoke execute on function keap_pipeline.health_counted_tables() from public;

-- Every count from the rows themselves (the timestamps too, but the success facts, which only the
-- ingestion knows). Blocks writers of the counted tables until the caller's transaction ends; run it
-- in a transaction of its own when the counters are in doubt (a data-only restore with triggers
-- disabled, a logical-replication subscriber). The compaction and the recount take the same
-- advisory lock, so neither folds rows the other is replacing.
create or replace function keap_pipeline.recount_sync_health()
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_table record;
    v_rows bigint;
begin
    lock table
        public.sync_contacts, public.sync_orders, public.sync_tags, public.sync_subscriptions, public.sync_products,
        public.sync_conflicts, public.sync_queue, keap_pipeline.dead_letters
    in share mode;
    -- the counters' lock ('kphc', 1), shared with compact_sync_health_counters
    perform pg_catalog.pg_advisory_xact_lock(1802528867, 1);
    delete from public.sync_health_counters as c
    where c.metric not in ('sync_succeeded', 'fresh_as_of');
    -- one records row per entity, zero when empty: the view reads counters once any row is there
    insert into public.sync_health_counters (entity_type, metric, n)
    select e.entity_type, 'records', 0
    from (values ('sync_contacts'), ('sync_orders'), ('sync_tags'), ('sync_subscriptions'), ('sync_products')) as e (entity_type);
    for v_table in select * from keap_pipeline.health_counted_tables() loop
        if v_table.links is not null then
            execute keap_pipeline.sync_rows_delta_sql(
                pg_catalog.split_part(v_table.counted::text, '.', 2), v_table.counted::text, null, v_table.links
            );
        else
            execute keap_pipeline.sync_items_delta_sql(v_table.counted, v_table.counted::text, null);
        end if;
    end loop;
    select pg_catalog.count(*) into v_rows from public.sync_health_counters;
    return v_rows;
end
$$;

comment on function keap_pipeline.recount_sync_health() is
    'Recounts every sync_health counter from the rows (blocking their writers until the transaction ends); returns the counter rows.';

revoke execute on function keap_pipeline.recount_sync_health() from public;

-- the counting functions of the eight tables
select keap_pipeline.define_health_counting(t.counted, t.links) from keap_pipeline.health_counted_tables() as t;

-- Folds the delta rows into one per (entity, metric): the sum of the counts, the newest time; a
-- count that came to zero goes, but every entity keeps its records row (the view reads counters once
-- there is any). Concurrent writers go on appending (their uncommitted rows are not seen, so not
-- folded); a second compaction waits for the first and folds only what is left. The Dagster
-- observation (keap_pipeline/defs/health.py) runs it before it reads the view.
create or replace function keap_pipeline.compact_sync_health_counters()
returns table (rows_before bigint, rows_after bigint)
language plpgsql
volatile
set search_path = ''
as $$
begin
    -- the counters' lock ('kphc', 1), shared with recount_sync_health
    perform pg_catalog.pg_advisory_xact_lock(1802528867, 1);
    return query
    with gone as (
        delete from public.sync_health_counters as c
        returning c.entity_type, c.metric, c.n, c.at
    ),
    kept as (
        insert into public.sync_health_counters (entity_type, metric, n, at)
        select g.entity_type, g.metric, pg_catalog.sum(g.n), pg_catalog.max(g.at)
        from gone as g
        group by g.entity_type, g.metric
        having pg_catalog.sum(g.n) <> 0 or pg_catalog.max(g.at) is not null or g.metric = 'records'
        returning 1
    )
    select (select pg_catalog.count(*) from gone), (select pg_catalog.count(*) from kept);
end
$$;

comment on function keap_pipeline.compact_sync_health_counters() is
    'Folds sync_health_counters into one row per (entity_type, metric); returns the rows before and after.';

revoke execute on function keap_pipeline.compact_sync_health_counters() from public;

-- ---------------------------------------------------------------------------------------------
-- sync_health: one row per entity
-- ---------------------------------------------------------------------------------------------
-- 17 fixed the request's view (it read sync_status, last_synced_at and created_at FROM sync_status,
-- a table that has none of the first two); its columns keep their meaning, of live rows. Since 28
-- they come from the counters for the readers who may read every row (admins, service_role, the
-- owner: the counters' RLS lets exactly them see counter rows), in a few milliseconds at any size.
-- Every other reader (a signed-in app user) sees no counter row, and gets the old count of the rows
-- RLS lets them read (their own, through the created_by index), with the columns they cannot see
-- (dead letters, last sync) NULL. Each half is switched off by a one-time filter: the other is never run.
-- Added columns: open_conflicts (sync_conflicts unresolved), queue_pending and queue_failed
-- (sync_queue status pending / error), open_dead_letters, unresolved_links (live rows with a Keap
-- parent id and no link yet), soft_deleted (deleted_at set), last_successful_sync_at (the end of
-- the last sync that completed and read up to the present) and sync_lag (now minus its start: how
-- old the newest Keap change known to be loaded can be); and, at the end (issue 13),
-- linked_to_deleted_parent: live rows linked to a soft-deleted parent (an order of a contact deleted
-- in Keap stays, linked to it). That one is counted from the rows when the view is read, for both
-- kinds of reader (a parent's deletion changes its children's count, which the counters, appended by
-- each table's own statements, cannot see): one scan of the parents' soft-deleted rows, then their
-- children through the link indexes (idx_sync_orders_contact_id, ...). Last (issue 14):
-- queue_unsupported, the outbound items of entities the pusher has no Keap write path for yet (status
-- 'unsupported': kept, never sent, never dropped).
create or replace view public.sync_health
with (security_invoker = true)
as
with entities (entity_type) as (
    values ('sync_contacts'::varchar(50)), ('sync_orders'), ('sync_tags'), ('sync_subscriptions'), ('sync_products')
),
counted as (
    select c.entity_type, c.metric, pg_catalog.sum(c.n) as n, pg_catalog.max(c.at) as at
    from public.sync_health_counters as c
    group by c.entity_type, c.metric
),
from_counters as (
    select
        e.entity_type,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'records'), 0)::bigint as total_records,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'status:completed'), 0)::bigint as synced,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'status:error'), 0)::bigint as errors,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'status:conflict'), 0)::bigint as conflicts,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'status:pending'), 0)::bigint as pending,
        -- (a sum that came to zero has no row)
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'sync_micros'), 0)
            / nullif(pg_catalog.sum(k.n) filter (where k.metric = 'timed'), 0) / 1000000 as avg_sync_time,
        pg_catalog.max(k.at) filter (where k.metric = 'last_synced_at') as last_synced_at,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'open_conflicts'), 0)::bigint as open_conflicts,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'queue:pending'), 0)::bigint as queue_pending,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'queue:error'), 0)::bigint as queue_failed,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'queue:unsupported'), 0)::bigint as queue_unsupported,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'dead_letters'), 0)::bigint as open_dead_letters,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric like 'unlinked:%'), 0)::bigint as unresolved_links,
        coalesce(pg_catalog.sum(k.n) filter (where k.metric = 'deleted'), 0)::bigint as soft_deleted,
        pg_catalog.max(k.at) filter (where k.metric = 'sync_succeeded') as last_successful_sync_at,
        pg_catalog.now() - pg_catalog.max(k.at) filter (where k.metric = 'fresh_as_of') as sync_lag
    from entities as e
    left join counted as k
        on k.entity_type = e.entity_type
    where exists (select 1 from public.sync_health_counters)
    group by e.entity_type
),
live as (
    select 'sync_contacts'::varchar(50) as entity_type, c.sync_status, c.last_synced_at, c.created_at, c.deleted_at,
           0 as unlinked
    from public.sync_contacts as c
    union all
    select 'sync_orders', o.sync_status, o.last_synced_at, o.created_at, o.deleted_at,
           (o.keap_contact_id is not null and o.contact_id is null)::integer
    from public.sync_orders as o
    union all
    select 'sync_tags', t.sync_status, t.last_synced_at, t.created_at, t.deleted_at, 0
    from public.sync_tags as t
    union all
    select 'sync_subscriptions', s.sync_status, s.last_synced_at, s.created_at, s.deleted_at,
           (s.keap_contact_id is not null and s.contact_id is null)::integer
           + (s.keap_product_id is not null and s.product_id is null)::integer
    from public.sync_subscriptions as s
    union all
    select 'sync_products', p.sync_status, p.last_synced_at, p.created_at, p.deleted_at, 0
    from public.sync_products as p
),
from_rows as (
    select
        e.entity_type,
        pg_catalog.count(l.entity_type) filter (where l.deleted_at is null) as total_records,
        pg_catalog.count(l.entity_type) filter (where l.deleted_at is null and l.sync_status = 'completed') as synced,
        pg_catalog.count(l.entity_type) filter (where l.deleted_at is null and l.sync_status = 'error') as errors,
        pg_catalog.count(l.entity_type) filter (where l.deleted_at is null and l.sync_status = 'conflict') as conflicts,
        pg_catalog.count(l.entity_type) filter (where l.deleted_at is null and l.sync_status = 'pending') as pending,
        pg_catalog.avg(extract(epoch from (l.last_synced_at - l.created_at))) filter (where l.deleted_at is null)
            as avg_sync_time,
        pg_catalog.max(l.last_synced_at) filter (where l.deleted_at is null) as last_synced_at,
        (select pg_catalog.count(*) from public.sync_conflicts as x
         where x.entity_type = e.entity_type and x.resolved_at is null) as open_conflicts,
        (select pg_catalog.count(*) from public.sync_queue as q
         where q.entity_type = e.entity_type and q.status = 'pending') as queue_pending,
        (select pg_catalog.count(*) from public.sync_queue as q
         where q.entity_type = e.entity_type and q.status = 'error') as queue_failed,
        (select pg_catalog.count(*) from public.sync_queue as q
         where q.entity_type = e.entity_type and q.status = 'unsupported') as queue_unsupported,
        null::bigint as open_dead_letters,
        coalesce(pg_catalog.sum(l.unlinked) filter (where l.deleted_at is null), 0)::bigint as unresolved_links,
        pg_catalog.count(l.entity_type) filter (where l.deleted_at is not null) as soft_deleted,
        null::timestamptz as last_successful_sync_at,
        null::interval as sync_lag
    from entities as e
    left join live as l
        on l.entity_type = e.entity_type
    where not exists (select 1 from public.sync_health_counters)
    group by e.entity_type
),
deleted_contacts as materialized (
    select c.id from public.sync_contacts as c where c.deleted_at is not null
),
deleted_products as materialized (
    select p.id from public.sync_products as p where p.deleted_at is not null
),
linked_to_deleted (entity_type, n) as (
    select 'sync_orders'::varchar(50), pg_catalog.count(*)
    from public.sync_orders as o
    where o.deleted_at is null
      and o.contact_id in (select d.id from deleted_contacts as d)
    union all
    select 'sync_subscriptions', pg_catalog.count(*)
    from public.sync_subscriptions as s
    where s.deleted_at is null
      and (
          s.contact_id in (select d.id from deleted_contacts as d)
          or s.product_id in (select d.id from deleted_products as d)
      )
)
select
    h.entity_type, h.total_records, h.synced, h.errors, h.conflicts, h.pending, h.avg_sync_time, h.last_synced_at,
    h.open_conflicts, h.queue_pending, h.queue_failed, h.open_dead_letters, h.unresolved_links, h.soft_deleted,
    h.last_successful_sync_at, h.sync_lag,
    coalesce(l.n, 0)::bigint as linked_to_deleted_parent,
    h.queue_unsupported
from (
    select * from from_counters
    union all
    select * from from_rows
) as h
left join linked_to_deleted as l
    on l.entity_type = h.entity_type;

-- Outbound queue depth per entity and status, with the age of the oldest item.
create or replace view public.sync_queue_depth
with (security_invoker = true)
as
select
    q.entity_type,
    q.status,
    pg_catalog.count(*) as items,
    pg_catalog.min(q.scheduled_at) as oldest_scheduled_at,
    pg_catalog.max(q.attempts) as max_attempts_used
from public.sync_queue as q
group by q.entity_type, q.status;

-- Unresolved conflicts per entity.
create or replace view public.sync_open_conflicts
with (security_invoker = true)
as
select
    c.entity_type,
    pg_catalog.count(*) as open_conflicts,
    pg_catalog.min(c.detected_at) as oldest_detected_at
from public.sync_conflicts as c
where c.resolved_at is null
group by c.entity_type;

revoke all on public.sync_health, public.sync_queue_depth, public.sync_open_conflicts from anon, authenticated, service_role;
grant select on public.sync_health, public.sync_queue_depth, public.sync_open_conflicts to authenticated, service_role;
