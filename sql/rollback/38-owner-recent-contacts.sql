-- Down of 38: the owner's page index (public.recent_contacts still works without it, reading the
-- owner's rows through idx_sync_contacts_created_by and sorting them).
drop index if exists public.idx_sync_contacts_own_recent;
