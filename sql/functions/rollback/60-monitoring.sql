-- Drop script of functions/60-monitoring.sql: `keap-pipeline rollback --to N` runs it for N below 28.
-- What the file defines beyond the versioned migrations goes (the compaction), and sync_health gets
-- back the text 17 gave it (it reads the sync tables), so that 28's down script can drop the
-- counters. The counting functions, sync_queue_depth and sync_open_conflicts are the versioned
-- files' (28, 17), whose down scripts drop them; until then they keep this file's text.
drop function if exists keap_pipeline.compact_sync_health_counters();

drop view if exists public.sync_health;
-- sync_health, fixed: the request read sync_status, last_synced_at and created_at FROM sync_status,
-- a table that has none of the first two (it has last_sync_status, last_sync_at). Those columns are the
-- sync tables' own, so the view reads the sync tables (live rows only).
create view public.sync_health
with (security_invoker = true)
as
select
    r.entity_type,
    pg_catalog.count(*) as total_records,
    pg_catalog.count(*) filter (where r.sync_status = 'completed') as synced,
    pg_catalog.count(*) filter (where r.sync_status = 'error') as errors,
    pg_catalog.count(*) filter (where r.sync_status = 'conflict') as conflicts,
    pg_catalog.count(*) filter (where r.sync_status = 'pending') as pending,
    pg_catalog.avg(extract(epoch from (r.last_synced_at - r.created_at))) as avg_sync_time,
    pg_catalog.max(r.last_synced_at) as last_synced_at
from (
    select 'sync_contacts'::varchar(50) as entity_type, c.sync_status, c.last_synced_at, c.created_at
    from public.sync_contacts as c
    where c.deleted_at is null
    union all
    select 'sync_orders', o.sync_status, o.last_synced_at, o.created_at
    from public.sync_orders as o
    where o.deleted_at is null
    union all
    select 'sync_tags', t.sync_status, t.last_synced_at, t.created_at
    from public.sync_tags as t
    where t.deleted_at is null
    union all
    select 'sync_subscriptions', s.sync_status, s.last_synced_at, s.created_at
    from public.sync_subscriptions as s
    where s.deleted_at is null
    union all
    select 'sync_products', p.sync_status, p.last_synced_at, p.created_at
    from public.sync_products as p
    where p.deleted_at is null
) as r
group by r.entity_type;

revoke all on public.sync_health from anon, authenticated, service_role;
grant select on public.sync_health to authenticated, service_role;
