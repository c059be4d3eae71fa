-- 11: sync functions: conflict detection, the set-based contact upsert, audit partition maintenance.
-- All security invoker with search_path = '' (every name schema-qualified); EXECUTE is granted in
-- 16-security.sql. The request's functions had no search_path (splinter lint 0011) and the batch upsert
-- looped record by record with a subtransaction each.

-- Compares two versions of a record; when they differ, records a conflict and returns its id,
-- otherwise returns NULL. Fields = the top-level keys whose values differ (a key present on one side
-- only counts as differing).
create function public.detect_sync_conflict(
    p_entity_type varchar,
    p_entity_id uuid,
    p_keap_data jsonb,
    p_supabase_data jsonb
)
returns uuid
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_conflict_id uuid;
    v_conflict_fields text[];
begin
    if p_entity_id is null then
        raise exception 'detect_sync_conflict: p_entity_id is NULL'
            using errcode = '22004', hint = 'Pass the uuid (id column) of the record in the sync table.';
    end if;
    if jsonb_typeof(p_keap_data) is distinct from 'object'
        or jsonb_typeof(p_supabase_data) is distinct from 'object' then
        raise exception 'detect_sync_conflict: p_keap_data and p_supabase_data must both be JSON objects (got % and %)',
            coalesce(jsonb_typeof(p_keap_data), 'NULL'), coalesce(jsonb_typeof(p_supabase_data), 'NULL')
            using errcode = '22023', hint = 'Pass each version of the record as to_jsonb(row) or a JSON object.';
    end if;

    select array_agg(d.key order by d.key)
    into v_conflict_fields
    from (
        select key
        from pg_catalog.jsonb_each(p_keap_data) as k
        full outer join pg_catalog.jsonb_each(p_supabase_data) as s
            using (key)
        where k.value is distinct from s.value
    ) as d;

    if v_conflict_fields is null then
        return null;
    end if;

    insert into public.sync_conflicts (entity_type, entity_id, keap_data, supabase_data, conflict_fields)
    values (p_entity_type, p_entity_id, p_keap_data, p_supabase_data, v_conflict_fields)
    returning id
    into v_conflict_id;

    return v_conflict_id;
end
$$;

comment on function public.detect_sync_conflict(varchar, uuid, jsonb, jsonb) is
    'Records a conflict when the Keap and Supabase versions of a record differ; returns its id or NULL.';

-- A time-ordered uuid (the layout of UUIDv7: 48 bits of Unix milliseconds, version 7, then random
-- bits). Ids of rows written in bulk (ingested contacts, their sync_status and audit rows) land at
-- the right edge of their btree indexes instead of on random pages, which keeps bulk inserts fast
-- as the tables grow. PostgreSQL 18 has uuidv7(); 15-17 do not, hence this function.
create function keap_pipeline.uuid_v7()
returns uuid
language sql
volatile
parallel safe
as $$
    select pg_catalog.encode(
        pg_catalog.set_bit(
            pg_catalog.set_bit(
                overlay(
                    pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                    placing substring(
                        pg_catalog.int8send(
                            pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint
                        )
                        from 3
                    )
                    from 1 for 6
                ),
                52, 1
            ),
            53, 1
        ),
        'hex'
    )::uuid
$$;

comment on function keap_pipeline.uuid_v7() is
    'Time-ordered uuid (UUIDv7 layout) for rows written in bulk; no SET clause so it can be inlined.';

-- True when the text is an ISO-8601 date-time WITH an explicit zone (Z or +hh[:mm]); NULL counts as valid.
-- Without a zone PostgreSQL would read it in the session's time zone: a silent coercion, so refused.
-- PostgreSQL 15 has no pg_input_is_valid, hence the exception block; it runs only for values present.
create function keap_pipeline.is_timestamptz(p_value text)
returns boolean
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
    if p_value is null then
        return true;
    end if;
    if p_value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' then
        return false;
    end if;
    perform p_value::timestamptz;
    return true;
