-- requires: 30
-- The outbound sender's SQL (issue 14): claiming queue items, putting them in flight, writing back
-- what Keap answered, and finishing items that failed, wait or are superseded. keap_pipeline/db/outbound.py
-- calls these; keap_pipeline/outbound/ decides what to send. Every function runs as the ingestion's
-- role (keap_pipeline_ingest) only: the pusher is the Keap side of the pipeline, so its write-back is
-- never queued again (no echo) and may set the keap_id of the record it created (sql/24); the write-back
-- is audited as 'push' (sql/30, trigger_sync_on_update).
--
-- Claims. A pusher holds an advisory lock on a random key of its own (class 'kpsh') on a connection
-- of its own for as long as it lives; an item's claim_key is that key. An item claimed by a key whose
-- lock is not held belongs to a pusher that died: pending ones are claimed again, in-flight ones
-- ('processing') are recovered (their request may or may not have reached Keap). Per record there is
-- one claim at a time: a claiming transaction takes a per-record advisory lock (class 'kprc') before it
-- looks for other live claims of the record, so two pushers never both claim one record.
-- Order: in-flight items of dead pushers first, then pending items by priority, then schedule.

create or replace function keap_pipeline.outbound_live_claims()
returns integer[]
language sql
stable
set search_path = ''
as $$
    -- the keys whose pusher lock is held in this database (the second int4 of the two-key form)
    select coalesce(pg_catalog.array_agg(
        (l.objid::bigint - case when l.objid::bigint >= 2147483648 then 4294967296 else 0 end)::integer
    ), '{}'::integer[])
    from pg_catalog.pg_locks as l
    where l.locktype = 'advisory'
      and l.granted
      and l.objsubid = 2
      and l.classid::bigint = 1802531688  -- 0x6B707368, 'kpsh'
      and l.database = (select d.oid from pg_catalog.pg_database as d where d.datname = pg_catalog.current_database())
$$;

comment on function keap_pipeline.outbound_live_claims() is
    'The claim keys of the outbound pushers alive now (their advisory lock is held).';

create or replace function keap_pipeline.claim_outbound(
    p_key integer,
    p_entity_types text[],
    p_limit integer
)
returns table (
    id uuid,
    entity_type text,
    entity_id uuid,
    operation text,
    status text,
    attempts integer,
    max_attempts integer,
    recovered boolean
)
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_live integer[];
    v_tids tid[];
