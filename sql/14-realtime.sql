-- 14: realtime. REPLICA IDENTITY FULL (the request's three tables) makes UPDATE/DELETE events carry the
-- whole old row; it costs about 1.5x in logical decoding, so only where the old row is wanted.
-- Every sync table and the two monitored management tables join the publication supabase_realtime
-- (without that, Supabase streams nothing: its publication is created empty). On plain PostgreSQL the
-- publication is created here and recorded as a stand-in.
-- Grants of the request, fixed: `grant select on sync_status to anon` is dropped: anon (any visitor
-- holding the public anon key) never reads per-record data, and sync_status names every record with
-- its Keap id and last error. `grant select on sync_conflicts to authenticated` is kept; the RLS
-- policies of 16 narrow it to admins.

alter table public.sync_contacts replica identity full;
alter table public.sync_status replica identity full;
alter table public.sync_conflicts replica identity full;

grant select on public.sync_conflicts to authenticated;

do $realtime$
declare
    v_table text;
    v_all_tables boolean;
begin
    select p.puballtables
    into v_all_tables
    from pg_catalog.pg_publication as p
    where p.pubname = 'supabase_realtime';

    if not found then
        create publication supabase_realtime;
        insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
        values ('publication', 'supabase_realtime', 14);
        v_all_tables := false;
    end if;

    if v_all_tables then
        raise notice 'publication supabase_realtime is FOR ALL TABLES: the sync tables are in it already';
        return;
    end if;

    foreach v_table in array array[
        'sync_contacts', 'sync_orders', 'sync_tags', 'sync_subscriptions', 'sync_products',
        'sync_status', 'sync_conflicts'
    ] loop
        if not exists (
            select 1
            from pg_catalog.pg_publication_tables as pt
            where pt.pubname = 'supabase_realtime'
              and pt.schemaname = 'public'
              and pt.tablename = v_table
        ) then
            execute pg_catalog.format('alter publication supabase_realtime add table public.%I', v_table);
        end if;
    end loop;
end
$realtime$;
