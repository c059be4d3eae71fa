-- Conflict helpers: detect_sync_conflict (the request's, fixed), and the three-way merge and the
-- description of a conflicting record that upsert_contacts_from_stage calls.
-- requires: 24
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The texts are
-- those of 11 (detect_sync_conflict) and 20 (merge_fields, describe_conflict), grants as of 24.

-- Compares two versions of a record; when they differ, records a conflict and returns its id,
-- otherwise returns NULL. Fields = the top-level keys whose values differ (a key present on one side
-- only counts as differing).
create or replace function public.detect_sync_conflict(
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

-- EXECUTE: not anon's nor a signed-in user's, whatever the default privileges (Supabase grants EXECUTE
-- on new public functions to anon and authenticated explicitly); service_role's, for server-side
-- resolution tools.
revoke execute on function public.detect_sync_conflict(varchar, uuid, jsonb, jsonb) from public, anon, authenticated;
grant execute on function public.detect_sync_conflict(varchar, uuid, jsonb, jsonb) to service_role;

-- Three-way merge of one record's fields. Per field: equal on both sides -> that value; changed on one
-- side only (relative to the base, the values of the last completed sync) -> that side; changed on both
-- sides to different values -> p_rule ('keap_wins' | 'supabase_wins'), or NULL for 'manual' (park).
-- Without a base (audit retention dropped it) a differing field counts as changed on both sides.
create or replace function keap_pipeline.merge_fields(
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

revoke execute on function keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text) from public;
grant execute on function keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text) to keap_pipeline_ingest;

-- One conflicting record, described for resolution: the two sides as jsonb, the fields that differ,
-- and for strategy merge the merged record (NULL = park). The base of the merge is Keap's version as
-- last seen: written as is (the newest keap- or push-sourced audit row with sync_status completed), or, when
-- it was not written as is (merged with local values, kept local, parked), recorded in the newest
-- sync_conflicts row of the record; whichever is newer.
-- Called only for conflicting rows, so its per-row lookups cost nothing on the bulk path.
create or replace function keap_pipeline.describe_conflict(
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
                              -- a push's write-back (sql/30) records Keap's version as Keap answered it
                              and a.sync_source in ('keap', 'push')
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

revoke execute on function keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text) from public;
grant execute on function keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text) to keap_pipeline_ingest;
