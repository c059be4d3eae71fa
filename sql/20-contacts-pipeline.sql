-- 20: the contacts data path of the pipeline: staging, the set-based upsert with conflict resolution,
-- cursors and dead letters. batch_upsert_contacts(jsonb[]) (the request's name and signature) is a thin
-- front of the same implementation: it stages its array and calls keap_pipeline.upsert_contacts_from_stage.

-- Keap's own creation time, kept beside keap_updated_at (adding a nullable column without a default
-- is a catalog-only change: no table rewrite on a live table).
alter table public.sync_contacts
    add column keap_created_at timestamptz;

comment on column public.sync_contacts.keap_created_at is
    'Keap''s create_time of the contact.';

-- The fingerprint of the Keap content last seen for the row (md5 of the normalized fields, computed by
-- keap_pipeline.normalize.content_hash). A re-sync recognises unchanged contacts by keap_id and this
-- hash alone, without shipping or comparing their content.
alter table public.sync_contacts
    add column keap_hash uuid;

comment on column public.sync_contacts.keap_hash is
    'md5 of the normalized Keap content last seen for this contact (NULL: unknown, compare content).';

-- Two queue states the request did not have:
-- 'cancelled': keap_wins conflict resolution supersedes the record's unsent outbound item; it must not
--   later push the losing local value over the winning Keap value. Kept, not deleted.
-- 'held': a record parked for manual resolution keeps its unsent outbound item out of the outbound
--   sync's way (it would otherwise push the local side before anyone decided); resolving the conflict
--   releases it (keap_pipeline.release_held_outbound).
alter table public.sync_queue
    drop constraint sync_queue_status_known;

alter table public.sync_queue
    add constraint sync_queue_status_known
        check (status in ('pending', 'processing', 'completed', 'error', 'cancelled', 'held'));

-- Conflict detection asks, per changed contact, whether a local change is still waiting to reach Keap.
create index sync_queue_unsent_entity_idx
    on public.sync_queue (entity_type, entity_id)
    where status in ('pending', 'processing', 'error', 'held');

-- Staging: COPY lands here, one batch_id per batch, and the upsert function consumes (deletes) its
-- batch. UNLOGGED: staged rows are transient and rebuilt from Keap after a crash, so they need no WAL.
-- A permanent table rather than a temp table: no DDL at run time, and it works behind transaction-mode
-- poolers. Column types are those of sync_contacts; keap_pipeline.entities (Python) lists the same.
create unlogged table keap_pipeline.stage_contacts (
    batch_id uuid not null,
    ordinal integer not null,
    keap_id varchar(255) not null,
    email varchar(255),
    first_name varchar(255),
    last_name varchar(255),
    phone varchar(50),
    company varchar(255),
    tags jsonb not null,
    custom_fields jsonb not null,
    keap_created_at timestamptz,
    keap_updated_at timestamptz not null,
    content_hash uuid
);

create index stage_contacts_batch_id_idx
    on keap_pipeline.stage_contacts (batch_id);

comment on table keap_pipeline.stage_contacts is
    'Transient COPY target of the contacts loader; rows live only inside their loading transaction.';

-- Phase one of a batch: only the keys and fingerprints are copied here, and
-- keap_pipeline.diff_contacts_from_stage says which records need their full rows staged at all.
create unlogged table keap_pipeline.stage_contact_keys (
    batch_id uuid not null,
    ordinal integer not null,
    keap_id varchar(255) not null,
    keap_updated_at timestamptz not null,
    content_hash uuid
);

create index stage_contact_keys_batch_id_idx
    on keap_pipeline.stage_contact_keys (batch_id);

comment on table keap_pipeline.stage_contact_keys is
    'Transient COPY target: keap_id, update time and content hash of a batch, for the diff.';

-- Cursors: the high-water mark of Keap's update time per entity and scope ('incremental' for the
-- schedule, 'window:<start>/<end>' for a backfill range), advanced only in the transaction that
-- commits the batch it covers.
create table keap_pipeline.sync_cursors (
    entity text not null,
    scope text not null,
    cursor_value timestamptz not null,
    records_total bigint not null default 0,
    run_id text,
    updated_at timestamptz not null default now(),
    constraint sync_cursors_pkey
        primary key (entity, scope),
    constraint sync_cursors_records_total_not_negative
        check (records_total >= 0)
);

comment on table keap_pipeline.sync_cursors is
    'Per entity and scope: everything Keap updated before cursor_value is loaded (inclusive bound re-read).';

