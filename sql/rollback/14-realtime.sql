-- Down of 14: take the tables out of supabase_realtime (dropping the publication if 14 created it),
-- revoke the grant, restore the default replica identity.
do $down$
declare
    v_table text;
begin
    if exists (select 1 from keap_pipeline.standins where object_kind = 'publication' and object_name = 'supabase_realtime') then
        drop publication supabase_realtime;
        delete from keap_pipeline.standins where object_kind = 'publication' and object_name = 'supabase_realtime';
        return;
    end if;
    foreach v_table in array array[
        'sync_conflicts', 'sync_status', 'sync_products', 'sync_subscriptions', 'sync_tags',
        'sync_orders', 'sync_contacts'
    ] loop
        if exists (
            select 1
            from pg_catalog.pg_publication_rel as pr
            join pg_catalog.pg_publication as p
                on p.oid = pr.prpubid
            where p.pubname = 'supabase_realtime'
              and pr.prrelid = pg_catalog.format('public.%I', v_table)::regclass
        ) then
            execute pg_catalog.format('alter publication supabase_realtime drop table public.%I', v_table);
        end if;
    end loop;
end
$down$;

revoke select on public.sync_conflicts from authenticated;

alter table public.sync_conflicts replica identity default;
alter table public.sync_status replica identity default;
alter table public.sync_contacts replica identity default;
