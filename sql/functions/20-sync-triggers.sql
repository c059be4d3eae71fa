-- The trigger functions of the sync tables: trigger_sync_on_update (audit, outbound queue,
-- sync_status; the triggers themselves are schema, created by 12) and release_held_outbound (the
-- sync_conflicts trigger, created by 20).
-- requires: 24
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The texts are
-- those of 24 (trigger_sync_on_update) and 20 with 24's search_path (release_held_outbound).
-- SECURITY DEFINER because app users (authenticated) must not be able to write audit or queue rows
-- directly, yet their edits must produce them; EXECUTE is revoked from public, anon and authenticated
-- (PostgreSQL checks EXECUTE of a trigger function only when the trigger is created, not when it fires).

-- ---------------------------------------------------------------------------------------------
-- trigger_sync_on_update: as in 12, with the changes of 24
-- ---------------------------------------------------------------------------------------------
-- * search_path = pg_catalog, pg_temp (pg_temp last): see sql/24's header. Every type here is qualified too.
-- * the source is 'keap' only for the ingestion (keap_pipeline.is_ingestion()), whatever the role,
--   the JWT or keap_pipeline.sync_source say;
-- * keap_id is set (INSERT) or changed (UPDATE) by the ingestion only, for every other role
--   (service_role and the owner included): the ingestion matches rows by keap_id;
-- * updated_by is the app user who made the change (auth.uid(); NULL for the ingestion and the
--   server-side roles), deleted_by the one who soft-deleted the row; both are bookkeeping like
--   version, so updated_by alone is not a change (no audit row, no queue item).
-- * a soft delete by the ingestion (Keap deleted the record: sql/functions/70's reconcile) is audited
--   with operation DELETE (issue 13); deleted_by stays NULL (auth.uid() of the ingestion).
-- The function is generated so that each of its three set-based writes is written once: its text is
-- run as static SQL for small statements and EXECUTEd for large ones (see the comment inside).
-- $1, $2, $3 in the texts are the entity (tg_table_name), the source and the user.
do $generate$
declare
    v_insert pg_catalog.text := $stmt$
            with changed as (
                select n.id, n.keap_id, n.sync_status, pg_catalog.to_jsonb(n.*) as row_data
                from new_rows as n
            ),
            audit as (
                insert into public.sync_audit_log (
                    entity_type, entity_id, operation, old_data, new_data, changed_fields,
                    sync_source, sync_destination, user_id
                )
                select $1, c.id, 'INSERT', null, c.row_data, null,
                       $2, case when $2 = 'keap' then 'supabase' else 'keap' end, $3
                from changed as c
            ),
            queued as (
                insert into public.sync_queue (operation, entity_type, entity_id, payload, priority)
                select 'create', $1, c.id, c.row_data,
                       case c.sync_status when 'error' then 1 when 'conflict' then 2 else 5 end
                from changed as c
                where $2 = 'supabase'
                on conflict (entity_type, entity_id) where status = 'pending'
                do update
                set operation = case
                        when public.sync_queue.operation = 'create' and excluded.operation = 'update' then 'create'
                        else excluded.operation
                    end,
                    payload = excluded.payload,
                    priority = least(public.sync_queue.priority, excluded.priority)
                returning entity_id
            )
            insert into public.sync_status as s (entity_type, entity_id, keap_id, supabase_id, sync_direction, last_sync_status)
            select $1, c.id, c.keap_id, c.id, 'supabase_to_keap', 'pending'
            from changed as c
            join queued as q
                on q.entity_id = c.id
            on conflict (entity_type, entity_id)
            do update
            set keap_id = excluded.keap_id,
                sync_direction = case when s.sync_direction = 'supabase_to_keap' then s.sync_direction else 'bidirectional' end,
                last_sync_status = 'pending',
                updated_at = pg_catalog.now()
$stmt$;
    v_update pg_catalog.text := $stmt$
            -- materialized: otherwise the CTE is inlined and to_jsonb(o.*) is recomputed for every key below
            with pairs as materialized (
                select
                    n.id,
                    n.keap_id,
                    n.sync_status,
                    pg_catalog.to_jsonb(o.*) as old_data,
                    pg_catalog.to_jsonb(n.*) as new_data,
                    (o.deleted_at is null and n.deleted_at is not null) as soft_deleted
                from old_rows as o
                join new_rows as n
                    on n.id = o.id
                -- rows the statement left as they were (no-op updates) cost nothing further
                where o.* is distinct from n.*
            ),
            diffed as (
                select
                    p.*,
                    array(
                        select k.key
                        from pg_catalog.jsonb_each(p.new_data) as k
                        -- bookkeeping the BEFORE trigger sets is not a change of content
                        where k.key not in ('version', 'updated_at', 'updated_by')
                          and k.value is distinct from p.old_data -> k.key
                        order by k.key
                    ) as changed_fields
                from pairs as p
            ),
            changed as (
                select *
                from diffed as d
                where pg_catalog.cardinality(d.changed_fields) > 0
            ),
            audit as (
                insert into public.sync_audit_log (
                    entity_type, entity_id, operation, old_data, new_data, changed_fields,
                    sync_source, sync_destination, user_id
                )
                -- a soft delete by the ingestion is Keap's deletion (a reconcile pass: Keap no longer
                -- lists the record): audited as a DELETE from keap. An app's soft delete stays an
                -- UPDATE here and is queued as a delete below.
                select $1, c.id, case when c.soft_deleted and $2 = 'keap' then 'DELETE' else 'UPDATE' end,
                       c.old_data, c.new_data, c.changed_fields,
                       $2, case when $2 = 'keap' then 'supabase' else 'keap' end, $3
                from changed as c
            ),
            queued as (
                insert into public.sync_queue (operation, entity_type, entity_id, payload, priority)
                select case when c.soft_deleted then 'delete' else 'update' end, $1, c.id, c.new_data,
                       case c.sync_status when 'error' then 1 when 'conflict' then 2 else 5 end
                from changed as c
                where $2 = 'supabase'
                on conflict (entity_type, entity_id) where status = 'pending'
                do update
                set operation = case
                        when public.sync_queue.operation = 'create' and excluded.operation = 'update' then 'create'
                        else excluded.operation
                    end,
                    payload = excluded.payload,
                    priority = least(public.sync_queue.priority, excluded.priority)
                returning entity_id
            )
            insert into public.sync_status as s (entity_type, entity_id, keap_id, supabase_id, sync_direction, last_sync_status)
            select $1, c.id, c.keap_id, c.id, 'supabase_to_keap', 'pending'
            from changed as c
            join queued as q
                on q.entity_id = c.id
            on conflict (entity_type, entity_id)
            do update
            set keap_id = excluded.keap_id,
                sync_direction = case when s.sync_direction = 'supabase_to_keap' then s.sync_direction else 'bidirectional' end,
                last_sync_status = 'pending',
                updated_at = pg_catalog.now()
