-- Down of 24: back to the catalog of 23. Each function 24 replaced gets its previous text back
-- (copied from the file that defined it), the policies and grants of 16 come back, and what 24
-- granted to keap_pipeline_ingest is revoked. The role itself and its membership stay (roles are
-- cluster-wide; see 02). keap_pipeline.stage_contacts, stage_contact_keys, sync_cursors and
-- dead_letters had the default (NULL) ACL before 24; after the revoke they hold the owner's
-- privileges explicitly, which is the same ACL written out (PostgreSQL has no command to reset it).

drop index public.idx_sync_conflicts_resolved_by;
drop index public.idx_sync_products_deleted_by;
drop index public.idx_sync_subscriptions_deleted_by;
drop index public.idx_sync_tags_deleted_by;
drop index public.idx_sync_orders_deleted_by;
drop index public.idx_sync_contacts_deleted_by;

grant insert, update, delete on table public.sync_audit_log to service_role;

do $down$
declare
    v_table text;
    v_owner text := '(created_by = (select auth.uid()) or updated_by = (select auth.uid()))';
    v_admin text := '(((select auth.jwt()) -> ''app_metadata'' ->> ''role'') = ''admin'')';
begin
    drop policy ingestion_read on public.sync_audit_log;
    revoke all on table public.sync_audit_log from keap_pipeline_ingest;
    foreach v_table in array array['sync_queue', 'sync_conflicts', 'sync_status'] loop
        execute pg_catalog.format('drop policy ingestion_all on public.%I', v_table);
        execute pg_catalog.format('revoke all on table public.%I from keap_pipeline_ingest', v_table);
    end loop;

    -- conflicts
    drop policy admins_resolve on public.sync_conflicts;
    drop policy admins_read on public.sync_conflicts;
    revoke update on table public.sync_conflicts from authenticated;
    grant update on table public.sync_conflicts to authenticated;
    execute pg_catalog.format(
        'create policy admin_conflicts on public.sync_conflicts for all to authenticated using %s with check %s',
        v_admin, v_admin
    );

    -- the sync tables
    foreach v_table in array array['sync_products', 'sync_subscriptions', 'sync_tags', 'sync_orders', 'sync_contacts'] loop
        execute pg_catalog.format('drop policy ingestion_all on public.%I', v_table);
        execute pg_catalog.format('revoke all on table public.%I from keap_pipeline_ingest', v_table);
        execute pg_catalog.format('drop policy users_update on public.%I', v_table);
        execute pg_catalog.format('drop policy users_insert on public.%I', v_table);
        execute pg_catalog.format('drop policy users_read on public.%I', v_table);
        -- a table-level REVOKE takes the column privileges with it
        execute pg_catalog.format('revoke insert, update on table public.%I from authenticated', v_table);
        execute pg_catalog.format('grant insert, update, delete on table public.%I to authenticated', v_table);
        execute pg_catalog.format(
            'create policy users_read_own on public.%I for select to authenticated using %s', v_table, v_owner
        );
        execute pg_catalog.format(
            'create policy users_insert_own on public.%I for insert to authenticated with check (created_by = (select auth.uid()))',
            v_table
        );
        execute pg_catalog.format(
            'create policy users_update_own on public.%I for update to authenticated using %s with check %s',
            v_table, v_owner, v_owner
        );
        execute pg_catalog.format(
            'create policy users_delete_own on public.%I for delete to authenticated using %s', v_table, v_owner
        );
        execute pg_catalog.format(
            'create policy admin_all on public.%I for all to authenticated using %s with check %s',
            v_table, v_admin, v_admin
        );
    end loop;
end
$down$;

revoke all on function
    keap_pipeline.is_timestamptz(text),
    keap_pipeline.diff_contacts_from_stage(uuid),
    keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text),
    keap_pipeline.upsert_contacts_from_stage(uuid, text, text),
    public.batch_upsert_contacts(jsonb[])
