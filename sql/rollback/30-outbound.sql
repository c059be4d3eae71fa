-- Down of 30. Items the pusher kept as 'unsupported' become 'pending' again (what they were before
-- 30), in-flight items 'pending' (their records are sent whole by the next sender); audit rows of the
-- pusher's write-backs keep their rows with source 'keap' (they were written as the ingestion's
-- role, and 29 knows no other source for it). Nothing is deleted.
drop index public.sync_queue_failed_idx;
drop index public.sync_queue_unconfirmed_send_idx;
drop index public.sync_queue_in_flight_idx;

update public.sync_audit_log
set sync_source = 'keap'
where sync_source = 'push';

alter table public.sync_audit_log
    drop constraint sync_audit_log_sync_source_known;
alter table public.sync_audit_log
    add constraint sync_audit_log_sync_source_known
        check (sync_source in ('keap', 'supabase', 'manual'));

-- one pending item per record (sync_queue_pending_entity_key): the newest such item of a record
-- becomes its pending item unless it has one; every other is superseded
update public.sync_queue as q
set status = 'pending',
    claim_key = null,
    error_message = null
where q.status in ('unsupported', 'processing')
  and not exists (
      select 1
      from public.sync_queue as p
      where p.entity_type = q.entity_type
        and p.entity_id = q.entity_id
        and p.status = 'pending'
  )
  and q.id = (
      select r.id
      from public.sync_queue as r
      where r.entity_type = q.entity_type
        and r.entity_id = q.entity_id
        and r.status in ('unsupported', 'processing')
      order by r.created_at desc, r.id desc
      limit 1
  );
update public.sync_queue
set status = 'cancelled',
    completed_at = coalesce(completed_at, now()),
    error_message = 'superseded: rolled back below 30 while a newer item of the record was pending'
where status in ('unsupported', 'processing');

alter table public.sync_queue
    drop constraint sync_queue_in_flight_is_claimed;
alter table public.sync_queue
    drop constraint sync_queue_status_known;
alter table public.sync_queue
    add constraint sync_queue_status_known
        check (status in ('pending', 'processing', 'completed', 'error', 'cancelled', 'held'));

alter table public.sync_queue
    drop column sent_at,
    drop column claim_key;
