-- Down of 10: drop the tables in reverse dependency order. Dropping the partitioned audit table drops
-- all its partitions (the DEFAULT one and every month create_monthly_partition made).
drop table public.sync_audit_log;
drop table public.sync_queue;
drop table public.sync_conflicts;
drop table public.sync_status;
drop table public.sync_subscriptions;
drop table public.sync_tags;
drop table public.sync_orders;
drop table public.sync_products;
drop table public.sync_contacts;
drop table keap_pipeline.settings;