from keap_pipeline_ingest;
revoke all on table keap_pipeline.sync_cursors, keap_pipeline.dead_letters from keap_pipeline_ingest;
revoke all on table keap_pipeline.stage_contacts, keap_pipeline.stage_contact_keys from keap_pipeline_ingest;
revoke all on schema keap_pipeline from keap_pipeline_ingest;

alter function public.batch_upsert_contacts(jsonb[]) reset role;

-- upsert_contacts_from_stage as 21 defined it
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
    v_previous_source text := pg_catalog.current_setting('keap_pipeline.sync_source', true);
begin
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

    -- The ingestion's writes are audited as 'keap' and not queued back to Keap (no echo).
    perform pg_catalog.set_config('keap_pipeline.sync_source', 'keap', true);
    -- No lock serialises loaders: batches load side by side (a run's loaders, or a backfill beside a
    -- schedule). Two batches that hold the same contact cannot both win: a second INSERT of a keap_id
    -- fails on its unique key (23505 on sync_contacts_keap_id_key) and a second UPDATE finds the
    -- version changed (40001 below); the loader retries either batch whole, and the retry sees the
    -- first one's rows. A run keeps its own in-flight batches disjoint, so it never retries itself.
    -- No row locks up front: locking every existing row of the batch would write each tuple (xmax)
    -- even when nothing changed. Instead the UPDATE below only touches a row whose version is still
    -- the one classified (optimistic check; READ COMMITTED re-reads a row changed concurrently); a
    -- row an app changed in between makes the counts differ, and the batch is retried (SQLSTATE 40001).
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
        insert into public.sync_contacts (
            id, keap_id, email, first_name, last_name, phone, company, tags, custom_fields,
            source_system, keap_created_at, keap_updated_at, keap_hash, last_synced_at, sync_status,
            created_by
        )
        select
            -- time-ordered ids: bulk inserts append to the id indexes (keap_pipeline.uuid_v7)
            keap_pipeline.uuid_v7(),
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
        insert into public.sync_status as s (
            id, entity_type, entity_id, keap_id, supabase_id, sync_direction,
            last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
        )
        select keap_pipeline.uuid_v7(), 'sync_contacts', u.id, u.keap_id, u.id, 'keap_to_supabase',
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
    -- the caller's own source again (the statement's triggers have fired)
    perform pg_catalog.set_config('keap_pipeline.sync_source', coalesce(v_previous_source, ''), true);
    return query
    select v.seen, v.duplicates, v.inserted, v.updated, v.unchanged, v.stale, v.local_pending, v.conflicts,
           v.conflicts_keap_wins, v.conflicts_supabase_wins, v.conflicts_merged, v.conflicts_parked;
end
$$;

comment on function keap_pipeline.upsert_contacts_from_stage(uuid, text, text) is
    'Set-based upsert of one staged contacts batch with conflict resolution; see sql/20-contacts-pipeline.sql and sql/21-parallel-loaders.sql.';

alter function keap_pipeline.release_held_outbound() set search_path = '';

-- trigger_sync_on_update as 12 defined it
create or replace function public.trigger_sync_on_update()
returns trigger
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_source text;
    v_user uuid;
    v_jit text;
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
        -- No queries here: this runs once per row.
        if new is not distinct from old then
            return new;
        end if;
        new.version := old.version + 1;
        new.updated_at := pg_catalog.now();
        return new;
    end if;

    -- Statement level. The role checks use the role GUC and the JWT claims, not current_user (which is
    -- this function's owner under SECURITY DEFINER).
    v_source := case
        when pg_catalog.current_setting('keap_pipeline.sync_source', true) = 'keap'
         and coalesce(nullif(pg_catalog.current_setting('role', true), ''), 'none') not in ('anon', 'authenticated')
         and coalesce(auth.role(), 'none') not in ('anon', 'authenticated')
        then 'keap'
        else 'supabase'
    end;
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
                    id, entity_type, entity_id, operation, old_data, new_data, changed_fields,
                    sync_source, sync_destination, user_id
                )
                select keap_pipeline.uuid_v7(), $1, c.id, 'INSERT', null, c.row_data, null,
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
                        where k.key not in ('version', 'updated_at')
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
                    id, entity_type, entity_id, operation, old_data, new_data, changed_fields,
                    sync_source, sync_destination, user_id
                )
                select keap_pipeline.uuid_v7(), $1, c.id, 'UPDATE', c.old_data, c.new_data, c.changed_fields,
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
                    id, entity_type, entity_id, operation, old_data, new_data, changed_fields,
                    sync_source, sync_destination, user_id
                )
                select keap_pipeline.uuid_v7(), $1, c.id, 'DELETE', c.row_data, null, null,
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
    'Sync tables: BEFORE UPDATE row part bumps version/updated_at; AFTER statement parts write audit, queue and sync_status set-based.';

