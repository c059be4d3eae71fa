-- 27: the history of the repeatable files (sql/functions/NN-slug.sql: functions and views).
-- A versioned file is applied once and never edited; a repeatable file is edited in place and
-- re-applied by `keap-pipeline migrate` (all of them, in NN order, in one transaction) whenever one
-- is new or changed. This table records the checksum each was last applied with.

create table keap_pipeline.repeatable_migrations (
    name text primary key,
    checksum text not null,
    applied_at timestamptz not null default now(),
    constraint repeatable_migrations_name_is_a_file
        check (name ~ '^[0-9]+-[a-z0-9][a-z0-9-]*$'),
    constraint repeatable_migrations_checksum_is_sha256
        check (checksum ~ '^[0-9a-f]{64}$')
);

comment on table keap_pipeline.repeatable_migrations is
    'Repeatable files of keap-pipeline (sql/functions/NN-*.sql) with the sha256 of the text last applied.';

-- internal like the others (16): RLS on without policies, no grants (only the migrating owner uses it)
alter table keap_pipeline.repeatable_migrations enable row level security;
