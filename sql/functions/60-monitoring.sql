-- Monitoring views. All security_invoker = true: they run with the reader's rights, so RLS
-- applies (a view owned by postgres would otherwise show every row to whoever may read the view).
-- requires: 17
-- Repeatable (sql/functions/, see docs/operations.md "Schema changes"): edit in place. The text is
-- 17's. CREATE OR REPLACE VIEW can only add columns at the end; to drop or retype a column, drop the
-- view first in this file (`drop view if exists ...;` before its create).

-- sync_health, fixed: the request read sync_status, last_synced_at and created_at FROM sync_status,
-- a table that has none of the first two (it has last_sync_status, last_sync_at). Those columns are the
-- sync tables' own, so the view reads the sync tables (live rows only).
create or replace view public.sync_health
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

-- Outbound queue depth per entity and status, with the age of the oldest item.
create or replace view public.sync_queue_depth
with (security_invoker = true)
as
select
    q.entity_type,
    q.status,
    pg_catalog.count(*) as items,
    pg_catalog.min(q.scheduled_at) as oldest_scheduled_at,
    pg_catalog.max(q.attempts) as max_attempts_used
from public.sync_queue as q
group by q.entity_type, q.status;

-- Unresolved conflicts per entity.
create or replace view public.sync_open_conflicts
with (security_invoker = true)
as
select
    c.entity_type,
    pg_catalog.count(*) as open_conflicts,
    pg_catalog.min(c.detected_at) as oldest_detected_at
from public.sync_conflicts as c
where c.resolved_at is null
group by c.entity_type;

revoke all on public.sync_health, public.sync_queue_depth, public.sync_open_conflicts from anon, authenticated, service_role;
grant select on public.sync_health, public.sync_queue_depth, public.sync_open_conflicts to authenticated, service_role;
