-- 02: minimal stand-ins for what Supabase provides (roles anon/authenticated/service_role, schema auth,
-- auth.users, auth.uid()/auth.role()/auth.jwt()), created ONLY where absent, i.e. on plain PostgreSQL.
-- On a real Supabase project every one of them exists and nothing here creates or alters it
-- (Supabase reserves those role names and, since 2025-04-21, refuses DDL in schema auth).
-- Each database object created here is recorded in keap_pipeline.standins so that the down script
-- drops exactly those. Roles are cluster-wide (other databases may use them): they are recorded
-- for information but never dropped by the rollback.

create table keap_pipeline.standins (
    object_kind text not null,
    object_name text not null,
    created_by_version integer not null,
    created_at timestamptz not null default now(),
    constraint standins_pkey
        primary key (object_kind, object_name),
    constraint standins_object_kind_known
        check (object_kind in ('role', 'schema', 'table', 'function', 'publication', 'extension'))
);

comment on table keap_pipeline.standins is
    'Supabase stand-ins (and optional extensions) that keap-pipeline migrations created because the '
    'database lacked them; down scripts drop exactly these rows'' objects (roles excepted: cluster-wide).';

do $standins$
declare
    v_role record;
begin
    -- Roles. A concurrent migration of another database on the same cluster may create the same
    -- role between our check and our create: both duplicate errors mean "it exists now", which is fine.
    for v_role in
        select *
        from (values
            ('anon', 'nologin'),
            ('authenticated', 'nologin'),
            ('service_role', 'nologin bypassrls')
        ) as r(name, options)
    loop
        if not exists (select 1 from pg_catalog.pg_roles where rolname = v_role.name) then
            begin
                execute pg_catalog.format('create role %I %s', v_role.name, v_role.options);
                insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
                values ('role', v_role.name, 2);
            exception
                when duplicate_object or unique_violation then
                    null;
            end;
        end if;
    end loop;

    if to_regnamespace('auth') is null then
        create schema auth;
        -- Supabase gives the API roles usage on auth so policies may call auth.uid() as them.
        grant usage on schema auth to anon, authenticated, service_role;
        insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
        values ('schema', 'auth', 2);
    end if;

    if to_regclass('auth.users') is null then
        -- The columns of Supabase's auth.users that this project reads; the rest are left out.
        create table auth.users (
            id uuid not null default gen_random_uuid(),
            email varchar(255),
            raw_app_meta_data jsonb,
            raw_user_meta_data jsonb,
            created_at timestamptz default now(),
            updated_at timestamptz default now(),
            constraint users_pkey
                primary key (id)
        );
        insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
        values ('table', 'auth.users', 2);
    end if;

    -- Same logic as supabase/auth migrations 20220224000811 and 20220531120530: the legacy per-claim
    -- setting first, then the JSON claim set; nullif(.., '') because a transaction-local setting reads
    -- back as '' (not NULL) after its transaction ended.
    -- No `set search_path` on these three, unlike every other function here, and on purpose: as on
    -- Supabase they must stay inlinable SQL functions (a SET clause forbids inlining and costs a GUC
    -- save/restore per call: ~30 us per row where auth.uid() is a column default, i.e. 30 ms per
    -- 1000-row insert). Their bodies name everything schema-qualified, so search_path cannot matter.
    if to_regprocedure('auth.uid()') is null then
        create function auth.uid()
        returns uuid
        language sql
        stable
        as $fn$
            select coalesce(
                nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
                (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
            )::uuid
        $fn$;
        insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
        values ('function', 'auth.uid()', 2);
    end if;

    if to_regprocedure('auth.role()') is null then
        create function auth.role()
        returns text
        language sql
        stable
        as $fn$
            select coalesce(
                nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
                (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
            )::text
        $fn$;
        insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
        values ('function', 'auth.role()', 2);
    end if;

    if to_regprocedure('auth.jwt()') is null then
        create function auth.jwt()
        returns jsonb
        language sql
        stable
        as $fn$
            select coalesce(
                nullif(pg_catalog.current_setting('request.jwt.claim', true), ''),
                nullif(pg_catalog.current_setting('request.jwt.claims', true), '')
            )::jsonb
        $fn$;
        insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
        values ('function', 'auth.jwt()', 2);
    end if;
end
$standins$;
