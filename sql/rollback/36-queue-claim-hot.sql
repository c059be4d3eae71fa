-- Down of 36: 30's in-flight index (entity_type, started_at) and the default fillfactor (pages written
-- with room keep it until they are rewritten; nothing depends on it).
alter table public.sync_queue reset (fillfactor);

drop index public.sync_queue_in_flight_idx;
create index sync_queue_in_flight_idx
    on public.sync_queue (entity_type, started_at)
    where status = 'processing';