$stmt$;
    v_delete pg_catalog.text := $stmt$
            with changed as (
                select o.id, o.keap_id, o.sync_status, pg_catalog.to_jsonb(o.*) as row_data
                from old_rows as o
            ),
            audit as (
                insert into public.sync_audit_log (
                    entity_type, entity_id, operation, old_data, new_data, changed_fields,
                    sync_source, sync_destination, user_id
                )
                select $1, c.id, 'DELETE', c.row_data, null, null,
                       $2, case when $2 = 'keap' then 'supabase' else 'keap' end, $3
                from changed as c
            ),
            queued as (
                insert into public.sync_queue (operation, entity_type, entity_id, payload, priority)
                select 'delete', $1, c.id, c.row_data,
                       case c.sync_status when 'error' then 1 when 'conflict' then 2 else 5 end
                from changed as c
                where $2 = 'supabase'
                on conflict (entity_type, entity_id) where status = 'pending'
                do update
                set operation = excluded.operation,
                    payload = excluded.payload,
                    priority = least(public.sync_queue.priority, excluded.priority)
                returning entity_id
            )
            insert into public.sync_status as s (entity_type, entity_id, keap_id, supabase_id, sync_direction, last_sync_status)
            select $1, c.id, c.keap_id, c.id, 'supabase_to_keap', 'pending'
            from changed as c
            join queued as q
                on q.entity_id = c.id
            on conflict (entity_type, entity_id)
            do update
            set keap_id = excluded.keap_id,
                sync_direction = case when s.sync_direction = 'supabase_to_keap' then s.sync_direction else 'bidirectional' end,
                last_sync_status = 'pending',
                updated_at = pg_catalog.now()
$stmt$;
    v_function pg_catalog.text := $template$
create or replace function public.trigger_sync_on_update()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_source pg_catalog.text;
    v_user pg_catalog.uuid;
    v_jit pg_catalog.text;
