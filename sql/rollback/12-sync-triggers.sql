-- Down of 12: drop the triggers of every sync table, then the function.
do $down$
declare
    v_table text;
begin
    foreach v_table in array array['sync_products', 'sync_subscriptions', 'sync_tags', 'sync_orders', 'sync_contacts'] loop
        execute pg_catalog.format('drop trigger %I on public.%I', v_table || '_after_delete', v_table);
        execute pg_catalog.format('drop trigger %I on public.%I', v_table || '_after_update', v_table);
        execute pg_catalog.format('drop trigger %I on public.%I', v_table || '_after_insert', v_table);
        execute pg_catalog.format('drop trigger %I on public.%I', v_table || '_update', v_table);
    end loop;
end
$down$;

drop function public.trigger_sync_on_update();
