-- 28: counters behind public.sync_health (issue 12, "health at a glance"). The view counted the sync
-- tables by status on every read (0.5 s at 1M contacts); an operator's dashboard and the Dagster
-- observation read it every few minutes. Now the writes keep the counts:
-- * public.sync_health_counters: DELTA rows (entity, metric, n, at). The counts are sum(n) per
--   (entity, metric); timestamps are max(at). Statement triggers with transition tables append one
--   row per metric a statement changed (never an UPDATE of a shared row): two loaders, an app's
--   writes and a replay never wait for each other here, and a rolled-back transaction takes its
--   deltas with it. keap_pipeline.compact_sync_health_counters() (sql/functions/60) folds the rows
--   into one per (entity, metric); the Dagster observation calls it every 15 minutes.
-- * The trigger functions are generated per table (define_health_counting: static SQL, planned once
--   a session), from one template per kind of table, as 70 generates the loading functions.
-- * Counted: per sync table, live rows by sync_status, soft-deleted rows, live rows whose Keap parent
--   is not linked yet (the parent links of keap_pipeline.entities), the sum and count of
--   last_synced_at - created_at (the view's avg_sync_time) and the newest last_synced_at; open
--   conflicts (sync_conflicts.resolved_at null), queue items by status (sync_queue), open dead letters
--   (keap_pipeline.dead_letters; tag categories' under sync_tags, which loads them). TRUNCATE takes
--   its table's counts back out. The ingestion adds two facts per successful sync (sync_succeeded,
--   fresh_as_of: keap_pipeline.db.health).
-- * Initialised here from the existing rows (keap_pipeline.recount_sync_health), under locks that
--   keep writers out from the triggers' creation to this file's commit, so no write is missed or
--   counted twice. On a large database this file holds those locks for a few seconds per million
--   rows (3.9 s at 1.1M on a busy two-core machine: docs/benchmarks.md).
-- * Who sees the counters: admins (app_metadata.role = 'admin'), service_role and the owner, the
--   readers who may read every sync row anyway. Other signed-in users see no counter row, and the
--   view (sql/functions/60) counts for them the rows RLS lets them read, as it always did. Nobody but
--   the triggers (SECURITY DEFINER) and the compaction writes a count; the ingestion may add only its
--   success facts. docs/security.md.
-- The functions' texts below are this version's; their current texts are in
-- sql/functions/60-monitoring.sql (edited there, re-applied by migrate).

-- writers wait from here to the commit (readers do not): the counts start exactly where the triggers do
lock table
    public.sync_contacts, public.sync_orders, public.sync_tags, public.sync_subscriptions, public.sync_products,
    public.sync_conflicts, public.sync_queue, keap_pipeline.dead_letters
in share row exclusive mode;

create table public.sync_health_counters (
    id bigint generated always as identity,
    entity_type varchar(50) not null,
    metric text not null,
    n bigint not null default 0,
    at timestamptz,
    constraint sync_health_counters_pkey
        primary key (id),
    constraint sync_health_counters_entity_type_known
        check (entity_type in ('sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products')),
    constraint sync_health_counters_metric_is_a_name
        check (metric ~ '^[a-z_]+(:[a-z_]+)?$')
);

comment on table public.sync_health_counters is
    'Delta rows behind public.sync_health: sum(n) per (entity_type, metric) is the count, max(at) the time. '
    'Appended by statement triggers (and the ingestion''s success facts), folded by keap_pipeline.compact_sync_health_counters().';

-- Supabase's default privileges grant new public tables to the API roles: start from nothing
revoke all on table public.sync_health_counters from public, anon, authenticated, service_role;
alter table public.sync_health_counters enable row level security;
-- read by the security_invoker view: admins through their policy, service_role bypasses RLS
grant select on table public.sync_health_counters to authenticated, service_role;
create policy admins_read on public.sync_health_counters
    for select to authenticated
    using (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');
-- the ingestion reports its successful syncs, nothing else
grant insert (entity_type, metric, n, at) on table public.sync_health_counters to keap_pipeline_ingest;
create policy ingestion_reports_syncs on public.sync_health_counters
    for insert to keap_pipeline_ingest
    with check (metric in ('sync_succeeded', 'fresh_as_of') and n = 0 and at is not null);

-- ---------------------------------------------------------------------------------------------
-- The functions (current texts: sql/functions/60-monitoring.sql)
-- ---------------------------------------------------------------------------------------------

-- The statement that appends the deltas of a set of sync-table rows: p_plus counted in, p_minus out
-- (transition tables, or the table itself for the recount), p_links the (Keap id column, link
-- column) pairs of the entity's parent links, flattened. One aggregate over a few columns, grouped
-- before the metrics are spelt out, so a 1,000-row statement costs one small hash aggregate.
create function keap_pipeline.sync_rows_delta_sql(p_entity text, p_plus text, p_minus text, p_links text[])
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
create function keap_pipeline.sync_items_delta_sql(p_table regclass, p_plus text, p_minus text)
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
create function keap_pipeline.define_health_counting(p_table regclass, p_links text[] default null)
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
create function keap_pipeline.uncount_truncated()
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
create function keap_pipeline.health_counted_tables()
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
create function keap_pipeline.recount_sync_health()
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

-- ---------------------------------------------------------------------------------------------
-- The triggers, then the counts
-- ---------------------------------------------------------------------------------------------

do $triggers$
declare
    v_table regclass;
    v_name text;
    v_function text;
begin
    for v_table in select t.counted from keap_pipeline.health_counted_tables() as t loop
        v_name := (select c.relname from pg_catalog.pg_class as c where c.oid = v_table);
        v_function := pg_catalog.format('keap_pipeline.%I()', 'count_health_' || v_name);
        execute pg_catalog.format(
            'create trigger %I after insert on %s referencing new table as new_rows for each statement execute function %s',
            v_name || '_count_insert', v_table, v_function
        );
        execute pg_catalog.format(
            'create trigger %I after update on %s referencing old table as old_rows new table as new_rows'
            ' for each statement execute function %s',
            v_name || '_count_update', v_table, v_function
        );
        execute pg_catalog.format(
            'create trigger %I after delete on %s referencing old table as old_rows for each statement execute function %s',
            v_name || '_count_delete', v_table, v_function
        );
        execute pg_catalog.format(
            'create trigger %I after truncate on %s for each statement execute function keap_pipeline.uncount_truncated()',
            v_name || '_count_truncate', v_table
        );
    end loop;
end
$triggers$;

select keap_pipeline.recount_sync_health();
