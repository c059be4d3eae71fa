-- Contacts by tag and by custom field value for app users: the query form the dashboard sends
-- (docs/operations.md, "Contacts by tag or custom field"), measured in docs/benchmarks.md.
-- requires: 31
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The key functions
-- and the trigger function are 31's (31 needs them for its backfill and its triggers); the text here is current.
--
-- Why functions, and why SECURITY DEFINER: through RLS, `tags @> '["12"]'` and
-- `custom_fields @> '{"1": "x"}'` can use no index at all. RLS policies are security barriers, and a
-- query's own condition may become an index condition only when its operator is LEAKPROOF; jsonb's
-- containment and existence operators are not (only a superuser could mark them), so every such
-- lookup read the contacts one by one (1M contacts: 1-5 s). And the admin's policy test is a
-- parameter the planner cannot see, so it plans an admin's read for a selective filter it is not.
-- These functions run as the tables' owner (no RLS) and apply the policy's rule themselves, in two
-- branches the planner plans separately: an admin (app_metadata.role = 'admin', from the JWT) or
-- service_role reads every live contact; any other signed-in user only the rows they own
-- (created_by = auth.uid()); anyone else nothing. The same rule as users_read on sync_contacts
-- (tests/security/test_contact_lookups.py compares them row for row).
--
-- The index is keap_pipeline.contact_lookup (31): one key per (contact, tag) and per (contact, custom
-- field value), ordered by contact id, so a page of the newest contacts with a key is an index range
-- whatever the key's frequency (a GIN index returns every match, unordered: the 4,000 contacts of a
-- mid-frequency tag were 30-110 ms to sort at 1M).

-- ---------------------------------------------------------------------------------------------
-- The keys and the trigger that keeps them (31)
-- ---------------------------------------------------------------------------------------------

