-- 01: the pipeline's internal schema and its migration history.
-- keap_pipeline holds bookkeeping (applied migrations, cursors, dead letters, stand-in records):
-- it is never granted to anon, authenticated or service_role, so the Data API cannot see it.

create schema if not exists keap_pipeline;

revoke all on schema keap_pipeline from public;

create table keap_pipeline.schema_migrations (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now(),
    constraint schema_migrations_checksum_is_sha256
        check (checksum ~ '^[0-9a-f]{64}$')
);

comment on table keap_pipeline.schema_migrations is
    'Applied migration files of keap-pipeline (sql/NN-*.sql) with the sha256 of their text.';
