-- 15: audit partitions for the current month and the three ahead, and the maintenance jobs in pg_cron
-- where pg_cron can be used here. pg_cron needs shared_preload_libraries and can only be created in
-- the database named by cron.database_name; elsewhere (the embedded server has no pg_cron) this file
-- raises a NOTICE and skips the jobs: it never fails for want of pg_cron. The request's job names
-- ('create-partitions', 'vacuum-analyze') get a 'keap-pipeline:' prefix so they cannot collide with
-- other jobs of the same database, and cron.schedule under a fixed name replaces rather than duplicates.

select public.create_monthly_partition(current_date);

-- Returns the names of the jobs it scheduled (none, with a NOTICE saying why, where pg_cron is unusable).
-- Creates the extension only where it is available and creatable; records that in keap_pipeline.standins
-- so the down script drops only an extension it created.
create function keap_pipeline.schedule_maintenance_jobs()
returns setof text
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_reason text;
    v_job record;
begin
    if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
        if not exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron') then
            v_reason := 'the pg_cron extension is not installed on this server';
        elsif not ('pg_cron' = any (pg_catalog.string_to_array(
                pg_catalog.replace(pg_catalog.current_setting('shared_preload_libraries'), ' ', ''), ','))) then
            v_reason := 'pg_cron is not in shared_preload_libraries';
        elsif pg_catalog.current_setting('cron.database_name', true) is distinct from pg_catalog.current_database() then
            v_reason := pg_catalog.format(
                'pg_cron can only be created in database %s (cron.database_name), not in %s',
                coalesce(pg_catalog.current_setting('cron.database_name', true), '<unset>'),
                pg_catalog.current_database()
            );
        else
            -- pinned to pg_catalog as on Supabase (search_path is empty here, so it must be named)
            create extension pg_cron with schema pg_catalog;
            insert into keap_pipeline.standins (object_kind, object_name, created_by_version)
            values ('extension', 'pg_cron', 15);
        end if;
    end if;

    if v_reason is not null then
        raise notice 'keap-pipeline: pg_cron jobs not scheduled: %. Run public.create_monthly_partition() monthly, VACUUM ANALYZE of the sync tables nightly and public.drop_old_audit_partitions() monthly by other means.', v_reason;
        return;
    end if;

    for v_job in
        select *
        from (values
            ('keap-pipeline:create-partitions', '0 0 1 * *', 'select public.create_monthly_partition()'),
            ('keap-pipeline:vacuum-analyze', '0 2 * * *',
             'vacuum analyze public.sync_contacts, public.sync_orders, public.sync_tags, public.sync_subscriptions, '
             'public.sync_products, public.sync_status, public.sync_conflicts, public.sync_queue'),
            ('keap-pipeline:audit-retention', '30 3 1 * *', 'select public.drop_old_audit_partitions()')
        ) as j(name, schedule, command)
    loop
        -- dynamic: the cron schema may not exist when this function is created
        execute 'select cron.schedule($1, $2, $3)'
        using v_job.name, v_job.schedule, v_job.command;
        return next v_job.name;
    end loop;
end
$$;

comment on function keap_pipeline.schedule_maintenance_jobs() is
    'Schedules the keap-pipeline:* pg_cron jobs where pg_cron is usable; otherwise a NOTICE says why and nothing happens.';

revoke execute on function keap_pipeline.schedule_maintenance_jobs() from public;

select keap_pipeline.schedule_maintenance_jobs();
