-- Down of 28. sql/functions/rollback/60-monitoring.sql runs first (60 requires 28): it gives
-- public.sync_health back its text of 17, which reads the sync tables, so nothing depends on the
-- counters any more.

do $triggers$
declare
    v_table regclass;
    v_name text;
begin
    for v_table in select t.counted from keap_pipeline.health_counted_tables() as t loop
        v_name := (select c.relname from pg_catalog.pg_class as c where c.oid = v_table);
        execute pg_catalog.format('drop trigger %I on %s', v_name || '_count_insert', v_table);
        execute pg_catalog.format('drop trigger %I on %s', v_name || '_count_update', v_table);
        execute pg_catalog.format('drop trigger %I on %s', v_name || '_count_delete', v_table);
        execute pg_catalog.format('drop trigger %I on %s', v_name || '_count_truncate', v_table);
        execute pg_catalog.format('drop function keap_pipeline.%I()', 'count_health_' || v_name);
    end loop;
end
$triggers$;

drop function keap_pipeline.recount_sync_health();
drop function keap_pipeline.health_counted_tables();
drop function keap_pipeline.uncount_truncated();
drop function keap_pipeline.define_health_counting(regclass, text[]);
drop function keap_pipeline.sync_items_delta_sql(regclass, text, text);
drop function keap_pipeline.sync_rows_delta_sql(text, text, text, text[]);

drop table public.sync_health_counters;
