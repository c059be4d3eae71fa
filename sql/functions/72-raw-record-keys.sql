-- The raw record keys of a re-read (sql/35, pipeline/raw_keys.py): one page's look-up and one batch's
-- store, each one statement with the page's values packed into a few parameters (ids joined by commas,
-- hashes concatenated: 16 bytes each), which costs the pipeline a fraction of binding 1,000-element arrays.
-- requires: 35
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place.

create or replace function keap_pipeline.find_raw_record_keys(p_entity text, p_ids text, p_hashes bytea)
returns table (ordinals integer[], updated_us bigint[], content_hashes text)
language sql
stable
set search_path = ''
-- one index probe per record of the page (raw_record_keys_pkey), never a scan of the entity's rows: the
-- page's ids are a function's result, whose 1,000 rows the planner would otherwise hash against all of them
set enable_hashjoin = off
set enable_mergejoin = off
as $$
    -- The probe is a LATERAL subquery kept apart by its LIMIT (the key is the primary key: one row at
    -- most), so it runs once per id with both key columns as the index condition. As a plain join, a
    -- table that grew since it was last analyzed (the first re-read of an entity fills it page by page)
    -- was planned as a few rows: one scan of all the entity's rows, materialized and compared with every
    -- id of the page (25 million comparisons, 2.8 s, per page at 50,000 orders; quadratic in N).
    select pg_catalog.array_agg(q.ordinal::integer order by q.ordinal),
           pg_catalog.array_agg((extract(epoch from r.keap_updated_at) * 1000000)::bigint order by q.ordinal),
           pg_catalog.string_agg(pg_catalog.replace(r.content_hash::text, '-', ''), ',' order by q.ordinal)
    from pg_catalog.unnest(pg_catalog.string_to_array(p_ids, ',')) with ordinality as q(keap_id, ordinal)
    cross join lateral (
        select k.keap_updated_at, k.content_hash, k.raw_hash
        from keap_pipeline.raw_record_keys as k
        where k.entity = p_entity
          and k.keap_id = q.keap_id
        limit 1
    ) as r
    where r.raw_hash = pg_catalog.substr(p_hashes, (q.ordinal::integer - 1) * 16 + 1, 16)
$$;

comment on function keap_pipeline.find_raw_record_keys(text, text, bytea) is
    'Of one page''s records (ids joined by commas, their 16-byte raw hashes concatenated in the same order): the positions (1-based) whose bytes were normalized before, with the keap_updated_at (epoch microseconds) and content hash stored for them.';

create or replace function keap_pipeline.remember_raw_record_keys(
    p_entity text,
    p_ids text,
    p_hashes bytea,
    p_updated_us bigint[],
    p_content_hashes text
)
returns void
language sql
volatile
set search_path = ''
as $$
    insert into keap_pipeline.raw_record_keys as r (entity, keap_id, raw_hash, keap_updated_at, content_hash)
    select p_entity,
           q.keap_id,
           pg_catalog.substr(p_hashes, (q.ordinal::integer - 1) * 16 + 1, 16),
           pg_catalog.to_timestamp(0) + p_updated_us[q.ordinal] * interval '1 microsecond',
           c.content_hash::uuid
    from pg_catalog.unnest(pg_catalog.string_to_array(p_ids, ',')) with ordinality as q(keap_id, ordinal)
    join pg_catalog.unnest(pg_catalog.string_to_array(p_content_hashes, ',')) with ordinality as c(content_hash, ordinal)
        on c.ordinal = q.ordinal
    on conflict (entity, keap_id) do update
    set raw_hash = excluded.raw_hash,
        keap_updated_at = excluded.keap_updated_at,
        content_hash = excluded.content_hash
    where r.raw_hash is distinct from excluded.raw_hash
$$;

comment on function keap_pipeline.remember_raw_record_keys(text, text, bytea, bigint[], text) is
    'Stores what normalizing records'' bytes gave (ids joined by commas, no two alike; 16-byte raw hashes concatenated; keap_updated_at as epoch microseconds; content hashes joined by commas), replacing each record''s older bytes.';

revoke execute on function keap_pipeline.find_raw_record_keys(text, text, bytea) from public;
revoke execute on function keap_pipeline.remember_raw_record_keys(text, text, bytea, bigint[], text) from public;
grant execute on function keap_pipeline.find_raw_record_keys(text, text, bytea) to keap_pipeline_ingest;
grant execute on function keap_pipeline.remember_raw_record_keys(text, text, bytea, bigint[], text) to keap_pipeline_ingest;
