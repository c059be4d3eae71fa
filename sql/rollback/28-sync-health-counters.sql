-- Down of 28. sql/functions/rollback/60-monitoring.sql runs first (60 requires 28): it gives
-- public.sync_health back its text of 17, which reads the sync tables, so nothing depends on the
-- counters any more.

do $triggers$
declare
    v_table text;
begin
    foreach v_table in array array[
        'public.sync_contacts', 'public.sync_orders', 'public.sync_tags', 'public.sync_subscriptions',
        'public.sync_products', 'public.sync_conflicts', 'public.sync_queue', 'keap_pipeline.dead_letters'
    ] loop
        execute pg_catalog.format('drop trigger %I on %s', pg_catalog.split_part(v_table, '.', 2) || '_count_insert', v_table);
        execute pg_catalog.format('drop trigger %I on %s', pg_catalog.split_part(v_table, '.', 2) || '_count_update', v_table);
        execute pg_catalog.format('drop trigger %I on %s', pg_catalog.split_part(v_table, '.', 2) || '_count_delete', v_table);
        execute pg_catalog.format('drop trigger %I on %s', pg_catalog.split_part(v_table, '.', 2) || '_count_truncate', v_table);
    end loop;
end
$triggers$;

drop function keap_pipeline.recount_sync_health();
drop function keap_pipeline.uncount_truncated();
drop function keap_pipeline.count_sync_items();
drop function keap_pipeline.count_sync_rows();
drop function keap_pipeline.sync_rows_delta_sql(text, text, text[]);

drop table public.sync_health_counters;