begin
    if not keap_pipeline.is_ingestion() then
        raise exception 'claim_outbound runs as the Keap ingestion only (role keap_pipeline_ingest), not as %', current_user
            using errcode = '42501', hint = 'keap_pipeline.db.outbound opens its transactions with SET LOCAL ROLE keap_pipeline_ingest.';
    end if;
    v_live := keap_pipeline.outbound_live_claims();
    if not p_key = any (v_live) then
        raise exception 'claim_outbound: the pusher key % is not locked by this session', p_key
            using errcode = '55000', hint = 'Hold the pusher lock (keap_pipeline.db.outbound.pusher_lock) while claiming.';
    end if;

    -- 1. candidates, row-locked (SKIP LOCKED: another pusher's candidates are left to it), each with
    --    its record's claim lock; a record another transaction is claiming right now is skipped (the
    --    batch is that much smaller; the pusher claims again). In-flight items of dead pushers first
    --    (their outcome is in doubt), then pending ones.
    --    Exactly as many rows as the claim may take are row-locked: the LIMIT sits above the row
    --    locks, so a plan that scans and sorts still locks only the rows it returns, and a second
    --    pusher finds every other item free (tests/outbound/test_push_concurrency.py). The record lock
    --    is tried on those rows only, after the LIMIT (a materialized CTE): in the query's WHERE, a plan
    --    that scans and sorts evaluated it for every candidate, so one claim held the lock of every
    --    record and a second pusher's claim found none.
    with candidates as materialized (
        select q.ctid, q.entity_type, q.entity_id
        from public.sync_queue as q
        where q.status = 'processing'
          and q.entity_type = any (p_entity_types)
          and not (q.claim_key = any (v_live))
        order by q.started_at
        limit p_limit
        for update of q skip locked
    )
    select coalesce(pg_catalog.array_agg(c.ctid), '{}') into v_tids
    from candidates as c
    where pg_catalog.pg_try_advisory_xact_lock(
        1802531683,  -- 0x6B707263, 'kprc'
        pg_catalog.hashtext(c.entity_type || ':' || c.entity_id::text)
    );
    if pg_catalog.cardinality(v_tids) < p_limit then
        with candidates as materialized (
            select q.ctid, q.entity_type, q.entity_id
            from public.sync_queue as q
            where q.status = 'pending'
              and q.scheduled_at <= pg_catalog.now()
              and q.entity_type = any (p_entity_types)
              and (q.claim_key is null or not (q.claim_key = any (v_live)))
            order by q.priority, q.scheduled_at
            limit p_limit - pg_catalog.cardinality(v_tids)
            for update of q skip locked
        )
        select v_tids || coalesce(pg_catalog.array_agg(c.ctid), '{}') into v_tids
        from candidates as c
        where pg_catalog.pg_try_advisory_xact_lock(
            1802531683,
            pg_catalog.hashtext(c.entity_type || ':' || c.entity_id::text)
        );
    end if;

    if pg_catalog.cardinality(v_tids) = 0 then
        return;
    end if;

    -- 2. a fresh snapshot (a new statement) that sees every claim committed before the record locks
    --    above were granted: keep one item per record, and only records no live pusher holds.
    --    The candidates are read and updated by their row versions' ctid (a TID scan, not two primary
    --    key descents per item): the row lock taken in 1 keeps each locked version where it is until
    --    this transaction ends (nobody else may update or delete it, and this transaction has not).
    v_live := keap_pipeline.outbound_live_claims();
    return query
    with one_per_record as (
        select distinct on (q.entity_type, q.entity_id)
               q.ctid as tid, q.id, q.status = 'processing' as recovered, q.priority, q.scheduled_at
        from public.sync_queue as q
        where q.ctid = any (v_tids)
          and not exists (
              select 1
              from public.sync_queue as o
              where o.entity_type = q.entity_type
                and o.entity_id = q.entity_id
                and o.id <> q.id
                and o.status in ('pending', 'processing')
                and o.claim_key = any (v_live)
          )
        order by q.entity_type, q.entity_id, (q.status = 'processing') desc, q.priority, q.scheduled_at
    ),
    mine as (
        select r.tid
        from one_per_record as r
        -- items due at the same moment in the order they were queued (ids are time-ordered)
        order by r.recovered desc, r.priority, r.scheduled_at, r.id
        limit p_limit
    ),
    claimed as (
        update public.sync_queue as q
        set claim_key = p_key,
            started_at = pg_catalog.now()
        from mine as m
        where q.ctid = m.tid
        returning q.id, q.entity_type::text, q.entity_id, q.operation::text, q.status::text, q.attempts,
                  q.max_attempts, q.status = 'processing' as recovered, q.priority, q.scheduled_at
    )
    select c.id, c.entity_type, c.entity_id, c.operation, c.status, c.attempts, c.max_attempts, c.recovered
    from claimed as c
    order by c.recovered desc, c.priority, c.scheduled_at, c.id;
end
$$;

comment on function keap_pipeline.claim_outbound(integer, text[], integer) is
    'Claims up to p_limit outbound queue items for the pusher holding key p_key: one per record, none held by a live pusher.';

-- In flight: the request is about to leave. Marked (and committed) before it is sent, so a crash
-- afterwards leaves an item whose sent_at says a request may have reached Keap. The payload becomes
-- the record as sent. Returns the items marked (those still claimed by p_key).
create or replace function keap_pipeline.mark_outbound_in_flight(p_key integer, p_items jsonb)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_rows integer;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception 'mark_outbound_in_flight runs as the Keap ingestion only' using errcode = '42501';
    end if;
    update public.sync_queue as q
    set status = 'processing',
        sent_at = pg_catalog.clock_timestamp(),
        -- a recovered item may be at its last attempt already: finishing what is in doubt is not a new try
        attempts = least(q.attempts + 1, q.max_attempts),
        payload = i.payload,
        error_message = null
    from pg_catalog.jsonb_to_recordset(p_items) as i(item uuid, payload jsonb)
    where q.id = i.item
      and q.claim_key = p_key
      and q.status in ('pending', 'processing');
    get diagnostics v_rows = row_count;
    return v_rows;
