-- 28: counters behind public.sync_health (issue 12, "health at a glance"). The view counted the sync
-- tables by status on every read (0.5 s at 1M contacts); an operator's dashboard and the Dagster
-- observation read it every few minutes. Now the writes keep the counts:
-- * public.sync_health_counters: DELTA rows (entity, metric, n, at). The counts are sum(n) per
--   (entity, metric); timestamps are max(at). Statement triggers with transition tables append one
--   row per metric a statement changed (never an UPDATE of a shared row): two loaders, an app's
--   writes and a replay never wait for each other here, and a rolled-back transaction takes its
--   deltas with it. keap_pipeline.compact_sync_health_counters() (sql/functions/60) folds the rows
--   into one per (entity, metric); the Dagster observation calls it every 15 minutes.
-- * Counted: per sync table, live rows by sync_status, soft-deleted rows, live rows whose Keap parent
--   is not linked yet (the parent links of keap_pipeline.entities), the sum and count of
--   last_synced_at - created_at (the view's avg_sync_time) and the newest last_synced_at; open
--   conflicts (sync_conflicts.resolved_at null), queue items by status (sync_queue), open dead letters
--   (keap_pipeline.dead_letters; tag categories' under sync_tags, which loads them). TRUNCATE takes
--   its table's counts back out. The ingestion adds two facts per successful sync (sync_succeeded,
--   fresh_as_of: keap_pipeline.db.health).
-- * Initialised here from the existing rows (keap_pipeline.recount_sync_health), under locks that
--   keep writers out from the triggers' creation to this file's commit, so no write is missed or
--   counted twice. On a large database this file holds those locks for about a second per million rows.
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
-- (transition tables, or a table for the recount), p_links the (Keap id column, link column) pairs of
-- the entity's parent links, flattened. One aggregate over a few columns, grouped before the metrics
-- are spelt out, so a 1,000-row statement costs one small hash aggregate. $1 is the entity_type.
create function keap_pipeline.sync_rows_delta_sql(p_plus text, p_minus text, p_links text[])
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_cols text := 'r.deleted_at is null as live, r.sync_status, r.last_synced_at, r.created_at';
    v_group text := '';
    v_metrics text := '';
    v_rows text;
    v_links text[] := array(select pg_catalog.unnest(p_links));  -- from 1, whatever the bounds (TG_ARGV's start at 0)
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
            E',\n            (%L, case when g.live and g.u%s then g.n end, null::timestamptz)', 'unlinked:' || v_links[v_i + 1], v_i
        );
        v_i := v_i + 2;
    end loop;
    v_rows := pg_catalog.concat_ws(
        ' union all ',
        case when p_plus is not null then pg_catalog.format('select 1 as sign, %s from %s as r', v_cols, p_plus) end,
        case when p_minus is not null then pg_catalog.format('select -1 as sign, %s from %s as r', v_cols, p_minus) end
    );
    return pg_catalog.format($sql$
        with g as (
            select r.live, r.sync_status%2$s,
                   pg_catalog.sum(r.sign) as n,
                   pg_catalog.sum(r.sign * (extract(epoch from (r.last_synced_at - r.created_at)) * 1000000)::bigint) as micros,
                   pg_catalog.sum(r.sign) filter (where r.last_synced_at is not null) as timed,
                   pg_catalog.max(r.last_synced_at) filter (where r.sign = 1) as newest
            from (%1$s) as r
            group by r.live, r.sync_status%2$s
        )
        insert into public.sync_health_counters (entity_type, metric, n, at)
        select $1, m.metric, coalesce(pg_catalog.sum(m.n), 0), pg_catalog.max(m.at)
        from g
        cross join lateral (values
            ('records', case when g.live then g.n end, null::timestamptz),
            ('status:' || g.sync_status, case when g.live then g.n end, null),
            ('deleted', case when not g.live then g.n end, null),
            ('sync_micros', case when g.live then g.micros end, null),
            ('timed', case when g.live then g.timed end, null),
            ('last_synced_at', null, case when g.live then g.newest end)%3$s
        ) as m (metric, n, at)
        group by m.metric
        having pg_catalog.sum(m.n) <> 0 or pg_catalog.max(m.at) is not null
    $sql$, v_rows, v_group, v_metrics);
end
$$;

comment on function keap_pipeline.sync_rows_delta_sql(text, text, text[]) is
    'The INSERT of sync_health_counters deltas for sync-table rows (count in, count out); used by count_sync_rows and recount_sync_health.';

revoke execute on function keap_pipeline.sync_rows_delta_sql(text, text, text[]) from public;

-- Statement trigger of the five sync tables (INSERT, UPDATE, DELETE; arguments: the parent links'
-- column pairs). SECURITY DEFINER: an app user's write must count, and app users may not write counts.
create function keap_pipeline.count_sync_rows()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
-- transition tables carry no statistics; JIT would compile for imagined costs (see 20-sync-triggers)
set jit = off
as $$
begin
    if tg_op = 'DELETE' then
        if not exists (select 1 from old_rows) then
            return null;
        end if;
    elsif not exists (select 1 from new_rows) then
        return null;
    end if;
    execute keap_pipeline.sync_rows_delta_sql(
        case when tg_op <> 'DELETE' then 'new_rows' end,
        case when tg_op <> 'INSERT' then 'old_rows' end,
        tg_argv
    )
    using tg_table_name;
    return null;
end
$$;

comment on function keap_pipeline.count_sync_rows() is
    'Sync tables: appends the sync_health_counters deltas of a statement (rows by status, soft-deleted, unlinked, sync times).';

revoke execute on function keap_pipeline.count_sync_rows() from public, anon, authenticated;

-- What one row of a bookkeeping table counts as: its entity, its metric and whether it counts at all.
-- sync_conflicts: open conflicts; sync_queue: items by status; dead_letters: open letters (a tag
-- category's under sync_tags, whose run loads them; an entity not in the five is not counted).
create function keap_pipeline.count_sync_items()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
set jit = off
as $$
declare
    v_item text;
    v_rows text;
begin
    v_item := case tg_table_schema || '.' || tg_table_name
        when 'public.sync_conflicts' then
            'r.entity_type::text as entity_type, ''open_conflicts'' as metric, r.resolved_at is null as counts'
        when 'public.sync_queue' then
            'r.entity_type::text as entity_type, ''queue:'' || r.status as metric, true as counts'
        when 'keap_pipeline.dead_letters' then
            'case r.entity when ''tag_categories'' then ''sync_tags'' else ''sync_'' || r.entity end as entity_type,'
            ' ''dead_letters'' as metric, r.status = ''open'' as counts'
    end;
    if v_item is null then
        raise exception 'count_sync_items: no counts defined for %.%', tg_table_schema, tg_table_name
            using hint = 'Attach it to public.sync_conflicts, public.sync_queue or keap_pipeline.dead_letters only.';
    end if;
    if tg_op = 'DELETE' then
        if not exists (select 1 from old_rows) then
            return null;
        end if;
    elsif not exists (select 1 from new_rows) then
        return null;
    end if;
    v_rows := pg_catalog.concat_ws(
        ' union all ',
        case when tg_op <> 'DELETE' then pg_catalog.format('select 1 as sign, %s from new_rows as r', v_item) end,
        case when tg_op <> 'INSERT' then pg_catalog.format('select -1 as sign, %s from old_rows as r', v_item) end
    );
    execute pg_catalog.format($sql$
        insert into public.sync_health_counters (entity_type, metric, n)
        select r.entity_type, r.metric, pg_catalog.sum(r.sign)
        from (%s) as r
        where r.counts
          and r.entity_type in ('sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products')
        group by r.entity_type, r.metric
        having pg_catalog.sum(r.sign) <> 0
    $sql$, v_rows);
    return null;
end
$$;

comment on function keap_pipeline.count_sync_items() is
    'sync_conflicts, sync_queue, dead_letters: appends the sync_health_counters deltas of a statement (open conflicts, queue items by status, open dead letters).';

revoke execute on function keap_pipeline.count_sync_items() from public, anon, authenticated;

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
    for v_table in
        select t.name, t.links
        from (values
            ('sync_contacts', array[]::text[]),
            ('sync_orders', array['keap_contact_id', 'contact_id']),
            ('sync_tags', array[]::text[]),
            ('sync_subscriptions', array['keap_contact_id', 'contact_id', 'keap_product_id', 'product_id']),
            ('sync_products', array[]::text[])
        ) as t (name, links)
    loop
        execute keap_pipeline.sync_rows_delta_sql(pg_catalog.format('public.%I', v_table.name), null, v_table.links)
        using v_table.name;
    end loop;
    insert into public.sync_health_counters (entity_type, metric, n)
    select x.entity_type, x.metric, x.n
    from (
        select c.entity_type::text as entity_type, 'open_conflicts' as metric, pg_catalog.count(*) as n
        from public.sync_conflicts as c
        where c.resolved_at is null
        group by c.entity_type
        union all
        select q.entity_type::text, 'queue:' || q.status, pg_catalog.count(*)
        from public.sync_queue as q
        group by q.entity_type, q.status
        union all
        select case d.entity when 'tag_categories' then 'sync_tags' else 'sync_' || d.entity end, 'dead_letters', pg_catalog.count(*)
        from keap_pipeline.dead_letters as d
        where d.status = 'open'
        group by 1
    ) as x
    where x.entity_type in ('sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products');
    select pg_catalog.count(*) into v_rows from public.sync_health_counters;
    return v_rows;
end
$$;

comment on function keap_pipeline.recount_sync_health() is
    'Recounts every sync_health counter from the rows (blocking their writers until the transaction ends); returns the counter rows.';

revoke execute on function keap_pipeline.recount_sync_health() from public;

-- ---------------------------------------------------------------------------------------------
-- The triggers, then the counts
-- ---------------------------------------------------------------------------------------------

do $triggers$
declare
    v_table record;
    v_args text;
begin
    for v_table in
        select t.name, t.links
        from (values
            ('sync_contacts', array[]::text[]),
            ('sync_orders', array['keap_contact_id', 'contact_id']),
            ('sync_tags', array[]::text[]),
            ('sync_subscriptions', array['keap_contact_id', 'contact_id', 'keap_product_id', 'product_id']),
            ('sync_products', array[]::text[])
        ) as t (name, links)
    loop
        v_args := (select pg_catalog.string_agg(pg_catalog.quote_literal(l), ', ') from pg_catalog.unnest(v_table.links) as l);
        execute pg_catalog.format(
            'create trigger %I after insert on public.%I referencing new table as new_rows'
            ' for each statement execute function keap_pipeline.count_sync_rows(%s)',
            v_table.name || '_count_insert', v_table.name, v_args
        );
        execute pg_catalog.format(
            'create trigger %I after update on public.%I referencing old table as old_rows new table as new_rows'
            ' for each statement execute function keap_pipeline.count_sync_rows(%s)',
            v_table.name || '_count_update', v_table.name, v_args
        );
        execute pg_catalog.format(
            'create trigger %I after delete on public.%I referencing old table as old_rows'
            ' for each statement execute function keap_pipeline.count_sync_rows(%s)',
            v_table.name || '_count_delete', v_table.name, v_args
        );
        execute pg_catalog.format(
            'create trigger %I after truncate on public.%I for each statement execute function keap_pipeline.uncount_truncated()',
            v_table.name || '_count_truncate', v_table.name
        );
    end loop;

    for v_table in
        select t.name
        from (values ('public.sync_conflicts'), ('public.sync_queue'), ('keap_pipeline.dead_letters')) as t (name)
    loop
        execute pg_catalog.format(
            'create trigger %I after insert on %s referencing new table as new_rows'
            ' for each statement execute function keap_pipeline.count_sync_items()',
            pg_catalog.split_part(v_table.name, '.', 2) || '_count_insert', v_table.name
        );
        execute pg_catalog.format(
            'create trigger %I after update on %s referencing old table as old_rows new table as new_rows'
            ' for each statement execute function keap_pipeline.count_sync_items()',
            pg_catalog.split_part(v_table.name, '.', 2) || '_count_update', v_table.name
        );
        execute pg_catalog.format(
            'create trigger %I after delete on %s referencing old table as old_rows'
            ' for each statement execute function keap_pipeline.count_sync_items()',
            pg_catalog.split_part(v_table.name, '.', 2) || '_count_delete', v_table.name
        );
        execute pg_catalog.format(
            'create trigger %I after truncate on %s for each statement execute function keap_pipeline.uncount_truncated()',
            pg_catalog.split_part(v_table.name, '.', 2) || '_count_truncate', v_table.name
        );
    end loop;
end
$triggers$;

select keap_pipeline.recount_sync_health();
