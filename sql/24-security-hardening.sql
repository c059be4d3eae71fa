-- 24: security hardening (issue 10). The schema was attacked as a hostile signed-in app user would
-- (PostgREST, and a plain SQL session in the role authenticated); each fix below has its attack test
-- in tests/security/, and docs/security.md states the model. In short:
-- * SECURITY DEFINER functions resolve names with search_path = pg_catalog, pg_temp. With '' the
--   session's pg_temp is still searched FIRST for types and tables, so a temp DOMAIN named uuid (with
--   a CHECK calling the user's own function) made that function run as the owner.
-- * The Keap ingestion is one role, keap_pipeline_ingest (created here NOLOGIN where absent and
--   granted to the migrating user, so its sessions can SET ROLE to it). Only its writes are audited as
--   'keap' and skip the outbound queue (an allowlist, keap_pipeline.is_ingestion(); the setting
--   keap_pipeline.sync_source that any session could set is no longer read), only it may set or change
--   keap_id, and upsert_contacts_from_stage runs only as it. So every row that has a keap_id was
--   created or linked by the ingestion, and the upsert, which matches rows by keap_id, never adopts
--   a row someone else made.
-- * App users (authenticated) write only content columns (column privileges, which PostgREST
--   honours); keap_id, source_system, sync_status, last_synced_at, keap_*_at, keap_hash, version,
--   created_at/updated_at, created_by/updated_by/deleted_by are not theirs. created_by is the owner
--   (the column default auth.uid()); updated_by and deleted_by are set by the trigger.
-- * One permissive policy per role and action; a user's plain read uses the created_by index.
-- * No hard DELETE for app users (soft delete through deleted_at); the audit log is append-only for
--   every role but its owner; admins may set only the resolution columns of sync_conflicts.
-- * keap_pipeline.uuid_v7() gets a fixed search_path; it and describe_conflict lose PUBLIC EXECUTE.
--   The bulk paths no longer call uuid_v7() (a function with a SET clause is not inlined, which
--   would cost a call per row): the ids of sync_contacts, sync_status and sync_audit_log DEFAULT to
--   the same UUIDv7 expression.

-- ---------------------------------------------------------------------------------------------
-- The ingestion's role
-- ---------------------------------------------------------------------------------------------

do $role$
declare
    v_can_set boolean;
begin
    -- cluster-wide, like the API roles of 02: created where absent, recorded, never dropped
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'keap_pipeline_ingest') then
        begin
            create role keap_pipeline_ingest nologin;
            insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
            values ('role', 'keap_pipeline_ingest', 24);
        exception
            when duplicate_object or unique_violation then
                null;
        end;
    end if;
    -- The migrating user (on Supabase: postgres, which is not a superuser) must be able to SET ROLE
    -- to it. PostgreSQL 16+ separates membership from the SET option (a CREATEROLE creator only gets
    -- ADMIN on the role it creates).
    if pg_catalog.current_setting('server_version_num')::integer >= 160000 then
        v_can_set := pg_catalog.pg_has_role(current_user, 'keap_pipeline_ingest', 'SET');
        if not v_can_set then
            execute pg_catalog.format('grant keap_pipeline_ingest to %I with set true', current_user);
        end if;
    else
        v_can_set := pg_catalog.pg_has_role(current_user, 'keap_pipeline_ingest', 'MEMBER');
        if not v_can_set then
            execute pg_catalog.format('grant keap_pipeline_ingest to %I', current_user);
        end if;
    end if;
end
$role$;

