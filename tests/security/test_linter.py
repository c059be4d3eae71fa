"""Supabase's database linter (splinter: the Security and Performance Advisors) is clean on the migrated schema.

One catalog query per lint that can apply to what the migrations build, written here from what each
lint checks (https://supabase.github.io/splinter); each returns the offending objects, and none may
be found. Scope: the schemas this project creates (public, the Data API's schema, and the internal
keap_pipeline); `auth` holds Supabase's own objects (the stand-ins on plain PostgreSQL), which the
linter skips too. The Data API exposes `public` and `graphql_public` (Supabase's default
pgrst.db_schemas).

Not applicable here: 0005 unused_index and 0020 table_bloat (INFO, about live statistics), 0012
anonymous sign-ins (an Auth setting), 0019 insecure_queue_exposed_in_api (pgmq), 0025
public_bucket_allows_listing (Storage). 0027 pg_graphql_authenticated_table_exposed fires only where
pg_graphql is installed, for every relation signed-in users may read: by design the sync tables and
views are read by the app, under RLS (see docs/security.md); the test below pins that list.
"""

from __future__ import annotations

import psycopg
import pytest

# lint name -> (level, query returning the offending objects)
LINTS: dict[str, tuple[str, str]] = {
    # 0002: a view or materialized view over auth.users that the API roles can read
    "auth_users_exposed": ("ERROR", """
        select distinct v.oid::regclass::text
        from pg_catalog.pg_depend as d
        join pg_catalog.pg_rewrite as w on w.oid = d.objid
        join pg_catalog.pg_class as v on v.oid = w.ev_class
        where d.classid = 'pg_catalog.pg_rewrite'::regclass
          and d.refobjid = 'auth.users'::regclass
          and v.relkind in ('v', 'm')
          and v.relnamespace::regnamespace::text = any (array['public', 'graphql_public'])
          and exists (select 1 from pg_catalog.unnest(array['anon', 'authenticated']) as r(name)
                      where pg_catalog.has_table_privilege(r.name, v.oid, 'SELECT'))
    """),
    # 0003: auth.<fn>() or current_setting() in a policy, not wrapped in a scalar subquery (so it is
    # evaluated per row): every occurrence must directly follow "SELECT "
    "auth_rls_initplan": ("WARN", """
        select p.schemaname || '.' || p.tablename || ':' || p.policyname
        from pg_catalog.pg_policies as p
        cross join lateral (values (p.qual), (p.with_check)) as e(expr)
        where p.schemaname = any (array['public', 'keap_pipeline'])
          and e.expr is not null
          and (
              pg_catalog.regexp_count(e.expr, '(auth\\.(uid|jwt|role|email)|current_setting)\\(')
              <> pg_catalog.regexp_count(e.expr, 'select\\s+(auth\\.(uid|jwt|role|email)|current_setting)\\(', 1, 'i')
          )
    """),
    # 0006: more than one permissive policy for one role and action (FOR ALL counts for each)
    "multiple_permissive_policies": ("WARN", """
        select c.oid::regclass::text || ' ' || r.rolname || ' ' || a.action
        from pg_catalog.pg_policy as p
        join pg_catalog.pg_class as c on c.oid = p.polrelid
        join pg_catalog.pg_roles as r on r.oid = any (p.polroles) or p.polroles = '{0}'::oid[]
        cross join lateral pg_catalog.unnest(case p.polcmd
            when '*' then array['SELECT', 'INSERT', 'UPDATE', 'DELETE'] when 'r' then array['SELECT']
            when 'a' then array['INSERT'] when 'w' then array['UPDATE'] when 'd' then array['DELETE'] end) as a(action)
        where p.polpermissive
          and c.relnamespace::regnamespace::text = any (array['public', 'keap_pipeline'])
          and not r.rolbypassrls
          and r.rolname !~ '^pg_'
        group by c.oid, r.rolname, a.action
        having pg_catalog.count(*) > 1
    """),
    # 0007: policies on a table whose RLS is off (they do nothing)
    "policy_exists_rls_disabled": ("ERROR", """
        select distinct c.oid::regclass::text
        from pg_catalog.pg_policy as p join pg_catalog.pg_class as c on c.oid = p.polrelid
        where not c.relrowsecurity and c.relnamespace::regnamespace::text = any (array['public', 'keap_pipeline'])
    """),
    # 0009: two indexes of one table with the same definition
    "duplicate_index": ("WARN", """
        select i.schemaname || '.' || i.tablename || ': ' || pg_catalog.string_agg(i.indexname, ', ')
        from pg_catalog.pg_indexes as i
        where i.schemaname = any (array['public', 'keap_pipeline'])
        group by i.schemaname, i.tablename, pg_catalog.replace(i.indexdef, i.indexname, '')
        having pg_catalog.count(*) > 1
    """),
    # 0010: a view the API roles can read that runs with its owner's rights (no security_invoker)
    "security_definer_view": ("ERROR", """
        select v.oid::regclass::text
        from pg_catalog.pg_class as v
        where v.relkind = 'v'
          and v.relnamespace::regnamespace::text = any (array['public', 'graphql_public'])
          and exists (select 1 from pg_catalog.unnest(array['anon', 'authenticated']) as r(name)
                      where pg_catalog.has_table_privilege(r.name, v.oid, 'SELECT'))
          and not exists (select 1 from pg_catalog.unnest(v.reloptions) as o
                          where pg_catalog.lower(o) in ('security_invoker=true', 'security_invoker=on',
                                                        'security_invoker=1', 'security_invoker=yes'))
    """),
    # 0011: a function without its own search_path
    "function_search_path_mutable": ("WARN", """
        select f.oid::regprocedure::text
        from pg_catalog.pg_proc as f
        where f.pronamespace::regnamespace::text = any (array['public', 'keap_pipeline'])
          and not exists (select 1 from pg_catalog.unnest(f.proconfig) as s where s like 'search\\_path=%')
    """),
    # 0013 (and 0023, which looks for sensitive column names in the same tables): a table the API
    # roles can read without RLS. Stronger here: every table of ours the API roles can reach has RLS.
    "rls_disabled_in_public": ("ERROR", """
        select t.oid::regclass::text
        from pg_catalog.pg_class as t
        where t.relkind in ('r', 'p')
          and not t.relrowsecurity
          and t.relnamespace::regnamespace::text = any (array['public', 'keap_pipeline'] || array['public', 'graphql_public'])
          and (
              t.relnamespace::regnamespace::text = any (array['public', 'graphql_public'])
              or exists (select 1 from pg_catalog.unnest(array['anon', 'authenticated'] || array['service_role']) as r(name)
                         where pg_catalog.has_table_privilege(r.name, t.oid, 'SELECT'))
          )
    """),
    # 0014: an extension installed in public
    "extension_in_public": ("WARN", """
        select e.extname from pg_catalog.pg_extension as e
        where e.extnamespace = 'public'::regnamespace and e.extname <> 'plpgsql'
    """),
    # 0015: a policy that reads user_metadata (which every user can edit)
    "rls_references_user_metadata": ("ERROR", """
        select p.tablename || ':' || p.policyname from pg_catalog.pg_policies as p
        where coalesce(p.qual, '') || coalesce(p.with_check, '') ~* 'user_metadata|raw_user_meta_data'
    """),
    # 0016 and 0017: a materialized view or foreign table (neither has RLS) the API roles can read
    "materialized_view_or_foreign_table_in_api": ("WARN", """
        select c.oid::regclass::text
        from pg_catalog.pg_class as c
        where c.relkind in ('m', 'f')
          and c.relnamespace::regnamespace::text = any (array['public', 'graphql_public'])
          and exists (select 1 from pg_catalog.unnest(array['anon', 'authenticated']) as r(name)
                      where pg_catalog.has_table_privilege(r.name, c.oid, 'SELECT'))
    """),
    # 0018: columns of reg* types that name objects by OID (pg_upgrade cannot keep them)
    "unsupported_reg_types": ("WARN", """
        select a.attrelid::regclass::text || '.' || a.attname
        from pg_catalog.pg_attribute as a
        join pg_catalog.pg_class as c on c.oid = a.attrelid
        where a.attnum > 0 and not a.attisdropped
          and c.relnamespace::regnamespace::text = any (array['public', 'keap_pipeline'])
          and a.atttypid in ('regcollation'::regtype, 'regconfig'::regtype, 'regdictionary'::regtype,
                             'regnamespace'::regtype, 'regoper'::regtype, 'regoperator'::regtype,
                             'regproc'::regtype, 'regprocedure'::regtype)
    """),
    # 0021: a foreign key to an auth table through a unique constraint other than its primary key
    "fkey_to_auth_unique": ("ERROR", """
        select k.conrelid::regclass::text || ':' || k.conname
        from pg_catalog.pg_constraint as k
        join pg_catalog.pg_index as i on i.indexrelid = k.conindid
        where k.contype = 'f'
          and k.confrelid::regclass::text like 'auth.%'
          and i.indisunique and not i.indisprimary
    """),
    # 0022: an installed extension that is not at its default (recommended) version
    "extension_versions_outdated": ("WARN", """
        select x.name || ' ' || x.installed_version
        from pg_catalog.pg_available_extensions as x
        where x.installed_version is distinct from x.default_version and x.installed_version is not null
    """),
    # 0024: a permissive policy for anon / authenticated / everyone that lets any row be updated or
    # deleted (USING true) or written (WITH CHECK true, or an INSERT policy without a check)
    "rls_policy_always_true": ("WARN", """
        select p.polrelid::regclass::text || ':' || p.polname
        from pg_catalog.pg_policy as p
        where p.polpermissive
          and p.polrelid::regclass::text not like 'pg\\_%'
          and (p.polroles = '{0}'::oid[]
               or exists (select 1 from pg_catalog.unnest(p.polroles) as r(oid)
                          where r.oid::regrole::text = any (array['anon', 'authenticated'])))
          and (
              (p.polcmd in ('w', 'd', '*')
               and pg_catalog.regexp_replace(coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true'), '[\\s()]', '', 'g')
                   in ('true', '1=1'))
              or pg_catalog.regexp_replace(coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), ''), '[\\s()]', '', 'g')
                   in ('true', '1=1')
              or (p.polcmd = 'a' and p.polwithcheck is null)
          )
    """),
    # 0026: anything anon (the public key) can SELECT a column of: visible to anyone through
    # pg_graphql's introspection, and readable through the Data API. Checked whether or not
    # pg_graphql is installed.
    "pg_graphql_anon_table_exposed": ("WARN", """
        select distinct c.oid::regclass::text
        from pg_catalog.pg_class as c
        join pg_catalog.pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind in ('r', 'v', 'm', 'f')
          and c.relnamespace::regnamespace::text = any (array['public', 'keap_pipeline'] || array['public', 'graphql_public'])
          and pg_catalog.has_column_privilege('anon', c.oid, a.attnum, 'SELECT')
    """),
    # 0028 and 0029: a SECURITY DEFINER function in an exposed schema that anon or authenticated
    # may EXECUTE (callable as /rest/v1/rpc/<name> with its owner's rights)
    "security_definer_function_executable": ("WARN", """
        select f.oid::regprocedure::text || ' by ' || r.name
        from pg_catalog.pg_proc as f
        cross join pg_catalog.unnest(array['anon', 'authenticated']) as r(name)
        where f.prosecdef
          and f.pronamespace::regnamespace::text = any (array['public', 'graphql_public'])
          and pg_catalog.has_function_privilege(r.name, f.oid, 'EXECUTE')
    """),
    # INFO level, clean too. 0001: a foreign key without an index that starts with its columns (a
    # delete of the referenced row, e.g. a user's, scans the table)
    "unindexed_foreign_keys": ("INFO", """
        select k.conrelid::regclass::text || ':' || k.conname
        from pg_catalog.pg_constraint as k
        where k.contype = 'f'
          and k.connamespace::regnamespace::text = any (array['public', 'keap_pipeline'])
          and not exists (
              select 1 from pg_catalog.pg_index as i
              where i.indrelid = k.conrelid and i.indisvalid
                and (string_to_array(i.indkey::text, ' ')::smallint[])[1:pg_catalog.cardinality(k.conkey)] = k.conkey
          )
    """),
    # 0004 and 0008 for the Data API's tables (INFO; the internal staging tables have no primary key
    # and the internal tables RLS without policies, on purpose: only their owner and the ingestion use them)
    "no_primary_key_or_no_policy_in_api": ("INFO", """
        select t.oid::regclass::text
        from pg_catalog.pg_class as t
        where t.relkind in ('r', 'p')
          and t.relnamespace::regnamespace::text = any (array['public', 'graphql_public'])
          and (not exists (select 1 from pg_catalog.pg_constraint as k where k.conrelid = t.oid and k.contype = 'p')
               or not exists (select 1 from pg_catalog.pg_policy as p where p.polrelid = t.oid))
    """),
}