begin
    if tg_level = 'ROW' then
        if tg_when <> 'BEFORE' or tg_op <> 'UPDATE' then
            raise exception 'trigger_sync_on_update: as a row trigger it runs BEFORE UPDATE only (got % %)', tg_when, tg_op
                using hint = 'Create it BEFORE UPDATE FOR EACH ROW, and AFTER INSERT/UPDATE/DELETE FOR EACH STATEMENT with transition tables.';
        end if;
        if new.id is distinct from old.id then
            raise exception 'trigger_sync_on_update: the id of a row of %.% cannot change (% -> %)',
                tg_table_schema, tg_table_name, old.id, new.id
                using errcode = '23514', hint = 'Insert a new row instead of changing the id.';
        end if;
        -- No queries here (this runs once per row) but for a change of keap_id, which is rare.
        if new is not distinct from old then
            return new;
        end if;
        if new.keap_id is distinct from old.keap_id and not keap_pipeline.is_ingestion() then
            raise exception 'trigger_sync_on_update: keap_id of %.% is set by the Keap ingestion only', tg_table_schema, tg_table_name
                using errcode = '42501',
                      hint = 'The ingestion links rows to Keap records; other roles leave keap_id as it is.';
        end if;
        new.version := old.version + 1;
        new.updated_at := pg_catalog.now();
        new.updated_by := auth.uid();
        if new.deleted_at is distinct from old.deleted_at then
            new.deleted_by := case when new.deleted_at is not null then auth.uid() end;
        else
            new.deleted_by := old.deleted_by;
        end if;
        return new;
    end if;

    -- Statement level. Only the ingestion's writes are Keap's (an allowlist on its role). The
    -- outbound pusher writes back what Keap answered (created keap_id, update time, content hash) as
    -- the same role, audited as 'push' (sql/30); the setting alone makes nobody the ingestion.
    v_source := case
        when not keap_pipeline.is_ingestion() then 'supabase'
        when pg_catalog.current_setting('keap_pipeline.outbound_write_back', true) = 'on' then 'push'
        else 'keap'
    end;
    if tg_op = 'INSERT' and v_source <> 'keap' then
        -- (a separate IF: new_rows exists in INSERT and UPDATE triggers only)
        if exists (select 1 from new_rows as n where n.keap_id is not null) then
            raise exception 'trigger_sync_on_update: keap_id of %.% is set by the Keap ingestion only', tg_table_schema, tg_table_name
                using errcode = '42501',
                      hint = 'Insert the row without keap_id; the ingestion links rows to Keap records.';
        end if;
    end if;
    v_user := auth.uid();
    -- Transition tables carry no statistics, so the planner's estimates for a 10k-row statement are
    -- far too high and PostgreSQL would spend most of the time JIT-compiling (measured: 0.7 s of 1 s
    -- on PostgreSQL 15). Off for these statements only; the caller's value is restored below.
    v_jit := pg_catalog.current_setting('jit', true);
    if v_jit is not null and v_jit <> 'off' then
        perform pg_catalog.set_config('jit', 'off', true);
    end if;

    -- Each write below exists twice, from one text (generated, see the DO block): a statement of fewer
    -- than 16 rows (an app user's edit) runs it as static SQL, whose plan PL/pgSQL caches per session;
    -- a larger one (an ingestion batch) EXECUTEs it, planned for the transition tables' real row
    -- counts. A cached plan made for a small transition table (e.g. a nested loop joining old and new
    -- rows) turns quadratic on a 10,000-row statement (observed on PostgreSQL 15), and planning every
    -- single-row app edit afresh doubled its cost (bench/bench_load_test.py, docs/benchmarks.md).
    -- Audit and sync_status ids come from the column defaults (time-ordered, see above).
    if tg_op = 'INSERT' then
        if not exists (select 1 from new_rows) then
            if v_jit is not null and v_jit <> 'off' then
                perform pg_catalog.set_config('jit', v_jit, true);
            end if;
            return null;
        end if;
        if (select pg_catalog.count(*) from (select from new_rows limit 16) as few) < 16 then
            -- @INSERT_STATIC@
        else
            execute @INSERT_DYNAMIC@
            using tg_table_name, v_source, v_user;
        end if;

    elsif tg_op = 'UPDATE' then
        if not exists (select 1 from new_rows) then
            if v_jit is not null and v_jit <> 'off' then
                perform pg_catalog.set_config('jit', v_jit, true);
            end if;
            return null;
        end if;
        if (select pg_catalog.count(*) from (select from new_rows limit 16) as few) < 16 then
            -- @UPDATE_STATIC@
        else
            execute @UPDATE_DYNAMIC@
            using tg_table_name, v_source, v_user;
        end if;

    elsif tg_op = 'DELETE' then
        if not exists (select 1 from old_rows) then
            if v_jit is not null and v_jit <> 'off' then
                perform pg_catalog.set_config('jit', v_jit, true);
            end if;
            return null;
        end if;
        if (select pg_catalog.count(*) from (select from old_rows limit 16) as few) < 16 then
            -- @DELETE_STATIC@
        else
            execute @DELETE_DYNAMIC@
            using tg_table_name, v_source, v_user;
        end if;
    end if;
    if v_jit is not null and v_jit <> 'off' then
        perform pg_catalog.set_config('jit', v_jit, true);
    end if;
    return null;
end
$fn$;
$template$;
    v_static pg_catalog.text;
    v_name pg_catalog.text;
    v_text pg_catalog.text;
begin
    foreach v_name in array array['INSERT', 'UPDATE', 'DELETE'] loop
        v_text := case v_name when 'INSERT' then v_insert when 'UPDATE' then v_update else v_delete end;
        v_static := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(v_text,
            '$1', 'tg_table_name'), '$2', 'v_source'), '$3', 'v_user');
        v_function := pg_catalog.replace(v_function, '-- @' || v_name || '_STATIC@', pg_catalog.btrim(v_static, E'\n') || ';');
        v_function := pg_catalog.replace(v_function, '@' || v_name || '_DYNAMIC@', pg_catalog.quote_literal(v_text));
    end loop;
    if pg_catalog.strpos(v_function, '_STATIC@') > 0 or pg_catalog.strpos(v_function, '_DYNAMIC@') > 0 then
        raise exception '20-sync-triggers: a placeholder of trigger_sync_on_update was not replaced';
    end if;
    execute v_function;
