-- 22: indexes that no longer hold entries no query can use. Measured on PostgreSQL 15, first load of
-- 100k contacts, one loader: 37.4 -> 35.0 us of backend CPU per contact (bench notes in the commit).
-- * created_by / updated_by (every sync table; 13 added them for the RLS policies): the policies
--   compare them with auth.uid() (`created_by = (select auth.uid())`), which is never true for NULL,
--   and every row the Keap ingestion writes has NULL there. Partial on NOT NULL, the indexes skip
--   those rows; the planner still uses them for `created_by = x`, alone or OR-ed with updated_by
--   (an equality implies NOT NULL).
-- * idx_sync_contacts_sync_status (the request's): nearly every contact is 'completed', and a
--   query for the completed ones reads most of the table, where an index scan is slower than a
--   sequential one. Partial on the other states, it serves the lookups that need it
--   (`sync_status = 'pending'`, `in ('error', 'conflict')`) and skips every synced row.
-- Built without CONCURRENTLY, like 13 (a migration file is one transaction): each CREATE INDEX blocks
-- writes to its table while it builds, about a second per million contacts here; the partial
-- indexes are far smaller than the ones they replace.

drop index public.idx_sync_contacts_sync_status;
create index idx_sync_contacts_sync_status
    on public.sync_contacts (sync_status)
    where sync_status <> 'completed';

drop index public.idx_sync_contacts_created_by;
drop index public.idx_sync_contacts_updated_by;
drop index public.idx_sync_orders_created_by;
drop index public.idx_sync_orders_updated_by;
drop index public.idx_sync_tags_created_by;
drop index public.idx_sync_tags_updated_by;
drop index public.idx_sync_subscriptions_created_by;
drop index public.idx_sync_subscriptions_updated_by;
drop index public.idx_sync_products_created_by;
drop index public.idx_sync_products_updated_by;
create index idx_sync_contacts_created_by on public.sync_contacts (created_by) where created_by is not null;
create index idx_sync_contacts_updated_by on public.sync_contacts (updated_by) where updated_by is not null;
create index idx_sync_orders_created_by on public.sync_orders (created_by) where created_by is not null;
create index idx_sync_orders_updated_by on public.sync_orders (updated_by) where updated_by is not null;
create index idx_sync_tags_created_by on public.sync_tags (created_by) where created_by is not null;
create index idx_sync_tags_updated_by on public.sync_tags (updated_by) where updated_by is not null;
create index idx_sync_subscriptions_created_by on public.sync_subscriptions (created_by) where created_by is not null;
create index idx_sync_subscriptions_updated_by on public.sync_subscriptions (updated_by) where updated_by is not null;
create index idx_sync_products_created_by on public.sync_products (created_by) where created_by is not null;
create index idx_sync_products_updated_by on public.sync_products (updated_by) where updated_by is not null;
