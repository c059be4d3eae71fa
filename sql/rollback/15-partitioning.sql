-- Down of 15: unschedule the keap-pipeline:* jobs, drop pg_cron only if 15 created it, drop the
-- function. The monthly audit partitions stay: they hold audit rows and belong to the table of 10,
-- whose down script drops them with it.
do $down$
declare
    v_job text;
begin
    if pg_catalog.to_regclass('cron.job') is not null then
        for v_job in
            execute 'select jobname from cron.job where database = pg_catalog.current_database() and jobname like ''keap-pipeline:%'' order by jobname'
        loop
            execute 'select cron.unschedule($1)' using v_job;
        end loop;
    end if;
    if exists (select 1 from keap_pipeline.standins where object_kind = 'extension' and object_name = 'pg_cron') then
        drop extension pg_cron;
        delete from keap_pipeline.standins where object_kind = 'extension' and object_name = 'pg_cron';
    end if;
end
$down$;

drop function keap_pipeline.schedule_maintenance_jobs();
