-- Down of 11: drop the functions of 11 in reverse order.
drop function public.drop_old_audit_partitions();
drop function public.create_monthly_partition(date);
drop function keap_pipeline.is_timestamptz(text);
drop function keap_pipeline.uuid_v7();
drop function public.detect_sync_conflict(varchar, uuid, jsonb, jsonb);
