-- 33: partial indexes on the soft-deleted rows of the parents sync_health's linked_to_deleted_parent
-- reads (sql/functions/60): the view scanned every contact and product for their few deleted rows
-- (363 ms at 1M contacts on a busy PostgreSQL 15); with these it reads only the deleted ones (0.6 ms,
-- measured by the deletions work of issue 13). Ingested and live rows are not in them: no write cost
-- on a load, one entry per soft delete.
create index if not exists idx_sync_contacts_deleted on public.sync_contacts (id) where deleted_at is not null;
create index if not exists idx_sync_products_deleted on public.sync_products (id) where deleted_at is not null;
