-- 16: row level security on EVERY table (the request enabled it on three) and explicit grants.
-- Supabase's default privileges give anon, authenticated and service_role ALL on every new table and
-- function in public, and Supabase says it is moving away from that: so nothing here relies on either
-- default. 10 revoked every grant of the API roles when it created the tables; here exactly what each
-- role needs is granted.
-- Policies (the request's names kept where it had them):
-- * service_role_all: the server-side key has full access (service_role also has BYPASSRLS).
-- * owners: a signed-in user reads and writes the rows they created or last updated. auth.uid() is
--   wrapped as (select auth.uid()) so it is evaluated once per statement (an initPlan), not per row
--   (splinter lint 0003); created_by/updated_by are indexed (13).
-- * admins: `app_metadata.role = 'admin'` in the JWT. The request read raw_user_meta_data, which every
--   user can edit through the Auth API (updateUser): anyone could have made themselves admin. app_metadata
--   is writable server-side only. Read from the JWT, so no lookup of auth.users per statement.
-- * anon: no grant, no policy: the public anon key reads no per-record data.

do $security$
declare
    v_table text;
    v_owner text := '(created_by = (select auth.uid()) or updated_by = (select auth.uid()))';
    v_admin text := '(((select auth.jwt()) -> ''app_metadata'' ->> ''role'') = ''admin'')';
begin
    foreach v_table in array array[
        'sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products',
        'sync_status', 'sync_conflicts', 'sync_queue', 'sync_audit_log'
    ] loop
        execute pg_catalog.format('alter table public.%I enable row level security', v_table);
        execute pg_catalog.format('grant select, insert, update, delete on table public.%I to service_role', v_table);
        execute pg_catalog.format(
            'create policy service_role_all on public.%I for all to service_role using (true) with check (true)',
            v_table
        );
    end loop;

    -- The sync tables: owners and admins.
    foreach v_table in array array['sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products'] loop
        execute pg_catalog.format('grant select, insert, update, delete on table public.%I to authenticated', v_table);
        execute pg_catalog.format(
            'create policy users_read_own on public.%I for select to authenticated using %s', v_table, v_owner
        );
        -- a new row must be owned by its author: created_by defaults to auth.uid() and may not name someone else
        execute pg_catalog.format(
            'create policy users_insert_own on public.%I for insert to authenticated with check (created_by = (select auth.uid()))',
            v_table
        );
        execute pg_catalog.format(
            'create policy users_update_own on public.%I for update to authenticated using %s with check %s',
            v_table, v_owner, v_owner
        );
        execute pg_catalog.format(
            'create policy users_delete_own on public.%I for delete to authenticated using %s', v_table, v_owner
        );
        execute pg_catalog.format(
            'create policy admin_all on public.%I for all to authenticated using %s with check %s',
            v_table, v_admin, v_admin
        );
    end loop;

    -- Conflicts: admins resolve them (read and update; rows are created by the pipeline).
    execute 'grant select, update on table public.sync_conflicts to authenticated';
    execute pg_catalog.format(
        'create policy admin_conflicts on public.sync_conflicts for all to authenticated using %s with check %s',
        v_admin, v_admin
    );

    -- Status, queue and audit: admins read; writes come from the triggers and the pipeline only.
    foreach v_table in array array['sync_status', 'sync_queue', 'sync_audit_log'] loop
        execute pg_catalog.format('grant select on table public.%I to authenticated', v_table);
        execute pg_catalog.format(
            'create policy admin_read on public.%I for select to authenticated using %s', v_table, v_admin
        );
    end loop;
end
$security$;

-- Internal tables: RLS on without policies (only their owner, the pipeline, uses them) and no grants.
-- The schema itself is never usable by the API roles (01 revoked it from public; this makes sure).
alter table keap_pipeline.settings enable row level security;
alter table keap_pipeline.standins enable row level security;
alter table keap_pipeline.sync_audit_log_default enable row level security;
revoke all on schema keap_pipeline from anon, authenticated, service_role;

-- Functions: their EXECUTE grants are set where each is created (11, 12, 15), so they come and go with
-- the function: nothing is callable by anon or signed-in users, whatever the default privileges.
