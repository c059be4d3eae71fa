-- The request's batch_upsert_contacts(jsonb[]): a front of the pipeline's staged upsert.
-- requires: 24
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The text is
-- 20's; `set role = keap_pipeline_ingest` and the ingestion's EXECUTE are 24's: it loads as the
-- ingestion whoever calls it (EXECUTE is the owner's and the ingestion's only; the SET fails for
-- anyone who may not act as keap_pipeline_ingest).

-- The request's batch_upsert_contacts(jsonb[]), kept by name, signature and result, as a front of the
-- pipeline's implementation: records are checked (a rejected one is kept in sync_queue with status
-- 'error' and the reason, as the request did), the rest are staged and go through
-- keap_pipeline.upsert_contacts_from_stage, so there is one upsert, not two. Conflicts (changed in
-- Keap and locally since the last sync) are parked for manual resolution. A record without
-- keap_updated_at counts as changed in Keap when the call is made (clock_timestamp()).
-- Returns succeeded (valid records not in conflict, in-batch duplicates included), failed
-- (rejected), conflicts.
create or replace function public.batch_upsert_contacts(p_contacts jsonb[])
returns table (succeeded integer, failed integer, conflicts integer)
language plpgsql
volatile
security invoker
set search_path = ''
set jit = off
set role = keap_pipeline_ingest
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
grant execute on function public.batch_upsert_contacts(jsonb[]) to keap_pipeline_ingest;
