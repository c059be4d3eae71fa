-- requires: 26
-- The loading functions of every Keap entity, generated from ONE template: the shared bookkeeping
-- (dedupe, classify by version and content hash, the four conflict strategies and merge rules,
-- sync_status, sync_conflicts, outbound queue hold/cancel, counts) is written here once; what differs
-- per entity (its tables, columns, types, merge fields and links) is read from the catalog and the
-- arguments of keap_pipeline.define_sync_entity (71-entities.sql). The generated functions are plain,
-- typed, set-based SQL (one statement per batch), exactly as if written by hand per entity.
--
-- For an entity E with target table T, staging table S and keys staging table K, it generates:
--   keap_pipeline.diff_E_from_stage(batch uuid)             phase one: which staged keys need full rows
--   keap_pipeline.upsert_E_from_stage(batch, strategy, rule) the set-based upsert of one staged batch
--   keap_pipeline.resolve_E_links()                          links rows whose Keap parent arrived later
-- Staged columns: ordinal, keap_id, <data columns>, keap_updated_at, content_hash. Data columns are the
-- merge fields (p_content: compared, merged, shown in sync_conflicts) and Keap's own columns (every
-- other data column: written from Keap unless the record is parked). Link columns (p_links) are target
-- columns filled from a parent table by a Keap id the record carries; NULL until the parent exists.
--
-- Classification of one staged record (the latest of its copies in the batch):
--   insert     no row with this keap_id yet
--   stale      Keap's update time is older than the stored one (an old window replayed): nothing
--   unchanged  the stored content equals Keap's: nothing is written (no version, audit, queue, tuple)
--   local      changed locally since the last sync (an unsent sync_queue item), not in Keap: left
--              for the outbound sync
--   update     changed in Keap only: overwritten
--   conflict   changed in Keap AND locally since the last sync, resolved by p_strategy:
--     keap_wins      overwrite; the local version is kept in sync_conflicts; its pending outbound
--                    item is cancelled
--     supabase_wins  keep local, remember Keap's update time, queue the local row to Keap
--     manual         park: sync_status 'conflict', nothing overwritten, one open sync_conflicts row,
--                    the record's unsent outbound item held until the conflict is resolved
--     merge          keap_pipeline.merge_fields with p_merge_rule for fields changed on both sides;
--                    parks like manual when that rule is 'manual' and such a field exists
--
-- Concurrency (as 21 and 24 explained for contacts): no lock serialises loaders. Two batches holding
-- the same record cannot both win: a second INSERT of a keap_id fails on its unique key (23505, the
-- loader retries) and a second UPDATE finds the version changed (40001 below, retried). No row locks
-- up front: the UPDATE only touches a row whose version is still the one classified. Rows are matched
-- by keap_id, which only the ingestion sets (sql/24): a row an app user made is never matched.

create or replace function keap_pipeline.define_sync_entity(
    p_entity text,
    p_target regclass,
    p_stage regclass,
    p_keys regclass,
    p_content text[],
    p_links jsonb default '[]'::jsonb
)
returns void
language plpgsql
volatile
set search_path = ''
as $define$
declare
    v_table text;              -- the target's name without schema: sync_queue/sync_status entity_type
    v_target text := p_target::text;
    v_data text[];             -- staged data columns, in staging order
    v_types text[];            -- their types without typmod (a cast to varchar(n) or numeric(p,s) would
                               -- truncate or round silently; assignment to the column checks instead)
    v_keap_only text[];
    v_link jsonb;
    v_pair jsonb;
    v_n integer := 0;
    v_has_source boolean;
    -- generated fragments
    f_d text;                  -- d.<data>
    f_l text;                  -- l.<data>
    f_r text;                  -- r.<data>
    f_cols text;               -- <data>
    f_cur text := '';          -- l.<content> as cur_<content>
    f_incoming text;           -- 'c', c.c, ...
    f_local text;              -- 'c', c.cur_c, ...
    f_set text := '';          -- update assignments
    f_link_sel text := '';     -- resolved link values in classified
    f_link_join text := '';    -- joins to the parents
    f_link_cols text := '';    -- , <link target columns>  (insert list)
    f_link_vals text := '';    -- , r.link__<col>
    f_resolve text := '';      -- statements of resolve_E_links
    v_col text;
    v_type text;
    v_i integer;
    v_first text;
    v_alias text;
    v_check text;
