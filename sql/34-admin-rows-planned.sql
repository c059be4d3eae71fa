-- 34: users_read / users_update on the sync tables, written so that the planner sees who is asking
-- when it plans the statement (issue 16, part 1: an app user's list pages through RLS).
--
-- 24 wrote the admin test as `id between (select case when <admin> then '0000...' end) and 'ffff...'`:
-- a scalar subquery, evaluated once per statement, which the planner cannot see into. It therefore
-- planned every signed-in user's list page alike, for an admin arm it guessed keeps 0.5% of the rows:
-- an admin's status page, work lists and orders by date fetched every candidate and sorted them
-- (0.1-0.7 s at 1M), and an owner's own "recently updated" walked the whole updated_at index for the
-- few rows it owns (0.3 s at 200k, 0.7 s at 1M). docs/benchmarks.md has the figures.
--
-- Now the admin arm is `id >= keap_rls.admin_row_floor()`: the zero uuid (every id is >= it) for an
-- admin, NULL (no id is) for anyone else, as before. The function is STABLE, and the planner evaluates
-- stable functions when it estimates a condition's selectivity (not when it runs it): for an admin the
-- arm keeps every row, so a page is an ordered index scan that stops after its 50 rows; for an owner
-- it keeps none, so the page is the owner's rows through the created_by index (BitmapOr with the empty
-- key range), sorted: a few rows, or a few thousand, never the table. The owner arm is
-- `coalesce(created_by = (select auth.uid()), false) and created_by = keap_rls.caller_id()`: the first, an
-- init plan, is what a filter evaluates for every row an admin's scan reads (cheap, and false for all but
-- the admin's own rows; the coalesce makes it false, not NULL, for the ingested rows' NULL created_by, so
-- the AND stops there); the second is auth.uid() where the planner sees it, the index condition of an
-- owner's plan, estimated by the owner's own row count (created_by's statistics), never above it. With the
-- init plan alone an owner was planned as the average owner: 100k contacts of which one user owns 20,000,
-- and another owner's 50-row page walked the whole updated_at index. With the function alone, every row an
-- ordered scan read called it (217 ms for the largest owner's "recently updated" at 200k, against 11 ms).
-- What each user may read or update is unchanged: admins
-- (app_metadata.role = 'admin' in the JWT; user_metadata is the user's own to write and is not read)
-- every row; anyone else signed in only the rows they created; anon has no policy at all.
--
-- Why functions of their own, in a schema of its own: the expressions must not be scalar subqueries
-- (they would hide the values from the planner again), and auth.jwt() written bare in a policy is what
-- splinter's lint 0003 (auth_rls_initplan) warns of: evaluated per row. Here it is evaluated once per
-- statement where it is an index condition (the owner's plan) and per row read where it is a filter
-- (an admin's page: the 50-odd rows the ordered scan reads; an admin's count of every row pays it for
-- each: docs/benchmarks.md). The functions are SECURITY INVOKER (caller_id with a fixed search_path,
-- admin_row_floor inlined, see there), and live in keap_rls, which
-- signed-in users may use for nothing else (keap_pipeline stays closed to the API roles; public would
-- publish them as RPCs). They are created here, not in sql/functions/, because these policies need
-- them at this version (as 31 did with its key functions).

create schema keap_rls;
comment on schema keap_rls is
    'Helpers of the sync tables'' RLS policies, usable by signed-in users (sql/34); nothing else lives here.';
revoke all on schema keap_rls from public;
grant usage on schema keap_rls to authenticated;

-- No SET search_path here, unlike every other function of the schema: a function with one is never
-- inlined, and this one is evaluated for every row a filter reads for an admin (a call through the
-- function manager and a GUC save/restore each: about 10 us a row, 1.7 s for a count of 200k contacts,
-- against 0.3 s inlined). Every name in it is schema-qualified, operators included, so the search_path of
-- the caller changes nothing.
create function keap_rls.admin_row_floor()
returns uuid
language sql
stable
security invoker
parallel safe
as $fn$
    select case when ((pg_catalog.current_setting('request.jwt.claims', true)::pg_catalog.jsonb
                       operator(pg_catalog.->) 'app_metadata') operator(pg_catalog.->>) 'role')
                     operator(pg_catalog.=) 'admin'
                then '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid end
$fn$;

comment on function keap_rls.admin_row_floor() is
    'The least id an admin may read (the zero uuid: every row) or NULL (no row) for anyone else; the admin arm of the sync tables'' policies (sql/34).';

create function keap_rls.caller_id()
returns uuid
language sql
stable
security invoker
parallel safe
set search_path = ''
as $fn$
    select auth.uid()
$fn$;

comment on function keap_rls.caller_id() is
    'auth.uid() where the planner may see it (a scalar subquery hides it): the owner arm of the sync tables'' policies (sql/34).';

revoke execute on function keap_rls.admin_row_floor(), keap_rls.caller_id() from public;
grant execute on function keap_rls.admin_row_floor(), keap_rls.caller_id() to authenticated;

do $policies$
declare
    v_table text;
    v_refs text;
    v_owner text := '(coalesce(created_by = (select auth.uid()), false) and (created_by = keap_rls.caller_id()))';
    v_admin_rows text := '(id >= keap_rls.admin_row_floor())';
begin
    foreach v_table in array array['sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products'] loop
        -- as in 24: a user's row may point only at rows the user can read
        v_refs := case v_table
            when 'sync_orders' then
                ' and (contact_id is null or exists (select 1 from public.sync_contacts as c where c.id = contact_id))'
            when 'sync_subscriptions' then
                ' and (contact_id is null or exists (select 1 from public.sync_contacts as c where c.id = contact_id))'
                ' and (product_id is null or exists (select 1 from public.sync_products as p where p.id = product_id))'
            else ''
        end;
        execute pg_catalog.format(
            'alter policy users_read on public.%I using (%s or %s)',
            v_table, v_owner, v_admin_rows
        );
        execute pg_catalog.format(
            'alter policy users_update on public.%I using (%s or %s) with check ((%s or %s)%s)',
            v_table, v_owner, v_admin_rows, v_owner, v_admin_rows, v_refs
        );
    end loop;
end
$policies$;
