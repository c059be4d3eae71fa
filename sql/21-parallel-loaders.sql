-- 21: contacts batches load side by side (keap-pipeline's parallel loaders), and cost less each.
-- upsert_contacts_from_stage as in 20, with these changes:
-- * no transaction-wide advisory lock: it made every loader of contacts wait for the one before to
--   COMMIT, so a second connection could never load at the same time (measured: with two loaders,
--   32 of 79 samples of their pg_stat_activity were waiting on it). Concurrent batches stay correct
--   without it (see the comment in the body): the keap_id unique key and the optimistic version
--   check turn a collision into an error the loader retries;
-- * sync_status rows of the contacts the statement inserts are a plain insert (speculative
--   insertion, as ON CONFLICT needs, costs an extra index probe per row), keyed by the contact's own
--   id (sync_status holds one row per record: a shared key, not a third uuid to generate per
--   contact); only rows of updated contacts take ON CONFLICT;
-- * the per-batch counts read the classified rows once (count ... filter) instead of nine times.
-- CREATE OR REPLACE keeps the function's grants and revokes.

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

revoke execute on function keap_pipeline.upsert_contacts_from_stage(uuid, text, text) from public;
