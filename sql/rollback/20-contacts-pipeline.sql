-- Down of 20: drop what 20 created, restore what it changed.
drop function public.batch_upsert_contacts(jsonb[]);
drop function keap_pipeline.upsert_contacts_from_stage(uuid, text, text);
drop function keap_pipeline.describe_conflict(text, uuid, jsonb, jsonb, text, text);
drop function keap_pipeline.merge_fields(jsonb, jsonb, jsonb, text);
drop function keap_pipeline.diff_contacts_from_stage(uuid);
drop table keap_pipeline.dead_letters;
drop table keap_pipeline.sync_cursors;
drop table keap_pipeline.stage_contacts;
drop table keap_pipeline.stage_contact_keys;
drop index public.sync_queue_unsent_entity_idx;

-- Items cancelled by keap_wins cannot stay 'cancelled' under the old constraint; they were superseded,
-- which the old vocabulary can only call completed (the error_message keeps why).
update public.sync_queue
set status = 'completed'
where status = 'cancelled';

alter table public.sync_queue
    drop constraint sync_queue_status_known;

alter table public.sync_queue
    add constraint sync_queue_status_known
        check (status in ('pending', 'processing', 'completed', 'error'));

alter table public.sync_contacts
    drop column keap_hash;

alter table public.sync_contacts
    drop column keap_created_at;
