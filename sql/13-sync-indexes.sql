-- 13: secondary indexes (the request declared them inline, which PostgreSQL does not accept).
-- Not created, on purpose:
-- * idx_sync_contacts_keap_id: the UNIQUE constraint sync_contacts_keap_id_key already is a btree on
--   keap_id; a second one doubles the write cost for nothing (so for every table's keap_id).
-- * idx_sync_status_entity: the UNIQUE (entity_type, entity_id) constraint is that index already.
-- Fixed partial-index predicates:
-- * idx_sync_orders_date_status: `sync_status != 'completed'` also covered soft-deleted orders; the work
--   lists that use it read live, unfinished orders: `deleted_at is null and sync_status in (...)`.
-- * idx_sync_queue_status / idx_sync_queue_priority: workers only ever pick pending items, so the
--   indexes are partial on status = 'pending' (completed items would otherwise fill them forever).

-- sync_contacts
create index idx_sync_contacts_email
    on public.sync_contacts (email);
create index idx_sync_contacts_sync_status
    on public.sync_contacts (sync_status);
create index idx_sync_contacts_updated_at
    on public.sync_contacts (updated_at);
create index idx_sync_contacts_email_status
    on public.sync_contacts (email, sync_status)
    where deleted_at is null;
create index idx_active_contacts
    on public.sync_contacts (updated_at desc)
    where deleted_at is null
      and sync_status = 'completed';
-- jsonb_ops (the default) for tags: it serves `tags ? '123'` (key/element existence) and @>;
-- jsonb_path_ops for custom_fields: smaller and faster, and containment (@>) is how they are queried.
create index idx_contacts_tags
    on public.sync_contacts using gin (tags);
create index idx_contacts_custom
    on public.sync_contacts using gin (custom_fields jsonb_path_ops);

-- sync_orders
create index idx_sync_orders_contact_id
    on public.sync_orders (contact_id);
create index idx_sync_orders_order_date
    on public.sync_orders (order_date);
create index idx_sync_orders_status
    on public.sync_orders (status);
create index idx_sync_orders_date_status
    on public.sync_orders (order_date desc, sync_status)
    where deleted_at is null
      and sync_status in ('pending', 'error', 'conflict');
create index idx_sync_orders_keap_contact_id
    on public.sync_orders (keap_contact_id);

-- sync_subscriptions
create index idx_sync_subscriptions_contact_id
    on public.sync_subscriptions (contact_id);
create index idx_sync_subscriptions_status
    on public.sync_subscriptions (status);
create index idx_sync_subscriptions_product_id
    on public.sync_subscriptions (product_id);

-- sync_tags: name is no longer unique (see 10), but it is still how tags are looked up
create index idx_sync_tags_name
    on public.sync_tags (name);

-- The RLS policies filter on created_by / updated_by (see 16): without these, every API read of a
-- sync table is a sequential scan.
create index idx_sync_contacts_created_by on public.sync_contacts (created_by);
create index idx_sync_contacts_updated_by on public.sync_contacts (updated_by);
create index idx_sync_orders_created_by on public.sync_orders (created_by);
create index idx_sync_orders_updated_by on public.sync_orders (updated_by);
create index idx_sync_tags_created_by on public.sync_tags (created_by);
create index idx_sync_tags_updated_by on public.sync_tags (updated_by);
create index idx_sync_subscriptions_created_by on public.sync_subscriptions (created_by);
create index idx_sync_subscriptions_updated_by on public.sync_subscriptions (updated_by);
create index idx_sync_products_created_by on public.sync_products (created_by);
create index idx_sync_products_updated_by on public.sync_products (updated_by);

-- sync_status
create index idx_sync_status_last_sync
    on public.sync_status (last_sync_at);
create index idx_sync_status_retry
    on public.sync_status (next_retry_at)
    where next_retry_at is not null;

-- sync_conflicts
create index idx_sync_conflicts_entity
    on public.sync_conflicts (entity_type, entity_id);
create index idx_sync_conflicts_detected
    on public.sync_conflicts (detected_at);
create index idx_sync_conflicts_resolved
    on public.sync_conflicts (resolved_at);

-- sync_queue
create index idx_sync_queue_status
    on public.sync_queue (status, scheduled_at)
    where status = 'pending';
create index idx_sync_queue_priority
    on public.sync_queue (priority, scheduled_at)
    where status = 'pending';

-- sync_audit_log: created on the partitioned parent, so PostgreSQL creates them on every partition,
-- present and future (ATTACH PARTITION builds the missing ones).
create index idx_audit_entity
    on public.sync_audit_log (entity_type, entity_id, created_at);
-- kept as btree beside the BRIN below: "latest N changes" needs ordered reads, which BRIN cannot give.
create index idx_audit_created
    on public.sync_audit_log (created_at);
-- operation alone has three values and would never be chosen: paired with created_at it serves
-- "deletes in the last week".
create index idx_audit_operation
    on public.sync_audit_log (operation, created_at);
create index idx_audit_log_created
    on public.sync_audit_log using brin (created_at);