end
$$;

comment on function keap_pipeline.mark_outbound_in_flight(integer, jsonb) is
    'Puts claimed outbound items in flight (status processing, sent_at now) before their requests are sent.';

-- Items that end without a write-back: retried later, failed, held, superseded, released unsent,
-- unsupported, or completed with nothing to send. p_items: [{item, outcome, reason, delay_seconds,
-- unsent}] where outcome is retry | failed | held | release | done | unsupported and `unsent` says
-- Keap surely did not act on the item's last request (its sent_at is cleared). The record's own
-- sync_status / sync_error and its sync_status row say the same. Returns each item's new status
-- (a retry whose attempts are used up is 'error'; one superseded by a newer pending item 'cancelled').
-- (dropped first: a repeatable file may change a function's result type, which CREATE OR REPLACE refuses)
drop function if exists keap_pipeline.finish_outbound(integer, jsonb);
create or replace function keap_pipeline.finish_outbound(p_key integer, p_items jsonb)
returns table (item uuid, final_status text)
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_done jsonb;
    v_table text;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception 'finish_outbound runs as the Keap ingestion only' using errcode = '42501';
    end if;
    perform pg_catalog.set_config('keap_pipeline.outbound_write_back', 'on', true);

    with i as (
        select *
        from pg_catalog.jsonb_to_recordset(p_items)
            as i(item uuid, outcome text, reason text, delay_seconds double precision, unsent boolean)
    ),
    own as (
        -- an attempt counts when the item went in flight (mark_outbound_in_flight), or, for one that
        -- failed before it could (Keap's records could not be read), here
        select q.id, q.entity_type, q.entity_id,
               case when i.outcome = 'retry' and q.status = 'pending' then least(q.attempts + 1, q.max_attempts)
                    else q.attempts end as attempts,
               q.max_attempts, i.outcome, i.reason,
               coalesce(i.delay_seconds, 0) as delay_seconds, coalesce(i.unsent, false) as unsent,
               exists (
                   select 1
                   from public.sync_queue as p
                   where p.entity_type = q.entity_type
                     and p.entity_id = q.entity_id
                     and p.status = 'pending'
                     and p.id <> q.id
               ) as newer_pending
        from public.sync_queue as q
        join i
            on i.item = q.id
        where q.claim_key = p_key
    ),
    decided as (
        select o.*,
               case
                   -- one pending item per record: a newer one carries the change (and the retry)
                   when o.outcome in ('retry', 'release') and o.newer_pending then 'cancelled'
                   when o.outcome = 'retry' and o.attempts >= o.max_attempts then 'error'
                   when o.outcome in ('retry', 'release') then 'pending'
                   when o.outcome = 'failed' then 'error'
                   when o.outcome = 'held' then 'held'
                   when o.outcome = 'done' then 'completed'
                   when o.outcome = 'unsupported' then 'unsupported'
               end as final_status
        from own as o
    ),
    changed as (
        update public.sync_queue as q
        set status = d.final_status,
            claim_key = null,
            attempts = case when d.outcome = 'release' and q.status = 'processing' and d.unsent
                            then greatest(q.attempts - 1, 0) else d.attempts end,
            scheduled_at = case when d.final_status = 'pending' and d.outcome = 'retry'
                                then pg_catalog.now() + pg_catalog.make_interval(secs => d.delay_seconds)
                                else q.scheduled_at end,
            sent_at = case when d.unsent then null else q.sent_at end,
            completed_at = case when d.final_status in ('completed', 'cancelled', 'error') then pg_catalog.now() end,
            error_message = case
                when d.final_status = 'cancelled' then 'superseded: a newer pending item of the record carries the change'
                    || coalesce(' (last attempt: ' || d.reason || ')', '')
                when d.outcome = 'retry' and d.final_status = 'error' then 'gave up after '
                    || d.attempts || ' attempt(s): ' || coalesce(d.reason, 'no reason given')
                when d.outcome = 'release' then q.error_message
                else d.reason
            end
        from decided as d
        where q.id = d.id
        returning q.id, q.entity_type, q.entity_id, d.outcome, d.final_status, q.error_message, q.attempts,
                  q.scheduled_at
    )
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'item', c.id, 'entity_type', c.entity_type, 'entity_id', c.entity_id, 'outcome', c.outcome,
               'final_status', c.final_status, 'reason', c.error_message, 'attempts', c.attempts,
               'scheduled_at', c.scheduled_at))
    into v_done
    from changed as c;

    if v_done is null then
        return;
    end if;

    -- a held item supersedes the record's item held before (one held item per record, as the
    -- ingestion keeps it); an unsupported one the record's older unsupported items
    update public.sync_queue as q
    set status = 'cancelled',
        completed_at = pg_catalog.now(),
        error_message = case f.final_status
            when 'held' then 'superseded: a newer local change of the record is held instead'
            else 'superseded: a newer item of the record is kept as unsupported'
        end
    from pg_catalog.jsonb_to_recordset(v_done) as f(item uuid, entity_type text, entity_id uuid, final_status text)
    where f.final_status in ('held', 'unsupported')
      and q.entity_type = f.entity_type
      and q.entity_id = f.entity_id
      and q.status = f.final_status
      and q.id <> f.item;

    -- the records' bookkeeping: their sync_status rows, and their own sync_status / sync_error
    insert into public.sync_status as s (
        entity_type, entity_id, supabase_id, sync_direction, last_sync_at, last_sync_status,
        last_sync_error, retry_count, next_retry_at
    )
    select f.entity_type, f.entity_id, f.entity_id, 'supabase_to_keap', pg_catalog.now(),
           case f.final_status when 'error' then 'error' when 'held' then 'conflict'
                               when 'completed' then 'completed' else 'pending' end,
           case when f.final_status in ('error', 'pending', 'unsupported') then f.reason end,
           f.attempts,
           case when f.final_status = 'pending' then f.scheduled_at end
    from pg_catalog.jsonb_to_recordset(v_done)
        as f(entity_type text, entity_id uuid, outcome text, final_status text, reason text, attempts integer,
             scheduled_at timestamptz)
    where f.outcome <> 'release'
      and f.final_status <> 'cancelled'
    on conflict (entity_type, entity_id)
    do update
    set sync_direction = case when s.sync_direction = 'supabase_to_keap' then s.sync_direction else 'bidirectional' end,
        last_sync_at = excluded.last_sync_at,
        last_sync_status = excluded.last_sync_status,
        last_sync_error = excluded.last_sync_error,
        retry_count = excluded.retry_count,
        next_retry_at = excluded.next_retry_at,
        updated_at = pg_catalog.now();

    for v_table in
        select distinct f.entity_type
        from pg_catalog.jsonb_to_recordset(v_done) as f(entity_type text, final_status text)
        where f.final_status in ('error', 'completed')
    loop
        -- entity_type is one of the five sync tables (sync_queue_entity_type_known)
        execute pg_catalog.format(
            $sql$
            update public.%I as t
            set sync_status = f.final_status,
                sync_error = case when f.final_status = 'error' then f.reason end
            from pg_catalog.jsonb_to_recordset($1) as f(entity_type text, entity_id uuid, final_status text, reason text)
            where f.entity_type = %L
              and f.final_status in ('error', 'completed')
              and t.id = f.entity_id
              and (t.sync_status, t.sync_error) is distinct from
                  (f.final_status, case when f.final_status = 'error' then f.reason end)
            $sql$,
            v_table, v_table
        )
        using v_done;
    end loop;
    return query
    select f.item, f.final_status
    from pg_catalog.jsonb_to_recordset(v_done) as f(item uuid, final_status text);
