-- Down of 15: unschedule the keap-pipeline:* jobs, drop pg_cron only if 15 created it, drop the
-- function, and return the audit log to its state after 14 (DEFAULT partition only) WITHOUT losing a
-- row: every monthly partition is detached, its rows are copied into DEFAULT, then it is dropped.
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

do $partitions$
declare
    v_partition text;
    v_partitions text[];
    v_moved bigint;
begin
    select coalesce(array_agg(c.relname order by c.relname), '{}')
    into v_partitions
    from pg_catalog.pg_inherits as i
    join pg_catalog.pg_class as c
        on c.oid = i.inhrelid
    join pg_catalog.pg_namespace as n
        on n.oid = c.relnamespace
    where i.inhparent = 'public.sync_audit_log'::regclass
      and n.nspname = 'keap_pipeline'
      and c.relname ~ '^sync_audit_log_[0-9]{4}_[0-9]{2}$';

    -- detach all first: DEFAULT's partition constraint then admits every month
    foreach v_partition in array v_partitions loop
        execute pg_catalog.format('alter table public.sync_audit_log detach partition keap_pipeline.%I', v_partition);
    end loop;
    foreach v_partition in array v_partitions loop
        execute pg_catalog.format(
            'insert into keap_pipeline.sync_audit_log_default select * from keap_pipeline.%I', v_partition
        );
        get diagnostics v_moved = row_count;
        if v_moved > 0 then
            raise notice 'rollback of 15: moved % audit row(s) from keap_pipeline.% into the DEFAULT partition', v_moved, v_partition;
        end if;
        execute pg_catalog.format('drop table keap_pipeline.%I', v_partition);
    end loop;
end
$partitions$;
