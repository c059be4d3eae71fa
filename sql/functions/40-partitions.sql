-- Audit-log maintenance: monthly partitions ahead, retention, and the pg_cron jobs that run them.
-- requires: 15
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The texts are
-- those of 11 and 15. 15 also RAN create_monthly_partition and schedule_maintenance_jobs once; that
-- is data, and stays there: re-applying this file only redefines the functions.

-- Creates the audit partitions of the month of p_month and the three months after it, idempotently,
-- and returns the names it created. Without blocking writers of the audit log: each partition is
-- created standalone (with a CHECK matching its bounds, so ATTACH skips the validation scan) and then
-- attached, which takes only SHARE UPDATE EXCLUSIVE on the parent (CREATE TABLE ... PARTITION OF
-- would take ACCESS EXCLUSIVE). Rows already caught by the DEFAULT partition for that month are moved
-- into the new partition first (ATTACH would otherwise fail on them). The function-level lock_timeout
-- makes it give up rather than queue behind a long transaction holding the DEFAULT partition.
-- A month is a UTC month, whatever the caller's TimeZone (the function's own; docs/schema.md 93): where
-- a partition that an earlier text made in another zone ends or starts within a day of the month's
-- bounds, the new partition meets it there (neither overlap, which ATTACH refuses, nor a gap).
create or replace function public.create_monthly_partition(p_month date default current_date)
returns setof text
language plpgsql
volatile
security invoker
set search_path = ''
set lock_timeout = '5s'
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
as $$
declare
    v_offset integer;
    v_start date;
    v_name text;
    v_relid oid;
    v_moved bigint;
    v_lo timestamptz;
    v_hi timestamptz;
    v_prev_end timestamptz;
    v_next_start timestamptz;
begin
    if p_month is null then
        raise exception 'create_monthly_partition: p_month is NULL'
            using errcode = '22004', hint = 'Pass any date of the first month to create, e.g. current_date.';
    end if;

    for v_offset in 0..3 loop
        v_start := (pg_catalog.date_trunc('month', p_month::timestamp) + pg_catalog.make_interval(months => v_offset))::date;
        v_lo := v_start::timestamp at time zone 'UTC';
        v_hi := (v_start + interval '1 month') at time zone 'UTC';
        v_name := 'sync_audit_log_' || pg_catalog.to_char(v_start, 'YYYY_MM');
        v_relid := pg_catalog.to_regclass('keap_pipeline.' || pg_catalog.quote_ident(v_name));

        if v_relid is not null then
            if not exists (
                select 1
                from pg_catalog.pg_inherits
                where inhrelid = v_relid
                  and inhparent = 'public.sync_audit_log'::regclass
            ) then
                raise exception 'create_monthly_partition: keap_pipeline.% exists but is not a partition of public.sync_audit_log', v_name
                    using errcode = '42P07', hint = 'Rename or drop that table, then run create_monthly_partition again.';
            end if;
            continue;
        end if;

        -- the neighbours' bounds (pg_get_expr prints them in this function's zone and style, read back alike)
        select max(b.bound[2]::timestamptz) filter (
                   where b.bound[2]::timestamptz > v_lo - interval '1 day' and b.bound[2]::timestamptz < v_lo + interval '1 day'),
               min(b.bound[1]::timestamptz) filter (
                   where b.bound[1]::timestamptz > v_hi - interval '1 day' and b.bound[1]::timestamptz < v_hi + interval '1 day')
        into v_prev_end, v_next_start
        from (
            select pg_catalog.regexp_match(
                       pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                       $re$^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$re$
                   ) as bound
            from pg_catalog.pg_inherits as i
            join pg_catalog.pg_class as c
                on c.oid = i.inhrelid
            where i.inhparent = 'public.sync_audit_log'::regclass
        ) as b
        where b.bound is not null;
        v_lo := coalesce(v_prev_end, v_lo);
        v_hi := coalesce(v_next_start, v_hi);

        execute pg_catalog.format(
            'create table keap_pipeline.%I (like public.sync_audit_log including defaults including constraints)',
            v_name
        );
        -- RLS on, no policy: only the owner reads a partition directly (the API roles go through the parent)
        execute pg_catalog.format('alter table keap_pipeline.%I enable row level security', v_name);
        execute pg_catalog.format('revoke all on table keap_pipeline.%I from public', v_name);
        execute pg_catalog.format(
            'alter table keap_pipeline.%I add constraint %I check (created_at >= %L::timestamptz and created_at < %L::timestamptz)',
            v_name, v_name || '_bounds', v_lo, v_hi
        );

        -- Rows of this month that landed in DEFAULT move into the new partition. ATTACH would take this
        -- ACCESS EXCLUSIVE lock on DEFAULT anyway (to scan it); taking it first keeps new rows out meanwhile.
        lock table keap_pipeline.sync_audit_log_default in access exclusive mode;
        execute pg_catalog.format(
            'with moved as (
                 delete from keap_pipeline.sync_audit_log_default
                 where created_at >= %1$L::timestamptz
                   and created_at < %2$L::timestamptz
                 returning *
             )
             insert into keap_pipeline.%3$I
             select * from moved',
            v_lo, v_hi, v_name
        );
        get diagnostics v_moved = row_count;
        if v_moved > 0 then
            raise notice 'create_monthly_partition: moved % audit row(s) of % from the DEFAULT partition into keap_pipeline.%',
                v_moved, pg_catalog.to_char(v_start, 'YYYY-MM'), v_name;
        end if;

        execute pg_catalog.format(
            'alter table public.sync_audit_log attach partition keap_pipeline.%I for values from (%L) to (%L)',
            v_name, v_lo, v_hi
        );
        -- the bounds constraint only served the attach; the partition constraint now does its job
        execute pg_catalog.format('alter table keap_pipeline.%I drop constraint %I', v_name, v_name || '_bounds');
        return next v_name;
    end loop;
