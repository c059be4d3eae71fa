-- Down of 33: drop the partial indexes of the soft-deleted parents.
drop index if exists public.idx_sync_products_deleted;
drop index if exists public.idx_sync_contacts_deleted;
