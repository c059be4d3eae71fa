-- Down of 32: sync_status logs its whole old row again (14's REPLICA IDENTITY FULL).
alter table public.sync_status replica identity full;