-- Dead letters: records that could not be loaded as they are, kept whole with the reason.
-- record_json is text, not jsonb: jsonb cannot hold a \u0000 escape, and such a record must be kept too.
create table keap_pipeline.dead_letters (
    id bigint generated always as identity,
    entity text not null,
    keap_id text,
    record_json text not null,
    reason text not null,
    field text,
    run_id text,
    status text not null default 'open',
    attempts integer not null default 1,
    first_seen_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    replayed_at timestamptz,
    constraint dead_letters_pkey
        primary key (id),
    constraint dead_letters_status_known
        check (status in ('open', 'replayed', 'discarded')),
    constraint dead_letters_attempts_positive
        check (attempts >= 1)
);

-- One open dead letter per Keap record: seeing the same bad record again updates it.
create unique index dead_letters_open_record_key
    on keap_pipeline.dead_letters (entity, keap_id)
    where status = 'open' and keap_id is not null;

create index dead_letters_status_idx
    on keap_pipeline.dead_letters (entity, status, last_seen_at);

comment on table keap_pipeline.dead_letters is
    'Keap records that could not be loaded, with the raw record (JSON text), the reason and the run.';

-- Which records of a staged key batch must be loaded: 'load' (new, or content changed, or unknown),
-- 'stale' (older than what is stored: an old window replayed), 'duplicate' (an older copy of a record
-- later in the same batch). Unchanged records (same fingerprint as stored) are not returned at all:
-- on a re-sync they are nearly all of the batch, and they need no answer. Consumes the batch.
create function keap_pipeline.diff_contacts_from_stage(p_batch_id uuid)
returns table (
    ordinal integer,
    verdict text
)
language sql
volatile
set search_path = ''
set jit = off
as $$
    with keys as (
        delete from keap_pipeline.stage_contact_keys as k
        where k.batch_id = p_batch_id
        returning k.ordinal, k.keap_id, k.keap_updated_at, k.content_hash
    ),
    ranked as (
        select
            k.*,
            pg_catalog.row_number() over (
                partition by k.keap_id
                order by k.keap_updated_at desc, k.ordinal desc
            ) as rn
        from keys as k
    ),
    judged as (
        select
            r.ordinal,
            case
                when r.rn > 1 then 'duplicate'
                when c.id is null then 'load'
                when c.keap_updated_at is not null and r.keap_updated_at < c.keap_updated_at then 'stale'
                when c.keap_hash = r.content_hash then 'unchanged'
                else 'load'
            end as verdict
        from ranked as r
        left join public.sync_contacts as c
            on c.keap_id = r.keap_id
    )
    select j.ordinal, j.verdict
    from judged as j
    where j.verdict <> 'unchanged'
$$;

comment on function keap_pipeline.diff_contacts_from_stage(uuid) is
    'Phase one of a contacts batch: which staged keys need their full rows loaded (unchanged ones are left out).';

revoke execute on function keap_pipeline.diff_contacts_from_stage(uuid) from public;

-- Three-way merge of one record's fields. Per field: equal on both sides -> that value; changed on one
-- side only (relative to the base, the values of the last completed sync) -> that side; changed on both
-- sides to different values -> p_rule ('keap_wins' | 'supabase_wins'), or NULL for 'manual' (park).
-- Without a base (audit retention dropped it) a differing field counts as changed on both sides.
create function keap_pipeline.merge_fields(
    p_incoming jsonb,
    p_local jsonb,
    p_base jsonb,
    p_rule text
)
returns jsonb
language sql
immutable
set search_path = ''
as $$
    select case
        when pg_catalog.bool_and(m.resolvable) then pg_catalog.jsonb_object_agg(m.key, m.value)
    end
    from (
        select
            i.key,
            case
                when i.value is not distinct from l.value then i.value
                when p_base is not null and l.value is not distinct from p_base -> i.key then i.value
                when p_base is not null and i.value is not distinct from p_base -> i.key then l.value
                when p_rule = 'keap_wins' then i.value
                when p_rule = 'supabase_wins' then l.value
            end as value,
            (
                i.value is not distinct from l.value
                or (p_base is not null and (l.value is not distinct from p_base -> i.key
                                            or i.value is not distinct from p_base -> i.key))
                or p_rule in ('keap_wins', 'supabase_wins')
            ) as resolvable
        from pg_catalog.jsonb_each(p_incoming) as i
        left join pg_catalog.jsonb_each(p_local) as l
            on l.key = i.key
    ) as m
$$;

comment on function keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text) is
    'Three-way field merge for conflict strategy merge; NULL means a field changed on both sides and p_rule is manual.';

