-- Down of 17: drop the monitoring views.
drop view public.sync_open_conflicts;
drop view public.sync_queue_depth;
drop view public.sync_health;
