-- Down of 22: the full indexes of 13 again.
drop index public.idx_sync_contacts_sync_status;
create index idx_sync_contacts_sync_status
    on public.sync_contacts (sync_status);

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
