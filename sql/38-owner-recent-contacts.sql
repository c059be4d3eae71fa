-- 38: an app user's own recently updated contacts as one ordered index range (issue 16, part 1:
-- "recently updated active contacts" of an owner at p95 < 5 ms at 1M; docs/schema.md 88).
--
-- Through users_read (24, 34) an owner's page reads every row the owner has and sorts them (12-20 us a
-- row: 2,090 rows 23-46 ms; docs/schema.md 87); public.recent_contacts (sql/functions/80) plans the
-- owner's case on its own (created_by = auth.uid()) and reads this index in order, stopping after the
-- page. Partial on the rows an app user made (created_by is not null): an ingested contact has none,
-- so a load writes no entry of it.
create index idx_sync_contacts_own_recent
    on public.sync_contacts (created_by, updated_at desc, id desc)
    where created_by is not null
      and deleted_at is null
      and sync_status = 'completed';