end
$$;

comment on function keap_pipeline.finish_outbound(integer, jsonb) is
    'Ends claimed outbound items without a write-back: retry later, failed, held, released, done, unsupported.';

-- Items of entities the pusher has no Keap write path for yet: kept as 'unsupported' with the reason,
-- never sent and never dropped (the newest per record; older ones are superseded by it). Set-based,
-- no claim needed: nothing is sent. Returns how many items were marked.
create or replace function keap_pipeline.mark_unsupported_outbound(p_supported text[], p_reason text)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_rows integer;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception 'mark_unsupported_outbound runs as the Keap ingestion only' using errcode = '42501';
    end if;
    with marked as (
        update public.sync_queue as q
        set status = 'unsupported',
            error_message = pg_catalog.replace(p_reason, '{entity}', q.entity_type),
            claim_key = null
        where q.status = 'pending'
          and q.operation in ('create', 'update', 'delete')
          and q.entity_id is not null
          and not (q.entity_type = any (p_supported))
        returning q.id, q.entity_type, q.entity_id
    ),
    superseded as (
        update public.sync_queue as q
        set status = 'cancelled',
            completed_at = pg_catalog.now(),
            error_message = 'superseded: a newer item of the record is kept as unsupported'
        from marked as m
        where q.entity_type = m.entity_type
          and q.entity_id = m.entity_id
          and q.status = 'unsupported'
          and q.id <> m.id
    )
    select pg_catalog.count(*) into v_rows from marked;
    return v_rows;