begin
    v_table := (select c.relname from pg_catalog.pg_class as c where c.oid = p_target);
    v_has_source := exists (
        select 1 from pg_catalog.pg_attribute as a
        where a.attrelid = p_target and a.attname = 'source_system' and not a.attisdropped
    );

    select pg_catalog.array_agg(a.attname::text order by a.attnum),
           pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, null) order by a.attnum)
    into v_data, v_types
    from pg_catalog.pg_attribute as a
    where a.attrelid = p_stage
      and a.attnum > 0
      and not a.attisdropped
      and a.attname not in ('batch_id', 'ordinal', 'keap_id', 'keap_updated_at', 'content_hash');

    if v_data is null then
        raise exception 'define_sync_entity(%): staging table % has no data columns', p_entity, p_stage;
    end if;
    if not p_content <@ v_data then
        raise exception 'define_sync_entity(%): merge fields % are not all staged columns %', p_entity, p_content, v_data;
    end if;
    -- every staged column must exist in the target with the same type (the template copies them 1:1)
    select pg_catalog.string_agg(s.attname, ', ')
    into v_check
    from pg_catalog.pg_attribute as s
    left join pg_catalog.pg_attribute as t
        on t.attrelid = p_target and t.attname = s.attname and not t.attisdropped
    where s.attrelid = p_stage and s.attnum > 0 and not s.attisdropped
      and s.attname not in ('batch_id', 'ordinal', 'content_hash')
      and (t.attname is null or t.atttypid <> s.atttypid or t.atttypmod <> s.atttypmod);
    if v_check is not null then
        raise exception 'define_sync_entity(%): staged columns % differ from %''s', p_entity, v_check, p_target;
    end if;

    v_keap_only := array(select x from pg_catalog.unnest(v_data) as x where x <> all (p_content));

    f_cols := (select pg_catalog.string_agg(pg_catalog.quote_ident(x), ', ') from pg_catalog.unnest(v_data) as x);
    f_d := (select pg_catalog.string_agg('d.' || pg_catalog.quote_ident(x), ', ') from pg_catalog.unnest(v_data) as x);
    f_l := (select pg_catalog.string_agg('l.' || pg_catalog.quote_ident(x), ', ') from pg_catalog.unnest(v_data) as x);
    f_r := (select pg_catalog.string_agg('r.' || pg_catalog.quote_ident(x), ', ') from pg_catalog.unnest(v_data) as x);
    f_incoming := (
        select pg_catalog.string_agg(pg_catalog.format('%L, c.%I', x, x), ', ') from pg_catalog.unnest(p_content) as x
    );
    f_local := (
        select pg_catalog.string_agg(pg_catalog.format('%L, c.%I', x, 'cur_' || x), ', ') from pg_catalog.unnest(p_content) as x
    );

    for v_i in 1 .. pg_catalog.array_length(v_data, 1) loop
        v_col := v_data[v_i];
        v_type := v_types[v_i];
        if v_col = any (p_content) then
            f_cur := f_cur || pg_catalog.format(', l.%I as %I', v_col, 'cur_' || v_col);
            f_set := f_set || pg_catalog.format(
                E',\n            %1$I = case r.kind when ''overwrite'' then r.%1$I when ''merge_pending'' then %2$s else t.%1$I end',
                v_col,
                case when v_type = 'jsonb'
                    then pg_catalog.format('r.merged -> %L', v_col)
                    else pg_catalog.format('(r.merged ->> %L)::%s', v_col, v_type)
                end
            );
        else
            f_set := f_set || pg_catalog.format(
                E',\n            %1$I = case when r.kind = ''park'' then t.%1$I else r.%1$I end', v_col
            );
        end if;
    end loop;

    for v_link in select * from pg_catalog.jsonb_array_elements(p_links) loop
        v_n := v_n + 1;
        v_alias := 'p' || v_n;
        if not (v_link ->> 'keap_column') = any (v_keap_only) then
            raise exception 'define_sync_entity(%): link key % is not a staged Keap column', p_entity, v_link ->> 'keap_column';
        end if;
        f_link_join := f_link_join || pg_catalog.format(
            E'\n        left join %s as %I on %I.%I = d.%I',
            (v_link ->> 'parent_table')::regclass, v_alias, v_alias, v_link ->> 'parent_key', v_link ->> 'keap_column'
        );
        v_first := null;
        f_resolve := f_resolve || pg_catalog.format(E'\n    update %s as t\n    set ', v_target);
        for v_pair in select * from pg_catalog.jsonb_array_elements(v_link -> 'columns') loop
            v_col := v_pair ->> 0;
            f_link_sel := f_link_sel || pg_catalog.format(', %I.%I as %I', v_alias, v_pair ->> 1, 'link__' || v_col);
            f_link_cols := f_link_cols || ', ' || pg_catalog.quote_ident(v_col);
            f_link_vals := f_link_vals || ', r.' || pg_catalog.quote_ident('link__' || v_col);
            -- parked: as it was. Otherwise the parent's value; when the parent is not loaded (yet) and
            -- the record still names the same parent, what the row holds (it may be a local choice)
            f_set := f_set || pg_catalog.format(
                E',\n            %1$I = case when r.kind = ''park'' then t.%1$I'
                ' when r.%2$I is not null then r.%2$I'
                ' when r.%3$I is not distinct from t.%3$I then t.%1$I end',
                v_col, 'link__' || v_col, v_link ->> 'keap_column'
            );
            if v_first is null then
                v_first := v_col;
                f_resolve := f_resolve || pg_catalog.format('%I = p.%I', v_col, v_pair ->> 1);
            else
                f_resolve := f_resolve || pg_catalog.format(', %I = coalesce(t.%I, p.%I)', v_col, v_col, v_pair ->> 1);
            end if;
        end loop;
        f_resolve := f_resolve || pg_catalog.format(
            E'\n    from %s as p\n    where t.%I is null and t.%I is not null and p.%I = t.%I and t.deleted_at is null;'
            || E'\n    get diagnostics v_rows = row_count;\n    v_total := v_total + v_rows;',
            (v_link ->> 'parent_table')::regclass, v_first, v_link ->> 'keap_column', v_link ->> 'parent_key',
            v_link ->> 'keap_column'
        );
    end loop;

    -- phase one ---------------------------------------------------------------------------------
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I(p_batch_id uuid)
returns table (ordinal integer, verdict text)
language sql
volatile
set search_path = ''
set jit = off
as $body$
    with keys as (
        delete from %2$s as k
        where k.batch_id = p_batch_id
        returning k.ordinal, k.keap_id, k.keap_updated_at, k.content_hash
    ),
    ranked as (
        select k.*,
               pg_catalog.row_number() over (partition by k.keap_id order by k.keap_updated_at desc, k.ordinal desc) as rn
        from keys as k
    ),
    judged as (
        select r.ordinal,
               case
                   when r.rn > 1 then 'duplicate'
                   when c.id is null then 'load'
                   when c.keap_updated_at is not null and r.keap_updated_at < c.keap_updated_at then 'stale'
                   when c.keap_hash = r.content_hash then 'unchanged'
                   else 'load'
               end as verdict
        from ranked as r
        left join %3$s as c
            on c.keap_id = r.keap_id
    )
    select j.ordinal, j.verdict
    from judged as j
    where j.verdict <> 'unchanged'
