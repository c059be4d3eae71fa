-- Down of 34: users_read / users_update as 24 wrote them (the admin arm a scalar subquery), then the helpers.
do $policies$
declare
    v_table text;
    v_refs text;
    v_owner text := '(created_by = (select auth.uid()))';
    v_admin_rows text := '(id between (select case when ((select auth.jwt()) -> ''app_metadata'' ->> ''role'') = ''admin'''
        ' then ''00000000-0000-0000-0000-000000000000''::uuid end) and ''ffffffff-ffff-ffff-ffff-ffffffffffff''::uuid)';
begin
    foreach v_table in array array['sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products'] loop
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

drop function keap_rls.caller_id();
drop function keap_rls.admin_row_floor();
drop schema keap_rls;