-- One conflicting record, described for resolution: the two sides as jsonb, the fields that differ,
-- and for strategy merge the merged record (NULL = park). The base of the merge is Keap's version as
-- last seen: written as is (the newest keap-sourced audit row with sync_status completed), or, when
-- it was not written as is (merged with local values, kept local, parked), recorded in the newest
-- sync_conflicts row of the record; whichever is newer.
-- Called only for conflicting rows, so its per-row lookups cost nothing on the bulk path.
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

-- The set-based upsert of one staged batch. One statement: dedupe (latest Keap update wins, ties by
-- batch position), lock the existing rows, classify, resolve conflicts, write, and report.
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
create function keap_pipeline.upsert_contacts_from_stage(
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
    -- Loaders of contacts run one at a time (a backfill and a schedule may overlap); app writers are
    -- not blocked by this lock (the UPDATE below checks versions instead of locking rows up front).
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('keap_pipeline.upsert:sync_contacts'));
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
    written as (
        select i.id, i.keap_id, 'completed'::text as status
        from ins as i
        union all
        select u.id, u.keap_id,
               case u.kind when 'overwrite' then 'completed' when 'park' then 'conflict' else 'pending' end
        from upd as u
    ),
    status_rows as (
        insert into public.sync_status as s (
            id, entity_type, entity_id, keap_id, supabase_id, sync_direction,
            last_sync_at, last_sync_status, last_sync_error, retry_count, next_retry_at
        )
        select keap_pipeline.uuid_v7(), 'sync_contacts', w.id, w.keap_id, w.id, 'keap_to_supabase',
               pg_catalog.now(), w.status, null, 0, null
        from written as w
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
        (select pg_catalog.count(*) from resolved as r where r.action = 'unchanged')::integer as unchanged,
        (select pg_catalog.count(*) from resolved as r where r.action = 'stale')::integer as stale,
        (select pg_catalog.count(*) from resolved as r where r.action = 'local')::integer as local_pending,
        (select pg_catalog.count(*) from resolved as r where r.action = 'conflict')::integer as conflicts,
        (select pg_catalog.count(*) from resolved as r where r.action = 'conflict' and r.kind = 'overwrite' and p_strategy = 'keap_wins')::integer as conflicts_keap_wins,
        (select pg_catalog.count(*) from resolved as r where r.kind = 'keep_local')::integer as conflicts_supabase_wins,
        (select pg_catalog.count(*) from resolved as r where p_strategy = 'merge' and r.kind in ('overwrite', 'merge_pending') and r.action = 'conflict')::integer as conflicts_merged,
        (select pg_catalog.count(*) from resolved as r where r.kind = 'park')::integer as conflicts_parked,
        (select pg_catalog.count(*) from resolved as r where r.kind <> 'none')::integer as meant,
        (select pg_catalog.count(*) from upd)::integer as written
    into v;
    -- status_rows, new_conflicts, refreshed_conflicts, outbound and cancelled are not read above:
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
    'Set-based upsert of one staged contacts batch with conflict resolution; see sql/20-contacts-pipeline.sql.';

revoke execute on function keap_pipeline.upsert_contacts_from_stage(uuid, text, text) from public;
revoke execute on function keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text) from public;

-- Resolving a conflict (setting sync_conflicts.resolved_at, as a person or a tool does) releases the
-- record's held outbound item: back to 'pending' when the resolver left the row as it was (the local
-- side stands), or 'cancelled' when the resolver's own edit already queued a newer item (which then
-- carries the resolution). Statement-level and set-based, like the sync triggers.
create function keap_pipeline.release_held_outbound()
returns trigger
language plpgsql
volatile
security definer
set search_path = ''
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

create trigger sync_conflicts_release_held
    after update on public.sync_conflicts
    referencing old table as old_rows new table as new_rows
    for each statement
    execute function keap_pipeline.release_held_outbound();

-- The request's batch_upsert_contacts(jsonb[]), kept by name, signature and result, as a front of the
-- pipeline's implementation: records are checked (a rejected one is kept in sync_queue with status
-- 'error' and the reason, as the request did), the rest are staged and go through
-- keap_pipeline.upsert_contacts_from_stage, so there is one upsert, not two. Conflicts (changed in
-- Keap and locally since the last sync) are parked for manual resolution. A record without
-- keap_updated_at counts as changed in Keap when the call is made (clock_timestamp()).
-- Returns succeeded (valid records not in conflict, in-batch duplicates included), failed
-- (rejected), conflicts.
create function public.batch_upsert_contacts(p_contacts jsonb[])
returns table (succeeded integer, failed integer, conflicts integer)
language plpgsql
volatile
security invoker
set search_path = ''
set jit = off
as $$
declare
    v_batch uuid := pg_catalog.gen_random_uuid();
    v_valid integer;
    v_failed integer;
    v_conflicts integer;
