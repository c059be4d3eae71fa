-- 36: the outbound pusher's claim as a HOT update (issue 16, part 1: sync_queue's next batch, p95 < 5 ms).
--
-- keap_pipeline.claim_outbound (sql/functions/81) sets claim_key and started_at on up to 100 pending
-- items. started_at was a key column of sync_queue_in_flight_idx (30), and PostgreSQL 15 makes an update
-- HOT (no new index entries) only when no indexed column changes, a partial index's predicate columns
-- included, and the new row version fits on its page: every claimed item got a new entry in the primary
-- key, sync_queue_pending_entity_key (a unique check), idx_sync_queue_priority and
-- sync_queue_unsent_entity_idx, and went to another page (the table's pages were full).
-- * sync_queue_in_flight_idx is (entity_type) where status = 'processing': the claim looks for in-flight
--   items of dead pushers by entity type and sorts the few it finds by started_at itself (a batch of a
--   pusher at most, per live pusher); nothing else reads the index in started_at order.
-- * fillfactor 50: a queue item is written once and then updated three times (claim, in flight, done);
--   the room lets the claim's new versions stay on their page (HOT). A claim takes the items of a page
--   all at once (the queue is filled in time order and claimed in that order), and an item is ~1 kB
--   here (its payload is the record): at 70 only 43% of a claim's versions fitted, at 50 99% (measured,
--   docs/schema.md 86). The price: the table is twice the size of its rows. Pages written before 36 keep
--   no room until they are rewritten (VACUUM FULL public.sync_queue, optional; new items land on new
--   pages anyway).
-- docs/schema.md (86) and docs/benchmarks.md ("The outbound claim") have the figures.
drop index public.sync_queue_in_flight_idx;
create index sync_queue_in_flight_idx
    on public.sync_queue (entity_type)
    where status = 'processing';

alter table public.sync_queue set (fillfactor = 50);