end
$generate$;

comment on function public.trigger_sync_on_update() is
    'Sync tables: BEFORE UPDATE row part bumps version/updated_at/updated_by; AFTER statement parts write audit, queue and sync_status set-based; only keap_pipeline_ingest writes as Keap.';

-- from anon and authenticated too: Supabase's default privileges grant them EXECUTE explicitly
revoke execute on function public.trigger_sync_on_update() from public, anon, authenticated;

-- Resolving a conflict (setting sync_conflicts.resolved_at, as a person or a tool does) releases the
-- record's held outbound item: back to 'pending' when the resolver left the row as it was (the local
-- side stands), or 'cancelled' when the resolver's own edit already queued a newer item (which then
-- carries the resolution). Statement-level and set-based, like the sync triggers.
create or replace function keap_pipeline.release_held_outbound()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    with resolved as (
        select distinct n.entity_type, n.entity_id
        from new_rows as n
        join old_rows as o
            on o.id = n.id
        where o.resolved_at is null
          and n.resolved_at is not null
    ),
    candidates as (
        -- per record: its held items, newest first, and whether a newer pending item exists
        select
            q.id,
            pg_catalog.row_number() over (
                partition by q.entity_type, q.entity_id
                order by q.created_at desc, q.id desc
            ) as newest,
            exists (
                select 1
                from public.sync_queue as p
                where p.entity_type = q.entity_type
                  and p.entity_id = q.entity_id
                  and p.status = 'pending'
            ) as has_pending
        from public.sync_queue as q
        join resolved as r
            on r.entity_type = q.entity_type
           and r.entity_id = q.entity_id
        where q.status = 'held'
    )
    update public.sync_queue as q
    set status = case when c.newest = 1 and not c.has_pending then 'pending' else 'cancelled' end,
        completed_at = case when c.newest = 1 and not c.has_pending then null else pg_catalog.now() end,
        error_message = case
            when c.newest = 1 and not c.has_pending then null
            else 'superseded: the conflict was resolved by a newer change'
        end
    from candidates as c
    where q.id = c.id;
    return null;
end
$$;

comment on function keap_pipeline.release_held_outbound() is
    'sync_conflicts trigger: a resolved conflict releases (or, when superseded, cancels) the record''s held outbound item.';

-- SECURITY DEFINER: an admin resolving a conflict may not write the queue directly. EXECUTE is checked
-- when the trigger is created, not when it fires, so it is revoked from everyone else.
revoke execute on function keap_pipeline.release_held_outbound() from public;