exception
    when others then
        return false;
end
$$;

-- batch_upsert_contacts(jsonb[]) (the request's) lives in 20-contacts-pipeline.sql: it is a front of the
-- staging implementation the pipeline uses, so both share one upsert.

-- Creates the audit partitions of the month of p_month and the three months after it, idempotently,
-- and returns the names it created. Without blocking writers of the audit log: each partition is
-- created standalone (with a CHECK matching its bounds, so ATTACH skips the validation scan) and then
-- attached, which takes only SHARE UPDATE EXCLUSIVE on the parent (CREATE TABLE ... PARTITION OF
-- would take ACCESS EXCLUSIVE). Rows already caught by the DEFAULT partition for that month are moved
-- into the new partition first (ATTACH would otherwise fail on them). The function-level lock_timeout
-- makes it give up rather than queue behind a long transaction holding the DEFAULT partition.
create function public.create_monthly_partition(p_month date default current_date)
returns setof text
language plpgsql
volatile
security invoker
set search_path = ''
set lock_timeout = '5s'
as $$
declare
    v_offset integer;
    v_start date;
    v_end date;
    v_name text;
    v_relid oid;
    v_moved bigint;
begin
    if p_month is null then
        raise exception 'create_monthly_partition: p_month is NULL'
            using errcode = '22004', hint = 'Pass any date of the first month to create, e.g. current_date.';
    end if;

    for v_offset in 0..3 loop
        v_start := (pg_catalog.date_trunc('month', p_month::timestamp) + pg_catalog.make_interval(months => v_offset))::date;
        v_end := (v_start + interval '1 month')::date;
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

        execute pg_catalog.format(
            'create table keap_pipeline.%I (like public.sync_audit_log including defaults including constraints)',
            v_name
        );
        -- RLS on, no policy: only the owner reads a partition directly (the API roles go through the parent)
        execute pg_catalog.format('alter table keap_pipeline.%I enable row level security', v_name);
        execute pg_catalog.format('revoke all on table keap_pipeline.%I from public', v_name);
        execute pg_catalog.format(
            'alter table keap_pipeline.%I add constraint %I check (created_at >= %L::timestamptz and created_at < %L::timestamptz)',
            v_name, v_name || '_bounds', v_start, v_end
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
            v_start, v_end, v_name
        );
        get diagnostics v_moved = row_count;
        if v_moved > 0 then
            raise notice 'create_monthly_partition: moved % audit row(s) of % from the DEFAULT partition into keap_pipeline.%',
                v_moved, pg_catalog.to_char(v_start, 'YYYY-MM'), v_name;
        end if;

        execute pg_catalog.format(
            'alter table public.sync_audit_log attach partition keap_pipeline.%I for values from (%L) to (%L)',
            v_name, v_start::timestamptz, v_end::timestamptz
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
create function public.drop_old_audit_partitions()
returns setof text
language plpgsql
volatile
security invoker
set search_path = ''
set lock_timeout = '5s'
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

-- EXECUTE: nothing here is callable by anon or signed-in users, whatever the default privileges
-- (Supabase grants EXECUTE on new public functions to anon and authenticated explicitly).
-- create_monthly_partition and drop_old_audit_partitions are the pipeline's: they
-- touch the internal schema, which service_role cannot use. detect_sync_conflict is also granted to
-- service_role for server-side resolution tools.
revoke execute on function public.detect_sync_conflict(varchar, uuid, jsonb, jsonb) from public, anon, authenticated;
revoke execute on function public.create_monthly_partition(date) from public, anon, authenticated, service_role;
revoke execute on function public.drop_old_audit_partitions() from public, anon, authenticated, service_role;
revoke execute on function keap_pipeline.is_timestamptz(text) from public;
grant execute on function public.detect_sync_conflict(varchar, uuid, jsonb, jsonb) to service_role;
