-- 32: sync_status stays in the publication supabase_realtime but with REPLICA IDENTITY DEFAULT, not
-- FULL (14, the request). A status row is one per record and every column of it is state: its new
-- record says all an admin's live view needs, and the old one (FULL's gift to UPDATE events) was
-- written to the WAL and decoded for every record every batch writes, in a re-sync most of all.
-- Subscribers now get UPDATE events of sync_status without old_record (its primary key only on
-- DELETE, which nothing does). sync_contacts and sync_conflicts keep FULL: their old records are
-- what a client diffs against. Measured: docs/benchmarks.md ("Realtime latency"); why and what a
-- client receives: docs/realtime.md.

alter table public.sync_status replica identity default;