end
$$;

comment on function keap_pipeline.mark_unsupported_outbound(text[], text) is
    'Keeps pending items of entities without a Keap write path as unsupported, with the reason.';

-- `keap-pipeline push --retry-failed`: failed items ('error', of app changes) are pending again with
-- a fresh set of attempts; an item whose record has a newer pending item is superseded by it.
create or replace function keap_pipeline.retry_failed_outbound(p_entity_types text[])
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_rows integer;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception 'retry_failed_outbound runs as the Keap ingestion only' using errcode = '42501';
    end if;
    with failed as (
        select q.id, q.entity_type, q.entity_id,
               pg_catalog.row_number() over (
                   partition by q.entity_type, q.entity_id order by q.created_at desc, q.id desc
               ) as newest,
               exists (
                   select 1
                   from public.sync_queue as p
                   where p.entity_type = q.entity_type
                     and p.entity_id = q.entity_id
                     and p.status = 'pending'
               ) as has_pending
        from public.sync_queue as q
        where q.status = 'error'
          and q.entity_id is not null
          and q.operation in ('create', 'update', 'delete')
          and q.entity_type = any (p_entity_types)
    ),
    changed as (
        update public.sync_queue as q
        set status = case when f.newest = 1 and not f.has_pending then 'pending' else 'cancelled' end,
            attempts = 0,
            scheduled_at = pg_catalog.now(),
            completed_at = case when f.newest = 1 and not f.has_pending then null else pg_catalog.now() end,
            error_message = case
                when f.newest = 1 and not f.has_pending then null
                else 'superseded: retried through a newer item of the record'
            end,
            claim_key = null
        from failed as f
        where q.id = f.id
        returning q.status
    )
    select pg_catalog.count(*) filter (where c.status = 'pending') into v_rows from changed as c;
    return v_rows;
end
$$;

comment on function keap_pipeline.retry_failed_outbound(text[]) is
    'Makes failed outbound items pending again with fresh attempts (push --retry-failed).';

-- The write-back of one entity, generated per entity like the loading functions (70): the records Keap
-- answered are staged by the ingestion's own normalizer (so their content hash is exactly what the next
-- ingestion computes) and written in the transaction that completes the items. For an entity E:
--   keap_pipeline.write_back_E(p_key, p_batch, p_items) -> integer (rows written back)
-- p_items: [{item, entity_id, ordinal, version, complete}]: ordinal is the staged record Keap answered
-- for the row (NULL: the record is deleted in Keap, nothing to link); version the row's version the
-- request was built from; complete: the item is done (otherwise the record is only linked, e.g. a
-- contact found after a crash, and its item goes on). Per row:
--   keap_id      set when the row had none (a create); a row linked to another Keap record is refused
--   content      Keap's normalized values when the item is complete and the row was not edited since
--                the request was built (then the row is exactly Keap's record); else kept (the newer
--                local edit has its own pending item)
--   keap_updated_at, keap_hash   Keap's, always: the next ingestion sees the record unchanged, and the
--                next push compares with what Keap holds now
--   sync_status  'completed' when complete and not edited since, else 'pending'
-- The queue items are completed (claim and sent_at cleared, and the record's older unconfirmed sends
-- with them), the sync_status rows updated. Audited as 'push' by the trigger; nothing is queued.
create or replace function keap_pipeline.define_outbound_entity(p_entity text, p_target regclass, p_stage regclass)
returns void
language plpgsql
volatile
set search_path = ''
as $define$
declare
    v_table text;
    v_data text[];
    f_set text;