end
$$;

comment on function public.create_monthly_partition(date) is
    'Creates (idempotently) the audit-log partitions of p_month and the next three months; returns the new names.';

-- Detaches and drops the monthly audit partitions whose month ended more than
-- keap_pipeline.settings.audit_retention_months ago; returns the names dropped. The DEFAULT partition
-- is never dropped. DETACH takes ACCESS EXCLUSIVE on the parent for a moment (CONCURRENTLY cannot run
-- inside a function), hence the lock_timeout: it fails rather than stall audit writers.
create or replace function public.drop_old_audit_partitions()
returns setof text
language plpgsql
volatile
security invoker
set search_path = ''
set lock_timeout = '5s'
set timezone = 'UTC'
as $$
declare
    v_months integer;
    v_cutoff date;
    v_partition record;
begin
    select s.value::integer
    into v_months
    from keap_pipeline.settings as s
    where s.name = 'audit_retention_months';
    if v_months is null then
        raise exception 'drop_old_audit_partitions: setting audit_retention_months is missing'
            using errcode = '22023',
                  hint = 'insert into keap_pipeline.settings (name, value) values (''audit_retention_months'', ''24'')';
    end if;
    v_cutoff := (pg_catalog.date_trunc('month', pg_catalog.now()) - pg_catalog.make_interval(months => v_months))::date;

    for v_partition in
        select c.relname
        from pg_catalog.pg_inherits as i
        join pg_catalog.pg_class as c
            on c.oid = i.inhrelid
        join pg_catalog.pg_namespace as n
            on n.oid = c.relnamespace
        where i.inhparent = 'public.sync_audit_log'::regclass
          and n.nspname = 'keap_pipeline'
          and c.relname ~ '^sync_audit_log_[0-9]{4}_[0-9]{2}$'
          -- the partition's END (start of the next month) is at or before the cutoff
          and (pg_catalog.to_date(pg_catalog.right(c.relname, 7), 'YYYY_MM') + interval '1 month')::date <= v_cutoff
        order by c.relname
    loop
        execute pg_catalog.format('alter table public.sync_audit_log detach partition keap_pipeline.%I', v_partition.relname);
        execute pg_catalog.format('drop table keap_pipeline.%I', v_partition.relname);
        return next v_partition.relname;
    end loop;
end
$$;

comment on function public.drop_old_audit_partitions() is
    'Detaches and drops audit partitions older than keap_pipeline.settings audit_retention_months; returns their names.';

-- EXECUTE: the pipeline's only (they touch the internal schema, which service_role cannot use),
-- whatever the default privileges.
revoke execute on function public.create_monthly_partition(date) from public, anon, authenticated, service_role;
revoke execute on function public.drop_old_audit_partitions() from public, anon, authenticated, service_role;

-- Returns the names of the jobs it scheduled (none, with a NOTICE saying why, where pg_cron is unusable).
-- Creates the extension only where it is available and creatable; records that in keap_pipeline.standins
-- so 15's down script drops only an extension it created.
create or replace function keap_pipeline.schedule_maintenance_jobs()
returns setof text
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_reason text;
    v_job record;
begin
    if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
        if not exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron') then
            v_reason := 'the pg_cron extension is not installed on this server';
        elsif not ('pg_cron' = any (pg_catalog.string_to_array(
                pg_catalog.replace(pg_catalog.current_setting('shared_preload_libraries'), ' ', ''), ','))) then
            v_reason := 'pg_cron is not in shared_preload_libraries';
        elsif pg_catalog.current_setting('cron.database_name', true) is distinct from pg_catalog.current_database() then
            v_reason := pg_catalog.format(
                'pg_cron can only be created in database %s (cron.database_name), not in %s',
                coalesce(pg_catalog.current_setting('cron.database_name', true), '<unset>'),
                pg_catalog.current_database()
            );
        else
            -- pinned to pg_catalog as on Supabase (search_path is empty here, so it must be named)
            create extension pg_cron with schema pg_catalog;
            insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
            values ('extension', 'pg_cron', 15);
        end if;
    end if;

    if v_reason is not null then
        raise notice 'keap-pipeline: pg_cron jobs not scheduled: %. Run public.create_monthly_partition() monthly, VACUUM ANALYZE of the sync tables nightly and public.drop_old_audit_partitions() monthly by other means.', v_reason;
        return;
    end if;

    for v_job in
        select *
        from (values
            ('keap-pipeline:create-partitions', '0 0 1 * *', 'select public.create_monthly_partition()'),
            ('keap-pipeline:vacuum-analyze', '0 2 * * *',
             'vacuum analyze public.sync_contacts, public.sync_orders, public.sync_tags, public.sync_subscriptions, '
             'public.sync_products, public.sync_status, public.sync_conflicts, public.sync_queue'),
            ('keap-pipeline:audit-retention', '30 3 1 * *', 'select public.drop_old_audit_partitions()')
        ) as j(name, schedule, command)
    loop
        -- dynamic: the cron schema may not exist when this function is created
        execute 'select cron.schedule($1, $2, $3)'
        using v_job.name, v_job.schedule, v_job.command;
        return next v_job.name;
    end loop;
end
$$;

comment on function keap_pipeline.schedule_maintenance_jobs() is
    'Schedules the keap-pipeline:* pg_cron jobs where pg_cron is usable; otherwise a NOTICE says why and nothing happens.';

revoke execute on function keap_pipeline.schedule_maintenance_jobs() from public;