# What signed-in users may read (lint 0027 lists these where pg_graphql is installed): the sync
# tables and management tables, under RLS, the three security_invoker monitoring views, and the
# counters behind sync_health (sql/28; RLS: admins only, tests/security/test_health_counters.py).
AUTHENTICATED_READS = {
    "sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products",
    "sync_status", "sync_conflicts", "sync_queue", "sync_health", "sync_queue_depth", "sync_open_conflicts",
    "sync_health_counters",
}


# Findings that are the design, pinned exactly (any other finding of the lint fails): the contact
# lookups by tag / custom field (sql/31, functions/80) are SECURITY DEFINER RPCs for signed-in users
# because through RLS no index can serve a jsonb lookup (and recent_contacts, sql/38, because through
# users_read's OR an owner's "recently updated" page read and sorted every row the owner has); they read keap_pipeline.contact_lookup, which
# app users cannot, and apply the read policy's rule themselves. tests/security/test_contact_lookups.py
# attacks them (other users' rows, forged claims, anon) beside the honest reads; docs/security.md lists
# them as a residual risk.
BY_DESIGN = {
    "security_definer_function_executable": {
        "contacts_with_tag(text,integer,uuid) by authenticated",
        "recent_contacts(integer,timestamp with time zone,uuid) by authenticated",
        "contacts_by_custom_field(text,jsonb,integer,uuid) by authenticated",
    },
}