begin
    v_table := (select c.relname from pg_catalog.pg_class as c where c.oid = p_target);
    select pg_catalog.array_agg(a.attname::text order by a.attnum)
    into v_data
    from pg_catalog.pg_attribute as a
    where a.attrelid = p_stage
      and a.attnum > 0
      and not a.attisdropped
      and a.attname not in ('batch_id', 'ordinal', 'keap_id', 'keap_updated_at', 'content_hash');
    if v_data is null then
        raise exception 'define_outbound_entity(%): staging table % has no data columns', p_entity, p_stage;
    end if;
    f_set := (
        select pg_catalog.string_agg(
            pg_catalog.format(
                E',\n            %1$I = case when i.complete and t.version = i.version then s.%1$I else t.%1$I end', x
            ),
            ''
        )
        from pg_catalog.unnest(v_data) as x
    );

    execute pg_catalog.format($f$
create or replace function keap_pipeline.%1$I(p_key integer, p_batch uuid, p_items jsonb)
returns integer
language plpgsql
volatile
set search_path = ''
set jit = off
as $body$
declare
    v_rows integer;
    v_refused integer;
begin
    if not keap_pipeline.is_ingestion() then
        raise exception '%1$s runs as the Keap ingestion only (role keap_pipeline_ingest), not as %%', current_user
            using errcode = '42501';
    end if;
    -- the trigger audits what follows as the pusher's write-back ('push'), transaction-local
    perform pg_catalog.set_config('keap_pipeline.outbound_write_back', 'on', true);

    -- a row already linked to another Keap record is never relinked (nor overwritten with it)
    select pg_catalog.count(*)
    into v_refused
    from pg_catalog.jsonb_to_recordset(p_items) as i(item uuid, entity_id uuid, ordinal integer)
    join %2$s as s
        on s.batch_id = p_batch
       and s.ordinal = i.ordinal
    join %3$s as t
        on t.id = i.entity_id
    where t.keap_id is not null
      and t.keap_id <> s.keap_id;
    if v_refused > 0 then
        raise exception '%1$s: %% row(s) are linked to another Keap record than the one Keap answered for them', v_refused
            using errcode = '23514', hint = 'Nothing was written back; the items stay in flight and are recovered by the next push.';
    end if;

    with items as (
        select *
        from pg_catalog.jsonb_to_recordset(p_items)
            as i(item uuid, entity_id uuid, ordinal integer, version integer, complete boolean)
    ),
    src as (
        delete from %2$s as s
        where s.batch_id = p_batch
        returning s.*
    ),
    linked as (
        update %3$s as t
        set keap_id = s.keap_id%4$s,
            keap_updated_at = s.keap_updated_at,
            keap_hash = s.content_hash,
            last_synced_at = pg_catalog.now(),
            sync_status = case when i.complete and t.version = i.version then 'completed' else 'pending' end,
            sync_error = null
        from items as i
        join src as s
            on s.ordinal = i.ordinal
        where t.id = i.entity_id
        returning t.id, t.keap_id, t.sync_status
    ),
    gone as (
        -- deleted in Keap: nothing to link; the row (soft-deleted here) is in sync
        update %3$s as t
        set last_synced_at = pg_catalog.now(),
            sync_status = 'completed',
            sync_error = null
        from items as i
        where i.ordinal is null
          and i.complete
          and t.id = i.entity_id
        returning t.id, t.keap_id, t.sync_status
    ),
    written as (
        select * from linked
        union all
        select * from gone
    ),
    status_rows as (
        insert into public.sync_status as st (
            entity_type, entity_id, keap_id, supabase_id, sync_direction, last_sync_at, last_sync_status,
            last_sync_error, retry_count, next_retry_at
        )
        select %5$L, w.id, w.keap_id, w.id, 'supabase_to_keap', pg_catalog.now(), w.sync_status, null, 0, null
        from written as w
        on conflict (entity_type, entity_id)
        do update
        set keap_id = excluded.keap_id,
            sync_direction = case when st.sync_direction = 'supabase_to_keap' then st.sync_direction else 'bidirectional' end,
            last_sync_at = excluded.last_sync_at,
            last_sync_status = excluded.last_sync_status,
            last_sync_error = null,
            retry_count = 0,
            next_retry_at = null,
            updated_at = pg_catalog.now()
    ),
    completed as (
        update public.sync_queue as q
        set status = 'completed',
            completed_at = pg_catalog.now(),
            claim_key = null,
            sent_at = null,
            error_message = null
        from items as i
        where q.id = i.item
          and i.complete
          and q.claim_key = p_key
    ),
    superseded_failures as (
        -- the record was just sent as it is now: what its older items failed to send is settled
        update public.sync_queue as q
        set status = 'cancelled',
            completed_at = pg_catalog.now(),
            error_message = pg_catalog.left('superseded: a later push sent the record (was: '
                || coalesce(q.error_message, '?') || ')', 1000)
        from items as i
        where i.complete
          and q.entity_type = %5$L
          and q.entity_id = i.entity_id
          and q.status = 'error'
          and q.operation in ('create', 'update', 'delete')
          and q.id <> i.item
    ),
    confirmed as (
        -- the record is linked now: older sends of it that were never confirmed are settled too
        update public.sync_queue as q
        set sent_at = null
        from linked as l
        where q.entity_type = %5$L
          and q.entity_id = l.id
          and q.sent_at is not null
          and q.status not in ('processing', 'error')
          and not exists (select 1 from items as i where i.item = q.id)
    )
    select pg_catalog.count(*) into v_rows from written;
    return v_rows;
end
$body$;
$f$,
        'write_back_' || p_entity,   -- 1
        p_stage,                     -- 2
        p_target,                    -- 3
        f_set,                       -- 4
        v_table                      -- 5
    );
    execute pg_catalog.format(
        'comment on function keap_pipeline.%I(integer, uuid, jsonb) is %L', 'write_back_' || p_entity,
        'Writes back what Keap answered to a push of ' || p_entity || ' and completes the items. Generated by define_outbound_entity.'
    );
    execute pg_catalog.format('revoke execute on function keap_pipeline.%I(integer, uuid, jsonb) from public', 'write_back_' || p_entity);
    execute pg_catalog.format('grant execute on function keap_pipeline.%I(integer, uuid, jsonb) to keap_pipeline_ingest', 'write_back_' || p_entity);