-- describe_conflict as 20 defined it (dropped and created again: its ACL was the default, PUBLIC EXECUTE)
drop function keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text);
create function keap_pipeline.describe_conflict(
    p_entity_type text,
    p_entity_id uuid,
    p_incoming jsonb,
    p_local jsonb,
    p_strategy text,
    p_merge_rule text
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select pg_catalog.jsonb_build_object(
        'incoming', p_incoming,
        'local', p_local,
        'fields', (
            select coalesce(pg_catalog.jsonb_agg(i.key order by i.key), '[]'::jsonb)
            from pg_catalog.jsonb_each(p_incoming) as i
            where i.value is distinct from p_local -> i.key
        ),
        'merged', case
            when p_strategy = 'merge' then keap_pipeline.merge_fields(
                p_incoming,
                p_local,
                (
                    select b.data
                    from (
                        (
                            select a.new_data as data, a.created_at as seen_at, 1 as rank
                            from public.sync_audit_log as a
                            where a.entity_type = p_entity_type
                              and a.entity_id = p_entity_id
                              and a.sync_source = 'keap'
                              and a.new_data ->> 'sync_status' = 'completed'
                            -- versions order the rows of one record within one transaction (equal created_at)
                            order by a.created_at desc, (a.new_data ->> 'version')::integer desc
                            limit 1
                        )
                        union all
                        (
                            select k.keap_data, k.detected_at, 0
                            from public.sync_conflicts as k
                            where k.entity_type = p_entity_type
                              and k.entity_id = p_entity_id
                            order by k.detected_at desc
                            limit 1
                        )
                    ) as b
                    order by b.seen_at desc, b.rank
                    limit 1
                ),
                p_merge_rule
            )
        end
    )
$$;

comment on function keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text) is
    'Both sides, the differing fields and (merge) the merged record of one conflicting record.';

-- uuid_v7 as 23 defined it (dropped and created again, for the same reason), the ids' defaults of 10
drop function keap_pipeline.uuid_v7();
do $do$
begin
    if pg_catalog.current_setting('server_version_num')::integer >= 180000 then
        execute $sql$
            create or replace function keap_pipeline.uuid_v7()
            returns uuid
            language sql
            volatile
            parallel safe
            as 'select pg_catalog.uuidv7()'
        $sql$;
    else
        execute $sql$
            create or replace function keap_pipeline.uuid_v7()
            returns uuid
            language sql
            volatile
            parallel safe
            as $fn$
                select pg_catalog.encode(
                    pg_catalog.set_bit(
                        pg_catalog.set_bit(
                            overlay(
                                pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                                placing substring(
                                    pg_catalog.int8send(
                                        pg_catalog.floor(
                                            pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000
                                        )::bigint
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
            $fn$
        $sql$;
    end if;
end
$do$;

comment on function keap_pipeline.uuid_v7() is
    'Time-ordered uuid (UUIDv7 layout) for rows written in bulk; no SET clause so it can be inlined.';

alter table public.sync_audit_log alter column id set default gen_random_uuid();
alter table public.sync_status alter column id set default gen_random_uuid();
alter table public.sync_contacts alter column id set default gen_random_uuid();

drop function keap_pipeline.is_ingestion();

delete from keap_pipeline.standins
where created_by_version = 24;