@pytest.mark.parametrize("lint", sorted(LINTS), ids=sorted(LINTS))
def test_lint_is_clean(db: psycopg.Connection, lint: str) -> None:
    _level, query = LINTS[lint]
    assert sorted(r[0] for r in db.execute(query)) == sorted(BY_DESIGN.get(lint, set()))


def test_what_signed_in_users_can_read_is_exactly_the_sync_schema(db: psycopg.Connection) -> None:
    # the objects lint 0027 would list on a project with pg_graphql (relkinds r, v, m, f, as
    # pg_graphql exposes them: the partitioned audit log is read through the Data API only)
    readable = {
        r[0] for r in db.execute(
            "select distinct c.relname from pg_catalog.pg_class as c"
            " join pg_catalog.pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped"
            " where c.relkind in ('r', 'v', 'm', 'f')"
            " and c.relnamespace::regnamespace::text = any (array['public', 'keap_pipeline', 'graphql_public'])"
            " and pg_catalog.has_column_privilege('authenticated', c.oid, a.attnum, 'SELECT')"
        )
    }
    assert readable == AUTHENTICATED_READS


def test_the_linter_catches_what_it_should(db: psycopg.Connection) -> None:
    # each query finds its problem when the problem is there (inside this rolled-back transaction)
    db.execute("create function public.lint_probe() returns int language sql security definer as 'select 1'")
    db.execute("grant execute on function public.lint_probe() to authenticated")
    db.execute("create table public.lint_probe_t (id int, u text)")
    db.execute("grant select on public.lint_probe_t to anon")
    db.execute("create index lint_probe_a on public.lint_probe_t (id)")
    db.execute("create index lint_probe_b on public.lint_probe_t (id)")
    db.execute("create policy p1 on public.sync_tags for select to authenticated using (auth.uid() is not null)")
    db.execute("create policy p2 on public.sync_tags for update to authenticated using (true)")
    db.execute("create view public.lint_probe_v as select id from public.lint_probe_t")
    db.execute("grant select on public.lint_probe_v to authenticated")
    expected = {
        "function_search_path_mutable", "security_definer_function_executable", "rls_disabled_in_public",
        "pg_graphql_anon_table_exposed", "duplicate_index", "auth_rls_initplan", "multiple_permissive_policies",
        "rls_policy_always_true", "security_definer_view", "no_primary_key_or_no_policy_in_api",
    }
    fired = {name for name, (_, query) in LINTS.items()
             if name in expected and db.execute(query).fetchall()}
    assert fired == expected