end
$define$;

comment on function keap_pipeline.define_outbound_entity(text, regclass, regclass) is
    'Generates keap_pipeline.write_back_E, the push write-back of one entity (sql/functions/81-outbound.sql).';

-- the entities the pusher sends (keap_pipeline/outbound/specs.py lists the same)
select keap_pipeline.define_outbound_entity('contacts', 'public.sync_contacts', 'keap_pipeline.stage_contacts');
select keap_pipeline.define_outbound_entity('tags', 'public.sync_tags', 'keap_pipeline.stage_tags');

revoke execute on function keap_pipeline.outbound_live_claims() from public;
revoke execute on function keap_pipeline.claim_outbound(integer, text[], integer) from public;
revoke execute on function keap_pipeline.mark_outbound_in_flight(integer, jsonb) from public;
revoke execute on function keap_pipeline.finish_outbound(integer, jsonb) from public;
revoke execute on function keap_pipeline.mark_unsupported_outbound(text[], text) from public;
revoke execute on function keap_pipeline.retry_failed_outbound(text[]) from public;
revoke execute on function keap_pipeline.define_outbound_entity(text, regclass, regclass) from public;
grant execute on function keap_pipeline.outbound_live_claims() to keap_pipeline_ingest;
grant execute on function keap_pipeline.claim_outbound(integer, text[], integer) to keap_pipeline_ingest;
grant execute on function keap_pipeline.mark_outbound_in_flight(integer, jsonb) to keap_pipeline_ingest;
grant execute on function keap_pipeline.finish_outbound(integer, jsonb) to keap_pipeline_ingest;
grant execute on function keap_pipeline.mark_unsupported_outbound(text[], text) to keap_pipeline_ingest;
grant execute on function keap_pipeline.retry_failed_outbound(text[]) to keap_pipeline_ingest;