-- Whether the current transaction is the Keap ingestion: SET ROLE keap_pipeline_ingest (what the
-- pipeline does), or a session logged in as it. The role setting is the one a SECURITY DEFINER
-- function still sees (current_user there is the function's owner), and only members of the role
-- can set it: nobody can claim to be the ingestion by setting a variable.
create function keap_pipeline.is_ingestion()
returns boolean
language sql
stable
set search_path = ''
as $$
    select pg_catalog.current_setting('role') = 'keap_pipeline_ingest'
        or (pg_catalog.current_setting('role') = 'none' and session_user = 'keap_pipeline_ingest')
$$;

comment on function keap_pipeline.is_ingestion() is
    'True when the transaction runs as keap_pipeline_ingest (the Keap ingestion): the allowlist of sql/24.';

revoke execute on function keap_pipeline.is_ingestion() from public;

-- ---------------------------------------------------------------------------------------------
-- Time-ordered ids as column defaults; uuid_v7() with a fixed search_path
-- ---------------------------------------------------------------------------------------------

do $v7$
declare
    v_expr text;
begin
    -- The layout of 23's uuid_v7(): PostgreSQL 18's built-in, or the same bits computed on 15-17.
    -- Every name is qualified, so the expression means the same under any search_path.
    if pg_catalog.current_setting('server_version_num')::integer >= 180000 then
        v_expr := 'pg_catalog.uuidv7()';
    else
        v_expr := $expr$pg_catalog.encode(
            pg_catalog.set_bit(
                pg_catalog.set_bit(
                    overlay(
                        pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                        placing substring(
                            pg_catalog.int8send(
                                pg_catalog.floor(
                                    pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000
                                )::pg_catalog.int8
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
        )::pg_catalog.uuid$expr$;
    end if;

    -- The rows written in bulk (ingested contacts, their sync_status rows, every audit row) take
    -- these defaults instead of calling uuid_v7(): the same ids, and no SQL function to call per row.
    execute pg_catalog.format('alter table public.sync_contacts alter column id set default %s', v_expr);
    execute pg_catalog.format('alter table public.sync_status alter column id set default %s', v_expr);
    execute pg_catalog.format('alter table public.sync_audit_log alter column id set default %s', v_expr);

    execute pg_catalog.format(
        $fn$
            create or replace function keap_pipeline.uuid_v7()
            returns uuid
            language sql
            volatile
            parallel safe
            set search_path = ''
            as %L
        $fn$,
        'select ' || v_expr
    );
end
$v7$;

comment on function keap_pipeline.uuid_v7() is
    'Time-ordered uuid (UUIDv7 layout); the bulk paths use the same expression as the id column defaults.';

revoke execute on function keap_pipeline.uuid_v7() from public;
revoke execute on function keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text) from public;

-- ---------------------------------------------------------------------------------------------
-- trigger_sync_on_update: as in 12, with the changes of this file
-- ---------------------------------------------------------------------------------------------
-- * search_path = pg_catalog, pg_temp (pg_temp last): see the header. Every type here is qualified too.
-- * the source is 'keap' only for the ingestion (keap_pipeline.is_ingestion()), whatever the role,
--   the JWT or keap_pipeline.sync_source say;
-- * keap_id is set (INSERT) or changed (UPDATE) by the ingestion only, for every other role
--   (service_role and the owner included): the ingestion matches rows by keap_id;
-- * updated_by is the app user who made the change (auth.uid(); NULL for the ingestion and the
--   server-side roles), deleted_by the one who soft-deleted the row; both are bookkeeping like
--   version, so updated_by alone is not a change (no audit row, no queue item).
create or replace function public.trigger_sync_on_update()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
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

    -- Statement level. Only the ingestion's writes are Keap's (an allowlist on its role).
    v_source := case when keap_pipeline.is_ingestion() then 'keap' else 'supabase' end;
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

    -- The writes below are EXECUTEd constant SQL: EXECUTE plans each call with the transition tables'
    -- real row counts. A static statement would be planned once per session and its plan cached; a plan
    -- made for an empty transition table (e.g. a nested loop joining old and new rows) then runs on the
    -- next 10,000-row statement and turns quadratic (observed on PostgreSQL 15).
    -- Audit and sync_status ids come from the column defaults (time-ordered, see above).
    if tg_op = 'INSERT' then
        if not exists (select 1 from new_rows) then
            if v_jit is not null and v_jit <> 'off' then
                perform pg_catalog.set_config('jit', v_jit, true);
            end if;
            return null;
        end if;
        execute $sql$
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
        $sql$
        using tg_table_name, v_source, v_user;

    elsif tg_op = 'UPDATE' then
        if not exists (select 1 from new_rows) then
            if v_jit is not null and v_jit <> 'off' then
                perform pg_catalog.set_config('jit', v_jit, true);
            end if;
            return null;
        end if;
        execute $sql$
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
                select $1, c.id, 'UPDATE', c.old_data, c.new_data, c.changed_fields,
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
        $sql$
        using tg_table_name, v_source, v_user;

    elsif tg_op = 'DELETE' then
        if not exists (select 1 from old_rows) then
            if v_jit is not null and v_jit <> 'off' then
                perform pg_catalog.set_config('jit', v_jit, true);
            end if;
            return null;
        end if;
        execute $sql$
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
        $sql$
        using tg_table_name, v_source, v_user;
    end if;
    if v_jit is not null and v_jit <> 'off' then
        perform pg_catalog.set_config('jit', v_jit, true);
    end if;
    return null;
end
$$;

comment on function public.trigger_sync_on_update() is
    'Sync tables: BEFORE UPDATE row part bumps version/updated_at/updated_by; AFTER statement parts write audit, queue and sync_status set-based; only keap_pipeline_ingest writes as Keap.';

-- the other SECURITY DEFINER function: its body names every object schema-qualified already
alter function keap_pipeline.release_held_outbound() set search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------------------------------
-- upsert_contacts_from_stage: as in 21, run by the ingestion only, ids from the column defaults
-- ---------------------------------------------------------------------------------------------
-- No longer sets keap_pipeline.sync_source (nothing reads it): its writes are Keap's because its
-- transaction runs as keap_pipeline_ingest, and it refuses to run otherwise (as anyone else its
-- writes would be queued back to Keap as app changes). Everything else is 21's statement.
create or replace function keap_pipeline.upsert_contacts_from_stage(
    p_batch_id uuid,
    p_strategy text default 'keap_wins',
    p_merge_rule text default 'manual'
)
returns table (
    seen integer,
    duplicates integer,
    inserted integer,
    updated integer,
    unchanged integer,
    stale integer,
    local_pending integer,
    conflicts integer,
    conflicts_keap_wins integer,
    conflicts_supabase_wins integer,
    conflicts_merged integer,
    conflicts_parked integer
)
language plpgsql
volatile
set search_path = ''
-- JIT compiles the big statement below for its (meaningless) staged-row estimates and costs more
-- than the whole batch; the SET clause restores the caller's value on exit.
set jit = off
as $$
declare
    v record;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception 'upsert_contacts_from_stage runs as the Keap ingestion only (role keap_pipeline_ingest), not as %',
            current_user
            using errcode = '42501',
                  hint = 'Run SET LOCAL ROLE keap_pipeline_ingest at the start of the loading transaction (keap_pipeline.db.roles.as_ingestion).';
    end if;
    if p_strategy is null or p_strategy not in ('keap_wins', 'supabase_wins', 'manual', 'merge') then
        raise exception 'unknown conflict strategy %', coalesce(p_strategy, 'NULL')
            using errcode = '22023',
                  hint = 'Use one of keap_wins, supabase_wins, manual, merge.';
    end if;
    if p_merge_rule is null or p_merge_rule not in ('keap_wins', 'supabase_wins', 'manual') then
        raise exception 'unknown merge rule %', coalesce(p_merge_rule, 'NULL')
            using errcode = '22023',
                  hint = 'Use one of keap_wins, supabase_wins, manual.';
    end if;

    -- No lock serialises loaders: batches load side by side (a run's loaders, or a backfill beside a
    -- schedule). Two batches that hold the same contact cannot both win: a second INSERT of a keap_id
    -- fails on its unique key (23505 on sync_contacts_keap_id_key) and a second UPDATE finds the
    -- version changed (40001 below); the loader retries either batch whole, and the retry sees the
    -- first one's rows. A run keeps its own in-flight batches disjoint, so it never retries itself.
    -- No row locks up front: locking every existing row of the batch would write each tuple (xmax)
    -- even when nothing changed. Instead the UPDATE below only touches a row whose version is still
    -- the one classified (optimistic check; READ COMMITTED re-reads a row changed concurrently); a
    -- row an app changed in between makes the counts differ, and the batch is retried (SQLSTATE 40001).
    -- Rows are matched by keap_id, which only the ingestion sets (trigger_sync_on_update): a row an
    -- app user made can never be matched.
    with src as (
        delete from keap_pipeline.stage_contacts as s
        where s.batch_id = p_batch_id
        returning s.*
    ),
    ranked as (
        select
            s.*,
            pg_catalog.row_number() over (
                partition by s.keap_id
                order by s.keap_updated_at desc, s.ordinal desc
            ) as rn
        from src as s
    ),
    dedup as (
        select *
        from ranked as r
        where r.rn = 1
    ),
    classified as (
        select
            d.keap_id,
            d.email,
            d.first_name,
            d.last_name,
            d.phone,
            d.company,
            d.tags,
            d.custom_fields,
            d.keap_created_at,
            d.keap_updated_at,
            d.content_hash,
            l.id as cur_id,
            l.version as cur_version,
            l.email as cur_email,
            l.first_name as cur_first_name,
            l.last_name as cur_last_name,
            l.phone as cur_phone,
            l.company as cur_company,
            l.tags as cur_tags,
            l.custom_fields as cur_custom_fields,
            case
                when l.id is null then 'insert'
                when l.keap_updated_at is not null and d.keap_updated_at < l.keap_updated_at then 'stale'
                -- the Keap content last seen (written, parked or kept local) came again: nothing to do
                when l.keap_hash = d.content_hash then 'unchanged'
                when (d.email, d.first_name, d.last_name, d.phone, d.company, d.tags, d.custom_fields, d.keap_created_at)
                     is not distinct from
                     (l.email, l.first_name, l.last_name, l.phone, l.company, l.tags, l.custom_fields, l.keap_created_at)
                    then 'unchanged'
                -- changed locally since the last sync = a local change not yet (or not successfully)
                -- sent to Keap: every app write queues one (sql/12), the ingestion's never do. Unlike
                -- comparing updated_at with last_synced_at this stays right once the outbound sync has
                -- delivered the change, and within one transaction.
                when exists (
                    select 1
                    from public.sync_queue as q
                    where q.entity_type = 'sync_contacts'
                      and q.entity_id = l.id
                      and q.status in ('pending', 'processing', 'error', 'held')
                ) then
                    case
                        when l.keap_updated_at is null or d.keap_updated_at > l.keap_updated_at then 'conflict'
                        else 'local'
                    end
                else 'update'
            end as action
        from dedup as d
        left join public.sync_contacts as l
            on l.keap_id = d.keap_id
    ),
    described as (
        select
            c.*,
            case
                when c.action = 'conflict' then keap_pipeline.describe_conflict(
                    'sync_contacts',
                    c.cur_id,
                    pg_catalog.jsonb_build_object(
                        'email', c.email, 'first_name', c.first_name, 'last_name', c.last_name,
                        'phone', c.phone, 'company', c.company, 'tags', c.tags,
                        'custom_fields', c.custom_fields
                    ),
                    pg_catalog.jsonb_build_object(
                        'email', c.cur_email, 'first_name', c.cur_first_name,
                        'last_name', c.cur_last_name, 'phone', c.cur_phone,
                        'company', c.cur_company, 'tags', c.cur_tags,
                        'custom_fields', c.cur_custom_fields
                    ),
                    p_strategy,
                    p_merge_rule
                )
            end as info
        from classified as c
    ),
    resolved as (
        select
            d.*,
            d.info -> 'incoming' as incoming,
            d.info -> 'local' as local,
            array(select pg_catalog.jsonb_array_elements_text(d.info -> 'fields')) as conflict_fields,
            -- jsonb_build_object turns a NULL merge into JSON null; make it SQL NULL, or
            -- `local_row || merged` below builds an array [row, null] instead of an object
            nullif(d.info -> 'merged', 'null'::jsonb) as merged,
            case
                when d.action = 'update' then 'overwrite'
                when d.action <> 'conflict' then 'none'
                when p_strategy = 'keap_wins' then 'overwrite'
                when p_strategy = 'supabase_wins' then 'keep_local'
                when p_strategy = 'manual' then 'park'
                when d.info -> 'merged' = 'null'::jsonb then 'park'
                when d.info -> 'merged' = d.info -> 'incoming' then 'overwrite'
                else 'merge_pending'
            end as kind
        from described as d
    ),
    ins as (
        -- the id is the column default: time-ordered, so bulk inserts append to the id indexes
        insert into public.sync_contacts (
            keap_id, email, first_name, last_name, phone, company, tags, custom_fields,
            source_system, keap_created_at, keap_updated_at, keap_hash, last_synced_at, sync_status,
            created_by
        )
        select
            r.keap_id, r.email, r.first_name, r.last_name, r.phone, r.company, r.tags, r.custom_fields,
            'keap', r.keap_created_at, r.keap_updated_at, r.content_hash, pg_catalog.now(), 'completed',
            -- created by the ingestion, not by a user (and the column default need not run per row)
            null
        from resolved as r
        where r.action = 'insert'
        returning id, keap_id
    ),
    upd as (
        -- 'overwrite' writes Keap's values (a merge whose result equals Keap's is an overwrite too);
        -- 'merge_pending' the merged ones; 'keep_local' and 'park' keep the row's own
        update public.sync_contacts as t
        set email = case r.kind
                when 'overwrite' then r.email
                when 'merge_pending' then r.merged ->> 'email'
                else t.email
            end,
            first_name = case r.kind
                when 'overwrite' then r.first_name
                when 'merge_pending' then r.merged ->> 'first_name'
                else t.first_name
            end,
            last_name = case r.kind
                when 'overwrite' then r.last_name
                when 'merge_pending' then r.merged ->> 'last_name'
                else t.last_name
            end,
            phone = case r.kind
                when 'overwrite' then r.phone
                when 'merge_pending' then r.merged ->> 'phone'
                else t.phone
            end,
            company = case r.kind
                when 'overwrite' then r.company
                when 'merge_pending' then r.merged ->> 'company'
                else t.company
            end,
            tags = case r.kind
                when 'overwrite' then r.tags
                when 'merge_pending' then r.merged -> 'tags'
                else t.tags
            end,
            custom_fields = case r.kind
                when 'overwrite' then r.custom_fields
                when 'merge_pending' then r.merged -> 'custom_fields'
                else t.custom_fields
            end,
            keap_created_at = case when r.kind = 'park' then t.keap_created_at else r.keap_created_at end,
            keap_updated_at = case when r.kind = 'park' then t.keap_updated_at else r.keap_updated_at end,
            -- the Keap content now seen, whatever was done with it: a parked or kept-local record is
            -- not re-examined until Keap changes it again
            keap_hash = r.content_hash,
            -- a merge that kept local values is not in sync until the outbound item reaches Keap
            last_synced_at = case when r.kind = 'overwrite' then pg_catalog.now() else t.last_synced_at end,
            sync_status = case r.kind
                when 'overwrite' then 'completed'
                when 'park' then 'conflict'
                else 'pending'
            end,
            sync_error = case
                when r.kind = 'park' then 'changed in Keap and locally since the last sync: '
                    || pg_catalog.array_to_string(r.conflict_fields, ', ')
                    || '; resolve the open sync_conflicts row'
            end
        from resolved as r
        where t.id = r.cur_id
          and r.kind <> 'none'
          and t.version = r.cur_version
        returning t.id, t.keap_id, r.kind, r.action, r.merged
    ),
    new_status_rows as (
        -- a contact inserted by this statement has a new id, so it has no sync_status row yet: a plain
        -- insert (no speculative insertion, as ON CONFLICT needs). The row shares the contact's id
        -- (sync_status is one row per record: a shared key, not a third uuid to generate per contact)
        insert into public.sync_status (
            id, entity_type, entity_id, keap_id, supabase_id, sync_direction,
            last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
        )
        select i.id, 'sync_contacts', i.id, i.keap_id, i.id, 'keap_to_supabase',
               pg_catalog.now(), 'completed', null, 0, null
        from ins as i
    ),
    status_rows as (
        -- the id of a new row here is the column default (time-ordered)
        insert into public.sync_status as s (
            entity_type, entity_id, keap_id, supabase_id, sync_direction,
            last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
        )
        select 'sync_contacts', u.id, u.keap_id, u.id, 'keap_to_supabase',
               pg_catalog.now(),
               case u.kind when 'overwrite' then 'completed' when 'park' then 'conflict' else 'pending' end,
               null, 0, null
        from upd as u
        on conflict (entity_type, entity_id)
        do update
        set keap_id = excluded.keap_id,
            sync_direction = case
                when s.sync_direction = 'keap_to_supabase' then s.sync_direction
                else 'bidirectional'
            end,
            last_sync_at = excluded.last_sync_at,
            last_sync_status = excluded.last_sync_status,
            last_sync_error = null,
            retry_count = 0,
            next_retry_at = null,
            updated_at = pg_catalog.now()
    ),
    new_conflicts as (
        insert into public.sync_conflicts (
            entity_type, entity_id, keap_data, supabase_data, conflict_fields,
            resolution_strategy, resolved_at, resolution_notes
        )
        select 'sync_contacts', r.cur_id, r.incoming, r.local, r.conflict_fields,
               p_strategy,
               case when r.kind = 'park' then null else pg_catalog.now() end,
               case r.kind
                   when 'park' then 'parked for manual resolution by the Keap ingestion'
                   else 'resolved automatically by the Keap ingestion (' || p_strategy || ')'
               end
        from resolved as r
        where r.action = 'conflict'
          and not (
              r.kind = 'park'
              and exists (
                  select 1
                  from public.sync_conflicts as o
                  where o.entity_type = 'sync_contacts'
                    and o.entity_id = r.cur_id
                    and o.resolved_at is null
              )
          )
    ),
    refreshed_conflicts as (
        -- a record parked before and changed again in Keap: its one open conflict shows the latest
        update public.sync_conflicts as o
        set keap_data = r.incoming,
            supabase_data = r.local,
            conflict_fields = r.conflict_fields,
            detected_at = pg_catalog.now()
        from resolved as r
        where r.kind = 'park'
          and o.entity_type = 'sync_contacts'
          and o.entity_id = r.cur_id
          and o.resolved_at is null
    ),
    outbound as (
        -- the local row as it was before this statement (other parts of a statement do not see
        -- what its data-modifying WITH queries write), with the merged values on top
        insert into public.sync_queue (operation, entity_type, entity_id, payload, priority)
        select 'update', 'sync_contacts', u.id,
               pg_catalog.to_jsonb(t.*) || coalesce(u.merged, '{}'::jsonb),
               2
        from upd as u
        join public.sync_contacts as t
            on t.id = u.id
        where u.kind in ('keep_local', 'merge_pending')
        on conflict (entity_type, entity_id) where status = 'pending'
        do update
        set payload = excluded.payload,
            priority = least(public.sync_queue.priority, excluded.priority)
    ),
    cancelled as (
        update public.sync_queue as q
        set status = 'cancelled',
            completed_at = pg_catalog.now(),
            error_message = 'superseded: Keap''s version won a conflict (keap_wins)'
        from upd as u
        where u.kind = 'overwrite'
          and u.action = 'conflict'
          and q.entity_type = 'sync_contacts'
          and q.entity_id = u.id
          and q.status in ('pending', 'held')
    ),
    held as (
        -- a parked record's unsent outbound item waits for the conflict's resolution; an item it
        -- held before is superseded by the newer one (one held item per record)
        update public.sync_queue as q
        set status = case when q.status = 'pending' then 'held' else 'cancelled' end,
            completed_at = case when q.status = 'pending' then null else pg_catalog.now() end,
            error_message = case
                when q.status = 'pending'
                    then 'held: changed in Keap too; resolve the open sync_conflicts row to release it'
                else 'superseded: a newer local change of the record is held instead'
            end
        from upd as u
        where u.kind = 'park'
          and q.entity_type = 'sync_contacts'
          and q.entity_id = u.id
          and (
              q.status = 'pending'
              or (
                  q.status = 'held'
                  and exists (
                      select 1
                      from public.sync_queue as p
                      where p.entity_type = 'sync_contacts'
                        and p.entity_id = u.id
                        and p.status = 'pending'
                  )
              )
          )
    )
    select
        (select pg_catalog.count(*) from src)::integer as seen,
        (select pg_catalog.count(*) from ranked as r where r.rn > 1)::integer as duplicates,
        (select pg_catalog.count(*) from ins)::integer as inserted,
        (select pg_catalog.count(*) from upd as u where u.action = 'update')::integer as updated,
        c.unchanged, c.stale, c.local_pending, c.conflicts, c.conflicts_keap_wins, c.conflicts_supabase_wins,
        c.conflicts_merged, c.conflicts_parked, c.meant,
        (select pg_catalog.count(*) from upd)::integer as written
    from (
        -- one pass over the classified rows for all their counts
        select
            (pg_catalog.count(*) filter (where r.action = 'unchanged'))::integer as unchanged,
            (pg_catalog.count(*) filter (where r.action = 'stale'))::integer as stale,
            (pg_catalog.count(*) filter (where r.action = 'local'))::integer as local_pending,
            (pg_catalog.count(*) filter (where r.action = 'conflict'))::integer as conflicts,
            (pg_catalog.count(*) filter (
                where r.action = 'conflict' and r.kind = 'overwrite' and p_strategy = 'keap_wins'
            ))::integer as conflicts_keap_wins,
            (pg_catalog.count(*) filter (where r.kind = 'keep_local'))::integer as conflicts_supabase_wins,
            (pg_catalog.count(*) filter (
                where p_strategy = 'merge' and r.kind in ('overwrite', 'merge_pending') and r.action = 'conflict'
            ))::integer as conflicts_merged,
            (pg_catalog.count(*) filter (where r.kind = 'park'))::integer as conflicts_parked,
            (pg_catalog.count(*) filter (where r.kind <> 'none'))::integer as meant
        from resolved as r
    ) as c
    into v;
    -- new_status_rows, status_rows, new_conflicts, refreshed_conflicts, outbound and cancelled are not read above:
    -- data-modifying WITH queries run exactly once whether or not the main query reads them.

    if v.written <> v.meant then
        raise exception 'upsert_contacts_from_stage: % of % contacts changed concurrently while the batch was classified',
            v.meant - v.written, v.meant
            using errcode = '40001',
                  hint = 'Retry the batch (the loader does): its transaction is rolled back whole.';
    end if;
    return query
    select v.seen, v.duplicates, v.inserted, v.updated, v.unchanged, v.stale, v.local_pending, v.conflicts,
           v.conflicts_keap_wins, v.conflicts_supabase_wins, v.conflicts_merged, v.conflicts_parked;
end
$$;

comment on function keap_pipeline.upsert_contacts_from_stage(uuid, text, text) is
    'Set-based upsert of one staged contacts batch with conflict resolution, run as keap_pipeline_ingest; see sql/20, 21 and 24.';

-- The request's SQL front loads as the ingestion whoever calls it (EXECUTE is the owner's and the
-- ingestion's only; the SET fails for anyone who may not act as keap_pipeline_ingest).
alter function public.batch_upsert_contacts(jsonb[]) set role = keap_pipeline_ingest;

-- ---------------------------------------------------------------------------------------------
-- What the ingestion may do: exactly what a load, a replay and a cursor need
-- ---------------------------------------------------------------------------------------------

grant usage on schema keap_pipeline to keap_pipeline_ingest;
grant select, insert, delete on table keap_pipeline.stage_contacts, keap_pipeline.stage_contact_keys to keap_pipeline_ingest;
grant select, insert, update on table keap_pipeline.sync_cursors, keap_pipeline.dead_letters to keap_pipeline_ingest;
grant execute on function
    keap_pipeline.is_ingestion(),
    keap_pipeline.uuid_v7(),
    keap_pipeline.is_timestamptz(text),
    keap_pipeline.diff_contacts_from_stage(uuid),
    keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text),
    keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text),
    keap_pipeline.upsert_contacts_from_stage(uuid, text, text),
    public.batch_upsert_contacts(jsonb[])
to keap_pipeline_ingest;

-- ---------------------------------------------------------------------------------------------
-- Policies and grants: one permissive policy per role and action
-- ---------------------------------------------------------------------------------------------
-- A user's read of a sync table is `created_by = (select auth.uid())` OR the admin test. An OR with
-- a plain boolean (the admin test as a parameter) makes the planner scan the whole table for every
-- user (no index can answer "or true"), so the admin test is written as a range on the primary key
-- that is empty for everyone but admins: id between (zero uuid, for admins; NULL, otherwise) and
-- the greatest uuid. Both arms are then index conditions (a BitmapOr of the created_by index and
-- the primary key); for a user the second finds nothing at once, for an admin it covers every row.
-- The admin test reads app_metadata from the JWT through (select auth.jwt()), evaluated once.
-- The admin-only tables (status, queue, audit: 16's policies, kept) need no such form: their test
-- has no column in it, so PostgreSQL applies it as a one-time filter and a user's read scans nothing.

do $policies$
declare
    v_table text;
    v_policy text;
    v_columns text;
    v_refs text;
    v_owner text := '(created_by = (select auth.uid()))';
    v_admin_rows text := '(id between (select case when ((select auth.jwt()) -> ''app_metadata'' ->> ''role'') = ''admin'''
        ' then ''00000000-0000-0000-0000-000000000000''::uuid end) and ''ffffffff-ffff-ffff-ffff-ffffffffffff''::uuid)';
    v_admin text := '(((select auth.jwt()) -> ''app_metadata'' ->> ''role'') = ''admin'')';
    v_sync text[] := array['sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products'];
begin
    -- The sync tables.
    foreach v_table in array v_sync loop
        foreach v_policy in array array['users_read_own', 'users_insert_own', 'users_update_own', 'users_delete_own', 'admin_all'] loop
            execute pg_catalog.format('drop policy %I on public.%I', v_policy, v_table);
        end loop;

        -- the columns an app user writes: the record's content (and deleted_at, to soft-delete)
        v_columns := case v_table
            when 'sync_contacts' then 'email, first_name, last_name, phone, company, tags, custom_fields'
            when 'sync_orders' then 'contact_id, order_number, order_date, total_amount, currency, status, line_items,'
                                    ' shipping_address, billing_address'
            when 'sync_tags' then 'name, category, description, color'
            when 'sync_subscriptions' then 'contact_id, product_id, product_name, status, start_date, end_date,'
                                           ' next_bill_date, billing_cycle, billing_frequency, amount, currency'
            when 'sync_products' then 'name, sku, description, price, currency, active'
        end;
        -- a user's row may point only at rows the user can read (RLS applies inside the check), so
        -- an order cannot be hung on someone else's contact, nor a reference used to probe ids
        v_refs := case v_table
            when 'sync_orders' then
                ' and (contact_id is null or exists (select 1 from public.sync_contacts as c where c.id = contact_id))'
            when 'sync_subscriptions' then
                ' and (contact_id is null or exists (select 1 from public.sync_contacts as c where c.id = contact_id))'
                ' and (product_id is null or exists (select 1 from public.sync_products as p where p.id = product_id))'
            else ''
        end;

        execute pg_catalog.format('revoke insert, update, delete on table public.%I from authenticated', v_table);
        execute pg_catalog.format('grant insert (%s) on table public.%I to authenticated', v_columns, v_table);
        execute pg_catalog.format('grant update (%s, deleted_at) on table public.%I to authenticated', v_columns, v_table);

        execute pg_catalog.format(
            'create policy users_read on public.%I for select to authenticated using (%s or %s)',
            v_table, v_owner, v_admin_rows
        );
        execute pg_catalog.format(
            'create policy users_insert on public.%I for insert to authenticated with check (%s%s)',
            v_table, v_owner, v_refs
        );
        execute pg_catalog.format(
            'create policy users_update on public.%I for update to authenticated using (%s or %s) with check ((%s or %s)%s)',
            v_table, v_owner, v_admin_rows, v_owner, v_admin_rows, v_refs
        );

        execute pg_catalog.format('grant select, insert, update on table public.%I to keap_pipeline_ingest', v_table);
        execute pg_catalog.format(
            'create policy ingestion_all on public.%I for all to keap_pipeline_ingest using (true) with check (true)',
            v_table
        );
    end loop;

    -- Conflicts: admins read them and set the resolution columns only (retargeting entity_id and
    -- resolving would release another record's held outbound item); resolved_by is the admin.
    execute 'drop policy admin_conflicts on public.sync_conflicts';
    execute 'revoke update on table public.sync_conflicts from authenticated';
    execute 'grant update (resolution_strategy, resolved_at, resolved_by, resolution_notes) on table public.sync_conflicts to authenticated';
    execute pg_catalog.format(
        'create policy admins_read on public.sync_conflicts for select to authenticated using %s', v_admin
    );
    execute pg_catalog.format(
        'create policy admins_resolve on public.sync_conflicts for update to authenticated using %s'
        ' with check (%s and (resolved_by is null or resolved_by = (select auth.uid())))',
        v_admin, v_admin
    );

    -- The ingestion writes status, conflicts and queue items, and reads the audit log (the merge base).
    foreach v_table in array array['sync_status', 'sync_conflicts', 'sync_queue'] loop
        execute pg_catalog.format('grant select, insert, update on table public.%I to keap_pipeline_ingest', v_table);
        execute pg_catalog.format(
            'create policy ingestion_all on public.%I for all to keap_pipeline_ingest using (true) with check (true)',
            v_table
        );
    end loop;
    execute 'grant select on table public.sync_audit_log to keap_pipeline_ingest';
    execute 'create policy ingestion_read on public.sync_audit_log for select to keap_pipeline_ingest using (true)';
end
$policies$;

-- The audit log is append-only for every role but its owner: the triggers (SECURITY DEFINER, the
-- owner) append; service_role reads (16 granted it update and delete).
revoke insert, update, delete on table public.sync_audit_log from service_role;

-- deleted_by is now written (by the trigger, on soft delete) and, like the other *_by columns, set
-- NULL when its user is deleted: partial indexes so that cascade is no scan (ingested rows have NULL).
create index idx_sync_contacts_deleted_by on public.sync_contacts (deleted_by) where deleted_by is not null;
create index idx_sync_orders_deleted_by on public.sync_orders (deleted_by) where deleted_by is not null;
create index idx_sync_tags_deleted_by on public.sync_tags (deleted_by) where deleted_by is not null;
create index idx_sync_subscriptions_deleted_by on public.sync_subscriptions (deleted_by) where deleted_by is not null;
create index idx_sync_products_deleted_by on public.sync_products (deleted_by) where deleted_by is not null;
create index idx_sync_conflicts_resolved_by on public.sync_conflicts (resolved_by) where resolved_by is not null;