# splinter's newest text of 0011 warns on any function whose search_path is not exactly "" (LINTS has
# the earlier text: a function with no search_path setting). The ones that keep pg_temp last on purpose
# (docs/security.md: with '', pg_temp is searched first for types and tables) are pinned here, so that
# a new function that should have '' cannot hide among them.
PG_TEMP_LAST = {"keap_pipeline.contact_reader()", "keap_pipeline.check_page_limit(integer,text)"}


def test_the_newest_search_path_lint_finds_only_the_functions_that_keep_pg_temp_last(db: psycopg.Connection) -> None:
    flagged = db.execute(
        "select p.oid::regprocedure::text, p.prosecdef, coalesce(p.proconfig, '{}')"
        " from pg_catalog.pg_proc as p"
        " where p.pronamespace::regnamespace::text = any (array['public', 'keap_pipeline'])"
        "   and not coalesce(p.proconfig, '{}') && array['search_path=\"\"']"
    ).fetchall()
    assert flagged, "the SECURITY DEFINER functions keep pg_temp last"
    for name, _secdef, config in flagged:
        assert "search_path=pg_catalog, pg_temp" in config, name
    assert {name for name, secdef, _ in flagged if not secdef} == PG_TEMP_LAST
    definers = db.execute(
        "select count(*) from pg_catalog.pg_proc as p"
        " where p.pronamespace::regnamespace::text = any (array['public', 'keap_pipeline']) and p.prosecdef"
    ).fetchone()
    assert definers == (sum(1 for _, secdef, _ in flagged if secdef),), "every SECURITY DEFINER function keeps pg_temp last"