$body$;
$f$, 'diff_' || p_entity || '_from_stage', p_keys, v_target);

    -- the upsert --------------------------------------------------------------------------------
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I(
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
as $body$
declare
    v record;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception '%1$s runs as the Keap ingestion only (role keap_pipeline_ingest), not as %%', current_user
            using errcode = '42501',
                  hint = 'Run SET LOCAL ROLE keap_pipeline_ingest at the start of the loading transaction (keap_pipeline.db.load.begin_load).';
    end if;
    if p_strategy is null or p_strategy not in ('keap_wins', 'supabase_wins', 'manual', 'merge') then
        raise exception 'unknown conflict strategy %%', coalesce(p_strategy, 'NULL')
            using errcode = '22023', hint = 'Use one of keap_wins, supabase_wins, manual, merge.';
    end if;
    if p_merge_rule is null or p_merge_rule not in ('keap_wins', 'supabase_wins', 'manual') then
        raise exception 'unknown merge rule %%', coalesce(p_merge_rule, 'NULL')
            using errcode = '22023', hint = 'Use one of keap_wins, supabase_wins, manual.';
    end if;

    with src as (
        delete from %2$s as s
        where s.batch_id = p_batch_id
        returning s.*
    ),
    ranked as (
        select s.*,
               pg_catalog.row_number() over (partition by s.keap_id order by s.keap_updated_at desc, s.ordinal desc) as rn
        from src as s
    ),
    dedup as (
        select * from ranked as r where r.rn = 1
    ),
    classified as (
        select
            d.keap_id, %4$s, d.keap_updated_at, d.content_hash%7$s,
            l.id as cur_id,
            l.version as cur_version%6$s,
            case
                when l.id is null then 'insert'
                when l.keap_updated_at is not null and d.keap_updated_at < l.keap_updated_at then 'stale'
                -- the Keap content last seen (written, parked or kept local) came again: nothing to do
                when l.keap_hash = d.content_hash then 'unchanged'
                when (%4$s) is not distinct from (%5$s) then 'unchanged'
                -- changed locally since the last sync = a local change not yet (or not successfully)
                -- sent to Keap: every app write queues one (sql/12), the ingestion's never do. An item
                -- the pusher cannot send yet ('unsupported', sql/30) is such a change too: those few
                -- records are read once per statement (a hashed subplan), so the per-row lookup keeps
                -- using sync_queue_unsent_entity_idx as its predicate stands
                when exists (
                    select 1
                    from public.sync_queue as q
                    where q.entity_type = %3$L
                      and q.entity_id = l.id
                      and q.status in ('pending', 'processing', 'error', 'held')
                ) or l.id in (
                    select u.entity_id
                    from public.sync_queue as u
                    where u.entity_type = %3$L
                      and u.status = 'unsupported'
                ) then
                    case
                        when l.keap_updated_at is null or d.keap_updated_at > l.keap_updated_at then 'conflict'
                        else 'local'
                    end
                else 'update'
            end as action
        from dedup as d
        left join %8$s as l
            on l.keap_id = d.keap_id%9$s
    ),
    described as (
        select
            c.*,
            case
                when c.action = 'conflict' then keap_pipeline.describe_conflict(
                    %3$L,
                    c.cur_id,
                    pg_catalog.jsonb_build_object(%10$s),
                    pg_catalog.jsonb_build_object(%11$s),
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
        insert into %8$s (
            keap_id, %12$s%13$s,%14$s keap_updated_at, keap_hash, last_synced_at, sync_status, created_by
        )
        select
            r.keap_id, %15$s%16$s,%17$s r.keap_updated_at, r.content_hash, pg_catalog.now(), 'completed',
            -- created by the ingestion, not by a user (and the column default need not run per row)
            null
        from resolved as r
        where r.action = 'insert'
        returning id, keap_id
    ),
    upd as (
        -- 'overwrite' writes Keap's values (a merge whose result equals Keap's is an overwrite too);
        -- 'merge_pending' the merged ones; 'keep_local' and 'park' keep the row's own
        update %8$s as t
        set keap_updated_at = case when r.kind = 'park' then t.keap_updated_at else r.keap_updated_at end%18$s,
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
        -- a record inserted by this statement has a new id, so it has no sync_status row yet: a plain
        -- insert (no speculative insertion, as ON CONFLICT needs). The row shares the record's id
        insert into public.sync_status (
            id, entity_type, entity_id, keap_id, supabase_id, sync_direction,
            last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
        )
        select i.id, %3$L, i.id, i.keap_id, i.id, 'keap_to_supabase', pg_catalog.now(), 'completed', null, 0, null
        from ins as i
    ),
    status_rows as (
        insert into public.sync_status as s (
            entity_type, entity_id, keap_id, supabase_id, sync_direction,
            last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
        )
        select %3$L, u.id, u.keap_id, u.id, 'keap_to_supabase',
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
        select %3$L, r.cur_id, r.incoming, r.local, r.conflict_fields,
               p_strategy,
               case when r.kind = 'park' then null else pg_catalog.now() end,
               case r.kind
                   when 'park' then 'parked for manual resolution by the Keap ingestion'
                   else 'resolved automatically by the Keap ingestion (' || p_strategy || ')'
               end
        from resolved as r
        where r.action = 'conflict'
          -- one open conflict per record: a record parked before is refreshed below instead
          and not (
              r.kind = 'park'
              and exists (
                  select 1
                  from public.sync_conflicts as o
                  where o.entity_type = %3$L
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
          and o.entity_type = %3$L
          and o.entity_id = r.cur_id
          and o.resolved_at is null
    ),
    outbound as (
        -- the local row as it was before this statement (other parts of a statement do not see
        -- what its data-modifying WITH queries write), with the merged values on top
        insert into public.sync_queue (operation, entity_type, entity_id, payload, priority)
        select 'update', %3$L, u.id,
               pg_catalog.to_jsonb(t.*) || coalesce(u.merged, '{}'::jsonb),
               2
        from upd as u
        join %8$s as t
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
          and q.entity_type = %3$L
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
          and q.entity_type = %3$L
          and q.entity_id = u.id
          and (
              q.status = 'pending'
              or (
                  q.status = 'held'
                  and exists (
                      select 1
                      from public.sync_queue as p
                      where p.entity_type = %3$L
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
    -- new_status_rows, status_rows, new_conflicts, refreshed_conflicts, outbound, cancelled and held are
    -- not read above: data-modifying WITH queries run exactly once whether or not the main query reads them.

    if v.written <> v.meant then
        raise exception '%1$s: %% of %% records changed concurrently while the batch was classified',
            v.meant - v.written, v.meant
            using errcode = '40001',
                  hint = 'Retry the batch (the loader does): its transaction is rolled back whole.';
    end if;
    return query
    select v.seen, v.duplicates, v.inserted, v.updated, v.unchanged, v.stale, v.local_pending, v.conflicts,
           v.conflicts_keap_wins, v.conflicts_supabase_wins, v.conflicts_merged, v.conflicts_parked;
end
$body$;
$f$,
        'upsert_' || p_entity || '_from_stage',        -- 1
        p_stage,                                        -- 2
        v_table,                                        -- 3
        f_d,                                            -- 4
        f_l,                                            -- 5
        f_cur,                                          -- 6
        f_link_sel,                                     -- 7
        v_target,                                       -- 8
        f_link_join,                                    -- 9
        f_incoming,                                     -- 10
        f_local,                                        -- 11
        f_cols,                                         -- 12
        f_link_cols,                                    -- 13
        case when v_has_source then ' source_system,' else '' end,  -- 14
        f_r,                                            -- 15
        f_link_vals,                                    -- 16
        case when v_has_source then ' ''keap'',' else '' end,       -- 17
        f_set                                           -- 18
    );

    -- links that arrive out of order --------------------------------------------------------------
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I()
returns integer
language plpgsql
volatile
set search_path = ''
as $body$
declare
    v_rows integer;
    v_total integer := 0;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception '%1$s runs as the Keap ingestion only (role keap_pipeline_ingest), not as %%', current_user
            using errcode = '42501';
    end if;%2$s
    return v_total;
end
$body$;
$f$, 'resolve_' || p_entity || '_links', f_resolve);

    execute pg_catalog.format(
        'comment on function keap_pipeline.%I(uuid) is %L', 'diff_' || p_entity || '_from_stage',
        'Phase one of a ' || p_entity || ' batch: which staged keys need their full rows loaded. Generated by define_sync_entity.'
    );
    execute pg_catalog.format(
        'comment on function keap_pipeline.%I(uuid, text, text) is %L', 'upsert_' || p_entity || '_from_stage',
        'Set-based upsert of one staged ' || p_entity || ' batch with conflict resolution, run as keap_pipeline_ingest.'
        ' Generated by define_sync_entity (sql/functions/70-entity-template.sql).'
    );
    execute pg_catalog.format(
        'comment on function keap_pipeline.%I() is %L', 'resolve_' || p_entity || '_links',
        'Links ' || p_entity || ' rows whose Keap parent was loaded after them; returns how many. Generated by define_sync_entity.'
    );
    -- the functions are the ingestion's only (EXECUTE is granted to PUBLIC by default)
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I(uuid) from public', 'diff_' || p_entity || '_from_stage');
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I(uuid, text, text) from public', 'upsert_' || p_entity || '_from_stage');
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I() from public', 'resolve_' || p_entity || '_links');
    execute pg_catalog.format('grant execute on function keap_pipeline.%I(uuid) to keap_pipeline_ingest', 'diff_' || p_entity || '_from_stage');
    execute pg_catalog.format('grant execute on function keap_pipeline.%I(uuid, text, text) to keap_pipeline_ingest', 'upsert_' || p_entity || '_from_stage');
    execute pg_catalog.format('grant execute on function keap_pipeline.%I() to keap_pipeline_ingest', 'resolve_' || p_entity || '_links');
end
$define$;

comment on function keap_pipeline.define_sync_entity(text, regclass, regclass, regclass, text[], jsonb) is
    'Generates diff_E_from_stage, upsert_E_from_stage and resolve_E_links of one entity from the shared template.';

revoke execute on function keap_pipeline.define_sync_entity(text, regclass, regclass, regclass, text[], jsonb) from public;

-- ---------------------------------------------------------------------------------------------------
-- Deletions in Keap (issue 13): the reconcile functions of an entity, from one template too.
-- ---------------------------------------------------------------------------------------------------
-- Keap lists no deletions: a record deleted or merged away there just stops being listed. A reconcile
-- pass (keap_pipeline.pipeline.reconcile) COPYs every id Keap lists into the entity's ids table I
-- (keap_id; it holds the ids of the one pass in progress), then calls, for an entity E with target table T:
--   keap_pipeline.reconcile_E_from_stage(pass, started_at, protect_since, max_share, max_count, apply_limit)
--       restores the rows Keap deleted earlier and lists again; records the live rows Keap did not list
--       (keap_pipeline.reconcile_pending_deletions); soft-deletes them unless they are more than
--       max_share of the live rows or more than max_count (the safety stop: they stay recorded, and
--       nothing is deleted until a person confirms the pass). With apply_limit, at most that many of
--       them in this transaction: the caller applies the rest in further ones (below).
--   keap_pipeline.apply_E_deletions(pass, started_at, protect_since, row_limit)
--       soft-deletes what the pass recorded (the reconcile above when within the limits; a
--       confirmation of a stopped pass otherwise) and clears the record; with row_limit, only the
--       first row_limit recorded rows (in entity_id order), so that a large pass commits in several
--       transactions, each within the realtime budget of streamed changes (each soft delete streams
--       its row's UPDATE and its sync_status row: docs/realtime.md); NULL = all.
--   keap_pipeline.missing_E_from_stage(started_at, protect_since)
--       the live rows Keap did not list and the pass may judge, with its counts, without writing
--       (entities whose listing has no order that survives an update confirm each with a get first).
-- A soft delete is the request's model: deleted_at set, deleted_by empty (the trigger leaves it NULL for
-- the ingestion: Keap did it), a sync_status row, an audit row with source keap and operation DELETE
-- (trigger_sync_on_update), never queued back to Keap; dependent rows keep their links. Never judged by
-- a pass (kept): rows created after the pass started, rows a sync wrote after it started, and rows whose
-- Keap update time is at or after protect_since (the start less an allowance for clock skew): Keap had
-- them while the pass ran, whatever the listing said. Rows a person deleted locally are neither deleted
-- again nor restored (only rows in keap_pipeline.keap_deleted_rows are Keap's deletions).
create or replace function keap_pipeline.define_reconcile_entity(
    p_entity text,
    p_target regclass,
    p_ids regclass
)
returns void
language plpgsql
volatile
set search_path = ''
as $define$
declare
    v_table text;
    v_target text := p_target::text;
    v_check text;
    -- a row Keap had while the pass ran, whatever the listing said (never NULL: see the coalesces)
    f_recent text := '(t.created_at >= p_started_at'
        ' or coalesce(t.last_synced_at >= p_started_at, false)'
        ' or coalesce(t.keap_updated_at >= p_protect_since, false))';
    f_listed text;
    f_status text;
begin
    v_table := (select c.relname from pg_catalog.pg_class as c where c.oid = p_target);
    -- the ids table: (keap_id <the target's keap_id type>), nothing else
    select pg_catalog.string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)
    into v_check
    from pg_catalog.pg_attribute as a
    where a.attrelid = p_ids and a.attnum > 0 and not a.attisdropped;
    if v_check is distinct from 'keap_id ' || (
        select pg_catalog.format_type(a.atttypid, a.atttypmod)
        from pg_catalog.pg_attribute as a
        where a.attrelid = p_target and a.attname = 'keap_id' and not a.attisdropped
    ) then
        raise exception 'define_reconcile_entity(%): % must have exactly (keap_id like %.keap_id), not (%)',
            p_entity, p_ids, p_target, v_check;
    end if;

    -- listed by the pass (the ids table holds the ids of the pass in progress only)
    f_listed := pg_catalog.format('exists (select 1 from %s as s where s.keap_id = t.keap_id)', p_ids);
    -- the sync_status row of each row of `changed` (id, keap_id), as the upsert writes it
    f_status := pg_catalog.format($s$
    insert into public.sync_status as s (
        entity_type, entity_id, keap_id, supabase_id, sync_direction,
        last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
    )
    select %1$L, c.id, c.keap_id, c.id, 'keap_to_supabase', pg_catalog.now(), 'completed', null, 0, null
    from changed as c
    on conflict (entity_type, entity_id)
    do update
    set keap_id = excluded.keap_id,
        sync_direction = case when s.sync_direction = 'keap_to_supabase' then s.sync_direction else 'bidirectional' end,
        last_sync_at = excluded.last_sync_at,
        last_sync_status = excluded.last_sync_status,
        last_sync_error = null,
        retry_count = 0,
        next_retry_at = null,
        updated_at = pg_catalog.now()$s$, v_table);

    -- what Keap did not list ---------------------------------------------------------------------
    -- One row: the live rows the pass may judge that Keap did not list (as arrays: they are few, the
    -- rows Keap deleted since the last pass), how many such rows are kept as changed during the pass,
    -- how many were deleted here and are gone from Keap too, and how many rows are live. A SQL function
    -- of plain SELECTs, so PostgreSQL may run the scans and the anti-join in parallel (a PL/pgSQL
    -- SELECT INTO never does: measured 4.8 s against 1.9 s for a million rows on PostgreSQL 15).
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I(p_started_at timestamptz, p_protect_since timestamptz)
returns table (entity_ids uuid[], keap_ids text[], kept_recent bigint, deleted_here_too bigint, live bigint)
language sql
stable
set search_path = ''
set jit = off
-- the anti-join hashes every id of the pass: a million fit in memory at this size, where the
-- default 4MB would spill the hash to disk in batches
set work_mem = '64MB'
as $body$
    select
        coalesce(u.entity_ids, '{}'),
        coalesce(u.keap_ids, '{}'),
        u.kept_recent,
        u.deleted_here_too,
        (
            select pg_catalog.count(*)
            from %2$s as t
            where t.keap_id is not null
              and t.deleted_at is null
        )
    from (
        select
            pg_catalog.array_agg(t.id) filter (where t.deleted_at is null and not %4$s) as entity_ids,
            pg_catalog.array_agg(t.keap_id::text) filter (where t.deleted_at is null and not %4$s) as keap_ids,
            pg_catalog.count(*) filter (where t.deleted_at is null and %4$s) as kept_recent,
            -- deleted here by a person and gone from Keap too (the outbound delete, or both sides):
            -- not a deletion of Keap's to report again
            pg_catalog.count(*) filter (
                where t.deleted_at is not null
                  and not exists (
                      select 1 from keap_pipeline.keap_deleted_rows as m
                      where m.entity_type = %5$L and m.entity_id = t.id
                  )
            ) as deleted_here_too
        from %2$s as t
        where t.keap_id is not null
          and not %3$s
    ) as u
$body$;
$f$, 'missing_' || p_entity || '_from_stage', v_target, f_listed, f_recent, v_table);

    -- soft-deleting what a pass recorded ------------------------------------------------------------
    -- (the 3-argument form before the row limit: dropped, or a call with three arguments would be ambiguous)
    execute pg_catalog.format('drop function if exists keap_pipeline.%I(uuid, timestamptz, timestamptz)', 'apply_' || p_entity || '_deletions');
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I(
    p_pass_id uuid,
    p_started_at timestamptz,
    p_protect_since timestamptz,
    p_row_limit bigint default null
)
returns bigint
language plpgsql
volatile
set search_path = ''
set jit = off
as $body$
declare
    v_deleted bigint;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception '%1$s runs as the Keap ingestion only (role keap_pipeline_ingest), not as %%', current_user
            using errcode = '42501';
    end if;
    if p_row_limit is not null and p_row_limit < 1 then
        raise exception '%1$s: row limit %% must be 1 or more (NULL: all)', p_row_limit
            using errcode = '22023';
    end if;
    with chunk as (
        -- the recorded rows this call applies (all, or the first p_row_limit); cleared below
        select p.entity_id, p.keap_id
        from keap_pipeline.reconcile_pending_deletions as p
        where p.pass_id = p_pass_id
        order by p.entity_id
        limit p_row_limit
    ),
    changed as (
        -- the trigger audits this as a DELETE from keap, queues nothing and leaves deleted_by NULL;
        -- a row that changed since it was recorded (written by a sync, deleted or restored by a
        -- person) is left alone
        update %2$s as t
        set deleted_at = pg_catalog.now(),
            last_synced_at = pg_catalog.now()
        from chunk as p
        where t.id = p.entity_id
          and t.keap_id = p.keap_id
          and t.deleted_at is null
          and not %4$s
        returning t.id, t.keap_id, t.deleted_at
    ),
    marked as (
        insert into keap_pipeline.keap_deleted_rows (entity_type, entity_id, keap_id, deleted_at, pass_id)
        select %3$L, c.id, c.keap_id, c.deleted_at, p_pass_id
        from changed as c
        on conflict (entity_type, entity_id)
        do update
        set keap_id = excluded.keap_id,
            deleted_at = excluded.deleted_at,
            pass_id = excluded.pass_id
    ),
    status_rows as (%5$s
    ),
    cleared as (
        delete from keap_pipeline.reconcile_pending_deletions as p
        using chunk as c
        where p.pass_id = p_pass_id
          and p.entity_id = c.entity_id
    )
    select pg_catalog.count(*)
    from changed
    into v_deleted;
    return v_deleted;
end
$body$;
$f$, 'apply_' || p_entity || '_deletions', v_target, v_table, f_recent, f_status);

    -- the pass --------------------------------------------------------------------------------------
    -- (the 5-argument form before apply_limit: dropped, as above)
    execute pg_catalog.format(
        'drop function if exists keap_pipeline.%I(uuid, timestamptz, timestamptz, numeric, bigint)',
        'reconcile_' || p_entity || '_from_stage'
    );
    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I(
    p_pass_id uuid,
    p_started_at timestamptz,
    p_protect_since timestamptz,
    p_max_share numeric,
    p_max_count bigint,
    p_apply_limit bigint default null
)
returns table (
    live bigint,
    missing bigint,
    deleted bigint,
    restored bigint,
    kept_recent bigint,
    deleted_here_too bigint,
    stopped boolean
)
language plpgsql
volatile
set search_path = ''
set jit = off
as $body$
declare
    v_live bigint;
    v_missing bigint;
    v_kept bigint;
    v_here bigint;
    v_restored bigint;
    v_deleted bigint := 0;
    v_stopped boolean;
    v_ids uuid[];
    v_keys text[];
begin
    if not keap_pipeline.is_ingestion() then
        raise exception '%1$s runs as the Keap ingestion only (role keap_pipeline_ingest), not as %%', current_user
            using errcode = '42501';
    end if;
    if p_max_share is null or p_max_share < 0 or p_max_share > 1 or p_max_count is null or p_max_count < 0 then
        raise exception 'reconcile limits out of range: max_share %% (0..1), max_count %% (0 or more)',
            coalesce(p_max_share::text, 'NULL'), coalesce(p_max_count::text, 'NULL')
            using errcode = '22023';
    end if;
    if not exists (
        select 1 from keap_pipeline.reconcile_passes as r
        where r.id = p_pass_id and r.entity = %6$L and r.status = 'running'
    ) then
        raise exception 'no running reconcile pass %% of %6$s', p_pass_id
            using errcode = '22023', hint = 'Start a pass (keap_pipeline.db.reconcile.begin_pass) and COPY its ids first.';
    end if;

    -- rows Keap deleted before and lists again (restored in Keap, a merge undone): restored, audited
    with changed as (
        update %2$s as t
        set deleted_at = null,
            last_synced_at = pg_catalog.now()
        from keap_pipeline.keap_deleted_rows as m
        where m.entity_type = %3$L
          and m.entity_id = t.id
          and t.deleted_at = m.deleted_at
          and %4$s
        returning t.id, t.keap_id
    ),
    forgotten as (
        delete from keap_pipeline.keap_deleted_rows as m
        using changed as c
        where m.entity_type = %3$L
          and m.entity_id = c.id
    ),
    status_rows as (%7$s
    )
    select pg_catalog.count(*)
    from changed
    into v_restored;

    -- one pass over the table (missing_E_from_stage, parallel where the server allows): the rows Keap
    -- did not list; the live ones this pass may judge are recorded
    select m.entity_ids, m.keap_ids, m.kept_recent, m.deleted_here_too, m.live
    into v_ids, v_keys, v_kept, v_here, v_live
    from keap_pipeline.%9$I(p_started_at, p_protect_since) as m;
    insert into keap_pipeline.reconcile_pending_deletions (pass_id, entity_id, keap_id)
    select p_pass_id, u.id, u.keap_id
    from rows from (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_keys)) as u(id, keap_id);
    v_missing := pg_catalog.cardinality(v_ids);

    -- the safety stop: a wrong key (another account), a listing that silently returned fewer records
    -- or an outage must never wipe a table; the recorded ids wait for a person (apply_E_deletions)
    v_stopped := v_missing > p_max_count or v_missing > p_max_share * v_live;
    if not v_stopped then
        -- all, or the first p_apply_limit (the caller applies the rest, each in its own transaction)
        v_deleted := keap_pipeline.%8$I(p_pass_id, p_started_at, p_protect_since, p_apply_limit);
    end if;
    return query
    select v_live, v_missing, v_deleted, v_restored, v_kept, v_here, v_stopped;
end
$body$;
$f$,
        'reconcile_' || p_entity || '_from_stage',  -- 1
        v_target,                                    -- 2
        v_table,                                     -- 3
        f_listed,                                    -- 4
        f_recent,                                    -- 5
        p_entity,                                    -- 6
        f_status,                                    -- 7
        'apply_' || p_entity || '_deletions',        -- 8
        'missing_' || p_entity || '_from_stage'      -- 9
    );

    execute pg_catalog.format(
        'comment on function keap_pipeline.%I(timestamptz, timestamptz) is %L', 'missing_' || p_entity || '_from_stage',
        'The live ' || p_entity || ' rows the reconcile pass in progress did not find in Keap''s listing, with its counts. Generated by define_reconcile_entity.'
    );
    execute pg_catalog.format(
        'comment on function keap_pipeline.%I(uuid, timestamptz, timestamptz, bigint) is %L', 'apply_' || p_entity || '_deletions',
        'Soft-deletes the ' || p_entity || ' rows a reconcile pass recorded (keap_pipeline.reconcile_pending_deletions), as Keap''s deletions.'
        ' Generated by define_reconcile_entity.'
    );
    execute pg_catalog.format(
        'comment on function keap_pipeline.%I(uuid, timestamptz, timestamptz, numeric, bigint, bigint) is %L',
        'reconcile_' || p_entity || '_from_stage',
        'One reconcile pass of ' || p_entity || ': restores re-listed rows, soft-deletes rows Keap no longer lists unless the'
        ' safety limits stop it. Run as keap_pipeline_ingest. Generated by define_reconcile_entity (sql/functions/70-entity-template.sql).'
    );
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I(timestamptz, timestamptz) from public', 'missing_' || p_entity || '_from_stage');
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I(uuid, timestamptz, timestamptz, bigint) from public', 'apply_' || p_entity || '_deletions');
    execute pg_catalog.format(
        'revoke execute on function keap_pipeline.%I(uuid, timestamptz, timestamptz, numeric, bigint, bigint) from public',
        'reconcile_' || p_entity || '_from_stage'
    );
    execute pg_catalog.format('grant execute on function keap_pipeline.%I(timestamptz, timestamptz) to keap_pipeline_ingest', 'missing_' || p_entity || '_from_stage');
    execute pg_catalog.format('grant execute on function keap_pipeline.%I(uuid, timestamptz, timestamptz, bigint) to keap_pipeline_ingest', 'apply_' || p_entity || '_deletions');
    execute pg_catalog.format(
        'grant execute on function keap_pipeline.%I(uuid, timestamptz, timestamptz, numeric, bigint, bigint) to keap_pipeline_ingest',
        'reconcile_' || p_entity || '_from_stage'
    );
end
$define$;

comment on function keap_pipeline.define_reconcile_entity(text, regclass, regclass) is
    'Generates reconcile_E_from_stage, apply_E_deletions and missing_E_from_stage of one entity from the shared template.';

revoke execute on function keap_pipeline.define_reconcile_entity(text, regclass, regclass) from public;
