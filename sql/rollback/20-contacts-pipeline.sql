-- Down of 20: drop what 20 created, restore what it changed.
drop trigger sync_conflicts_release_held on public.sync_conflicts;
drop function keap_pipeline.release_held_outbound();
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

-- Held items are unsent local changes: under the old vocabulary they are pending, unless the record
-- already has a pending item (one pending item per record), which supersedes them.
update public.sync_queue as q
set status = case
        when exists (
            select 1
            from public.sync_queue as p
            where p.entity_type = q.entity_type
              and p.entity_id = q.entity_id
              and p.status = 'pending'
        ) then 'completed'
        else 'pending'
    end
where q.status = 'held';

alter table public.sync_queue
    drop constraint sync_queue_status_known;

alter table public.sync_queue
    add constraint sync_queue_status_known
        check (status in ('pending', 'processing', 'completed', 'error'));

alter table public.sync_contacts
    drop column keap_hash;

alter table public.sync_contacts
    drop column keap_created_at;