begin
    with input as (
        select c.rec, c.ord
        from unnest(coalesce(p_contacts, '{}'::jsonb[])) with ordinality as c(rec, ord)
    ),
    checked as (
        select
            i.rec,
            i.ord,
            case
                when i.rec is null or jsonb_typeof(i.rec) <> 'object' then
                    'record is not a JSON object'
                when exists (
                    select 1
                    from pg_catalog.jsonb_object_keys(i.rec) as k(name)
                    where k.name not in (
                        'keap_id', 'email', 'first_name', 'last_name', 'phone', 'company',
                        'tags', 'custom_fields', 'keap_updated_at'
                    )
                ) then
                    'unknown field(s): ' || (
                        select string_agg(k.name, ', ' order by k.name)
                        from pg_catalog.jsonb_object_keys(i.rec) as k(name)
                        where k.name not in (
                            'keap_id', 'email', 'first_name', 'last_name', 'phone', 'company',
                            'tags', 'custom_fields', 'keap_updated_at'
                        )
                    ) || '; known: keap_id, email, first_name, last_name, phone, company, tags, custom_fields, keap_updated_at'
                when coalesce(jsonb_typeof(i.rec -> 'keap_id'), 'missing') not in ('string', 'number')
                    or pg_catalog.btrim(i.rec ->> 'keap_id') = '' then
                    'keap_id is missing or empty'
                when exists (
                    select 1
                    from (values ('keap_id', 255), ('email', 255), ('first_name', 255), ('last_name', 255),
                                 ('phone', 50), ('company', 255)) as f(name, max_length)
                    where jsonb_typeof(i.rec -> f.name) not in ('string', 'number', 'null')
                       or pg_catalog.length(i.rec ->> f.name) > f.max_length
                ) then
                    'a text field is not a string or is too long (keap_id, email, first_name, last_name, company: 255; phone: 50)'
                when jsonb_typeof(i.rec -> 'tags') not in ('array', 'null') then
                    'tags must be a JSON array'
                when jsonb_typeof(i.rec -> 'custom_fields') not in ('object', 'null') then
                    'custom_fields must be a JSON object'
                when jsonb_typeof(i.rec -> 'keap_updated_at') not in ('string', 'null')
                    or not keap_pipeline.is_timestamptz(i.rec ->> 'keap_updated_at') then
                    'keap_updated_at must be an ISO-8601 timestamp with a time zone'
            end as problem
        from input as i
    ),
    rejected as (
        insert into public.sync_queue (operation, entity_type, entity_id, payload, status, error_message)
        select
            'sync',
            'sync_contacts',
            null,
            coalesce(ch.rec, 'null'::jsonb),
            'error',
            'batch_upsert_contacts: record ' || ch.ord || ' rejected: ' || ch.problem
        from checked as ch
        where ch.problem is not null
        returning 1
    ),
    staged as (
        insert into keap_pipeline.stage_contacts (
            batch_id, ordinal, keap_id, email, first_name, last_name, phone, company, tags, custom_fields,
            keap_created_at, keap_updated_at, content_hash
        )
        select
            v_batch,
            ch.ord::integer,
            ch.rec ->> 'keap_id',
            ch.rec ->> 'email',
            ch.rec ->> 'first_name',
            ch.rec ->> 'last_name',
            ch.rec ->> 'phone',
            ch.rec ->> 'company',
            coalesce(nullif(ch.rec -> 'tags', 'null'::jsonb), '[]'::jsonb),
            coalesce(nullif(ch.rec -> 'custom_fields', 'null'::jsonb), '{}'::jsonb),
            null,
            coalesce((ch.rec ->> 'keap_updated_at')::timestamptz, pg_catalog.clock_timestamp()),
            -- no fingerprint: the upsert compares the content itself
            null
        from checked as ch
        where ch.problem is null
        returning 1
    )
    select (select pg_catalog.count(*) from staged)::integer, (select pg_catalog.count(*) from rejected)::integer
    into v_valid, v_failed;

    select u.conflicts
    into v_conflicts
    from keap_pipeline.upsert_contacts_from_stage(v_batch, 'manual', 'manual') as u;

    return query
    select v_valid - v_conflicts, v_failed, v_conflicts;
end
$$;

comment on function public.batch_upsert_contacts(jsonb[]) is
    'The request''s batch upsert: checks records, stages them, and runs keap_pipeline.upsert_contacts_from_stage (manual conflicts).';

-- Like the pipeline's functions: it touches the internal schema, which the API roles cannot use.
revoke execute on function public.batch_upsert_contacts(jsonb[]) from public, anon, authenticated, service_role;
