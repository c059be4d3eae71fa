-- Down of 16: back to the state after 15: policies dropped, RLS off, the grants of 16 revoked, the
-- grant of 14 (select on sync_conflicts to authenticated) restored.
alter table keap_pipeline.sync_audit_log_default disable row level security;
alter table keap_pipeline.standins disable row level security;
alter table keap_pipeline.settings disable row level security;

do $down$
declare
    v_table text;
    v_policy text;
begin
    foreach v_table in array array[
        'sync_audit_log', 'sync_queue', 'sync_conflicts', 'sync_status',
        'sync_products', 'sync_subscriptions', 'sync_tags', 'sync_orders', 'sync_contacts'
    ] loop
        foreach v_policy in array array[
            'admin_read', 'admin_conflicts', 'admin_all', 'users_delete_own', 'users_update_own',
            'users_insert_own', 'users_read_own', 'service_role_all'
        ] loop
            execute pg_catalog.format('drop policy if exists %I on public.%I', v_policy, v_table);
        end loop;
        execute pg_catalog.format('revoke all on table public.%I from anon, authenticated, service_role', v_table);
        execute pg_catalog.format('alter table public.%I disable row level security', v_table);
    end loop;
end
$down$;

grant select on public.sync_conflicts to authenticated;