-- The key of a tag ('tag', its Keap id, NULL) or of a custom field value ('field', its Keap id, the JSON
-- value as stored: jsonb's text of a value is canonical, except that a number keeps the digits written).
create or replace function keap_pipeline.contact_lookup_key(p_kind text, p_name text, p_value jsonb)
returns uuid
language sql
immutable
parallel safe
set search_path = ''
as $$
    select pg_catalog.md5(
        p_kind operator(pg_catalog.||) ':' operator(pg_catalog.||) p_name
        operator(pg_catalog.||) coalesce('=' operator(pg_catalog.||) p_value::text, '')
    )::uuid
$$;

-- Every key of one contact's tags and custom fields.
create or replace function keap_pipeline.contact_lookup_keys(p_tags jsonb, p_fields jsonb)
returns setof uuid
language sql
immutable
parallel safe
set search_path = ''
as $$
    select keap_pipeline.contact_lookup_key('tag', t.value, null)
    from pg_catalog.jsonb_array_elements_text(p_tags) as t(value)
    union all
    select keap_pipeline.contact_lookup_key('field', f.key, f.value)
    from pg_catalog.jsonb_each(p_fields) as f
$$;

revoke all on function keap_pipeline.contact_lookup_key(text, text, jsonb) from public;
revoke all on function keap_pipeline.contact_lookup_keys(jsonb, jsonb) from public;

-- SECURITY DEFINER: app users' writes must keep a table they cannot read (as the audit trigger does);
-- a trigger function cannot be called directly. The keys are contact_lookup_keys(tags, custom_fields)
-- written out once, as the lateral join c_keys that each statement below formats: a SET clause (the
-- search_path above) keeps the planner from inlining a SQL function, so calling the functions would
-- cost a call per key, 2.1x the statement (docs/schema.md 92); the tests check that the two agree.
-- Updates touch the keys of rows whose tags or custom fields changed only (NULL for the other: it
-- has no keys). EXECUTE, as in trigger_sync_on_update: a plan cached for an empty transition table
-- made later large updates quadratic (tests/db/test_sync_triggers.py).
create or replace function keap_pipeline.maintain_contact_lookup()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    -- %1$s: a row's tags (a jsonb array of tag ids), %2$s: its custom fields (a jsonb object)
    c_keys constant text := $k$
        cross join lateral (
            select pg_catalog.md5('tag:' || t.value)::uuid
            from pg_catalog.jsonb_array_elements_text(%1$s) as t(value)
            union all
            select pg_catalog.md5('field:' || f.key || '=' || f.value::text)::uuid
            from pg_catalog.jsonb_each(%2$s) as f
        ) as k(key)
    $k$;
    -- an update's rows whose tags or custom fields changed, and of each only what changed
    c_changed constant text := $c$
        from old_rows as o
        join new_rows as n
            on n.id = o.id
           and (n.tags is distinct from o.tags or n.custom_fields is distinct from o.custom_fields)
    $c$;
begin
    if tg_op = 'INSERT' then
        -- new contacts have no keys yet (their ids are new: sync_contacts' primary key), so the only
        -- duplicates are within a row (a tag listed twice): DISTINCT, and a plain insert in key order
        -- (with ON CONFLICT's speculative insertion, in arrival order, these inserts took 1.5x as long:
        -- docs/schema.md 91)
        execute format($sql$
            insert into keap_pipeline.contact_lookup (key, contact_id)
            select distinct k.key, n.id
            from new_rows as n
            %s
            order by k.key, n.id
        $sql$, format(c_keys, 'n.tags', 'n.custom_fields'));
    elsif tg_op = 'UPDATE' then
        execute format($sql$
            delete from keap_pipeline.contact_lookup as l
            using (select k.key, o.id %s %s) as gone
            where l.key = gone.key
              and l.contact_id = gone.id
        $sql$, c_changed, format(c_keys,
            'case when n.tags is distinct from o.tags then o.tags end',
            'case when n.custom_fields is distinct from o.custom_fields then o.custom_fields end'));
        -- in key order, as above; ON CONFLICT kept on this path (an update's rows are few; not measured)
        execute format($sql$
            insert into keap_pipeline.contact_lookup (key, contact_id)
            select k.key, n.id %s %s
            order by k.key, n.id
            on conflict do nothing
        $sql$, c_changed, format(c_keys,
            'case when n.tags is distinct from o.tags then n.tags end',
            'case when n.custom_fields is distinct from o.custom_fields then n.custom_fields end'));
    else
        execute format($sql$
            delete from keap_pipeline.contact_lookup as l
            using (select k.key, o.id from old_rows as o %s) as gone
            where l.key = gone.key
              and l.contact_id = gone.id
        $sql$, format(c_keys, 'o.tags', 'o.custom_fields'));
    end if;
    return null;
end
$$;

revoke all on function keap_pipeline.maintain_contact_lookup() from public;

-- ---------------------------------------------------------------------------------------------
-- The lookups the app calls
-- ---------------------------------------------------------------------------------------------

create or replace function public.contacts_with_tag(
    p_tag text,
    p_limit integer default 50,
    p_before uuid default null
)
returns setof public.sync_contacts
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return query
    select *
    from keap_pipeline.contacts_by_lookup_key(
        keap_pipeline.contact_lookup_key('tag', p_tag, null), null, p_limit, p_before
    );
end
$$;

comment on function public.contacts_with_tag(text, integer, uuid) is
    'Live contacts carrying tag p_tag (a Keap tag id), newest first (id desc), at most p_limit, those '
    'below id p_before (the last id of the previous page). Rows the caller may read: own rows, or all for '
    'admins and service_role. Use this, not tags @> ..., from the app (docs/operations.md).';

create or replace function public.contacts_by_custom_field(
    p_field text,
    p_value jsonb,
    p_limit integer default 50,
    p_before uuid default null
)
returns setof public.sync_contacts
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return query
    select *
    from keap_pipeline.contacts_by_lookup_key(
        keap_pipeline.contact_lookup_key('field', p_field, p_value),
        pg_catalog.jsonb_build_object(p_field, p_value), p_limit, p_before
    );
end
$$;

comment on function public.contacts_by_custom_field(text, jsonb, integer, uuid) is
    'Live contacts whose custom field p_field (its Keap id) holds exactly the JSON value p_value (a '
    'number matches as written: 5 and 5.0 differ), newest first, at most p_limit, below id p_before. '
    'Rows the caller may read: own rows, or all for admins and service_role.';

-- Who calls, for the lookups and pages below (SECURITY DEFINER functions: they see the caller through the
-- role the API set, PostgREST's SET LOCAL role, and the JWT claims): an admin (app_metadata.role = 'admin')
-- or service_role reads every live contact (reads_all), any other signed-in user the rows they own
-- (owner = auth.uid()), anyone else nothing (neither). The same rule as users_read on sync_contacts. A
-- session without SET ROLE (the owner's own SQL) reads like service_role.
create or replace function keap_pipeline.contact_reader(out reads_all boolean, out owner uuid)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_role text := pg_catalog.current_setting('role');
    v_claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
begin
    reads_all := v_role in ('service_role', 'none')
        or (v_role = 'authenticated' and coalesce((v_claims -> 'app_metadata' ->> 'role') = 'admin', false));
    owner := null;
    if not reads_all and v_role = 'authenticated' then
        owner := auth.uid();
    end if;
end
$$;

comment on function keap_pipeline.contact_reader() is
    'Which contacts the API caller may read: all (admins, service_role) or those it owns (owner), else none; '
    'for the SECURITY DEFINER lookups and pages of sql/functions/80.';

-- A page's size, for the lookups and pages below: 1 to 1000 rows, else a clear error (22023).
create or replace function keap_pipeline.check_page_limit(p_limit integer, p_hint text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if p_limit is null or p_limit < 1 or p_limit > 1000 then
        raise exception 'p_limit must be between 1 and 1000, got %', p_limit
            using errcode = '22023', hint = p_hint;
    end if;
end
$$;

comment on function keap_pipeline.check_page_limit(integer, text) is
    'Refuses a page size outside 1..1000 (errcode 22023, with the caller''s paging hint).';

-- The one implementation: which rows the caller may read, then the key's page.
create or replace function keap_pipeline.contacts_by_lookup_key(
    p_key uuid,
    p_recheck jsonb,
    p_limit integer,
    p_before uuid
)
returns setof public.sync_contacts
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_all boolean;
    v_owner uuid;
    v_query text;
begin
    perform keap_pipeline.check_page_limit(p_limit, 'Page with p_before (the last id of the previous page).');
    select r.reads_all, r.owner into v_all, v_owner from keap_pipeline.contact_reader() as r;
    if not v_all and v_owner is null then
        return;
    end if;
    -- EXECUTE: planned with the values each time (a key's frequency and an owner's size decide the plan)
    v_query := 'select c.* from keap_pipeline.contact_lookup as k'
        ' join public.sync_contacts as c on c.id = k.contact_id'
        ' where k.key = $1 and k.contact_id < coalesce($2, ''ffffffff-ffff-ffff-ffff-ffffffffffff''::uuid)'
        ' and c.deleted_at is null'
        || case when p_recheck is null then '' else ' and c.custom_fields @> $3' end
        || case when v_all then '' else ' and c.created_by = $4' end
        || ' order by k.contact_id desc limit $5';
    return query execute v_query using p_key, p_before, p_recheck, v_owner, p_limit;
end
$$;

comment on function keap_pipeline.contacts_by_lookup_key(uuid, jsonb, integer, uuid) is
    'The page of live contacts with one keap_pipeline.contact_lookup key that the caller may read '
    '(behind public.contacts_with_tag and public.contacts_by_custom_field).';

-- An app's "recently updated" list: live contacts in sync, newest update first, keyset-paged by (updated_at,
-- id). Through users_read an owner's page read every row the owner has and sorted them (docs/schema.md 87);
-- here the owner's case is planned on its own (created_by = auth.uid(): idx_sync_contacts_own_recent, 38,
-- read in order and stopped after the page), an admin's reads idx_active_contacts in order.
create or replace function public.recent_contacts(
    p_limit integer default 50,
    p_before_updated_at timestamptz default null,
    p_before_id uuid default null
)
returns setof public.sync_contacts
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_all boolean;
    v_owner uuid;
begin
    perform keap_pipeline.check_page_limit(
        p_limit, 'Page with p_before_updated_at and p_before_id (the last row of the previous page).'
    );
    if p_before_id is not null and p_before_updated_at is null then
        raise exception 'p_before_id needs p_before_updated_at (the last row''s updated_at and id)'
            using errcode = '22023';
    end if;
    select r.reads_all, r.owner into v_all, v_owner from keap_pipeline.contact_reader() as r;
    if not v_all and v_owner is null then
        return;
    end if;
    -- EXECUTE: each case planned on its own, with its values
    return query execute
        'select c.* from public.sync_contacts as c'
        ' where c.deleted_at is null and c.sync_status = ''completed'''
        || case when p_before_updated_at is null then '' else
           ' and c.updated_at <= $2 and (c.updated_at, c.id) < ($2, coalesce($3, ''ffffffff-ffff-ffff-ffff-ffffffffffff''::uuid))' end
        || case when v_all then '' else ' and c.created_by = $4' end
        || ' order by c.updated_at desc, c.id desc limit $1'
        using p_limit, p_before_updated_at, p_before_id, v_owner;
end
$$;

comment on function public.recent_contacts(integer, timestamptz, uuid) is
    'Live contacts in sync (sync_status completed), most recently updated first, at most p_limit, those after '
    '(p_before_updated_at, p_before_id) (the last row of the previous page). Rows the caller may read: own rows, '
    'or all for admins and service_role. Use this for an app user''s "recently updated" list (docs/operations.md).';

revoke all on function public.recent_contacts(integer, timestamptz, uuid) from public, anon;
grant execute on function public.recent_contacts(integer, timestamptz, uuid) to authenticated, service_role;
revoke all on function keap_pipeline.contact_reader() from public, anon, authenticated, service_role;
revoke all on function keap_pipeline.check_page_limit(integer, text) from public, anon, authenticated, service_role;

revoke all on function public.contacts_with_tag(text, integer, uuid) from public, anon;
revoke all on function public.contacts_by_custom_field(text, jsonb, integer, uuid) from public, anon;
revoke all on function keap_pipeline.contacts_by_lookup_key(uuid, jsonb, integer, uuid) from public, anon, authenticated, service_role;
grant execute on function public.contacts_with_tag(text, integer, uuid) to authenticated, service_role;
grant execute on function public.contacts_by_custom_field(text, jsonb, integer, uuid) to authenticated, service_role;
