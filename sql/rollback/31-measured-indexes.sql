-- Down script of 31: the indexes of 13 and 22 as they were, the lookup table, its triggers and functions gone.
create index idx_sync_queue_status
    on public.sync_queue (status, scheduled_at)
    where status = 'pending';
create index idx_sync_orders_status
    on public.sync_orders (status);
create index idx_sync_tags_name
    on public.sync_tags (name);

drop index public.idx_sync_conflicts_open;
create index idx_sync_conflicts_detected
    on public.sync_conflicts (detected_at);
create index idx_sync_conflicts_resolved
    on public.sync_conflicts (resolved_at);

create index idx_audit_log_created
    on public.sync_audit_log using brin (created_at);

drop index public.idx_sync_orders_date_status;
create index idx_sync_orders_date_status
    on public.sync_orders (order_date desc, sync_status)
    where deleted_at is null
      and sync_status in ('pending', 'error', 'conflict');

create index idx_sync_contacts_updated_at
    on public.sync_contacts (updated_at);

drop index public.idx_sync_contacts_sync_status;
create index idx_sync_contacts_sync_status
    on public.sync_contacts (sync_status)
    where sync_status <> 'completed';

create index idx_contacts_tags
    on public.sync_contacts using gin (tags);
create index idx_contacts_custom
    on public.sync_contacts using gin (custom_fields jsonb_path_ops);

drop trigger sync_contacts_lookup_delete on public.sync_contacts;
drop trigger sync_contacts_lookup_update on public.sync_contacts;
drop trigger sync_contacts_lookup_insert on public.sync_contacts;
drop function keap_pipeline.maintain_contact_lookup();
drop function keap_pipeline.contact_lookup_keys(jsonb, jsonb);
drop function keap_pipeline.contact_lookup_key(text, text, jsonb);
drop table keap_pipeline.contact_lookup;
