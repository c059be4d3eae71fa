-- 35: what normalizing a record's exact bytes gave, so a re-read can skip decoding and normalizing
-- the records Keap sends again byte for byte (docs/architecture.md, "Data flow of one batch").
--
-- One row per record of every entity: the keyed hash of the record's bytes as Keap sent them (the key
-- is the normalizer's version: pipeline/raw_keys.py), and the keys the normalizer made of those bytes
-- (keap_id, keap_updated_at, content_hash). A row is a fact about bytes, not a copy of the sync row:
-- the same bytes under the same normalizer always give the same keys, whatever happened to the sync
-- row since (app edits, conflicts, outbound write-backs, soft deletes). The batch's key/hash diff
-- against the sync table (diff_E_from_stage) stays the judge of what is written; a record found here
-- only skips being decoded and normalized on its way to that diff. Records the normalizer rejected
-- or PostgreSQL refused are never written here.
create table keap_pipeline.raw_record_keys (
    entity varchar(50) not null,
    keap_id varchar(255) not null,
    raw_hash bytea not null,
    keap_updated_at timestamptz,
    content_hash uuid not null,
    constraint raw_record_keys_pkey
        primary key (entity, keap_id),
    constraint raw_record_keys_raw_hash_length
        check (octet_length(raw_hash) = 16)
);

comment on table keap_pipeline.raw_record_keys is
    'Per entity and Keap id: the keyed hash of the record''s last bytes read and the keys the normalizer made of them (a re-read skips normalizing bytes found here).';

-- internal like the others (16, 26, 29): RLS on, no policy but the ingestion's, no grants to the API roles
alter table keap_pipeline.raw_record_keys enable row level security;
grant select, insert, update, delete on table keap_pipeline.raw_record_keys to keap_pipeline_ingest;
create policy ingestion_all on keap_pipeline.raw_record_keys
    for all to keap_pipeline_ingest using (true) with check (true);
