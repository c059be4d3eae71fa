-- The request's batch_upsert_contacts, kept as the benchmark's reference (row by row: one INSERT ...
-- ON CONFLICT per record inside an exception block). Installed by bench/bench_db_stage.py into its own
-- schema so it runs against the same public.sync_contacts (same triggers, indexes and audit) as ours.
-- Only what the benchmark needs was changed: schema-qualified names, and a valid entity type in the
-- error path (the request wrote 'sync_contacts' into sync_queue without an entity_id).
create schema if not exists bench_reference;

create or replace function bench_reference.batch_upsert_contacts(p_contacts jsonb[])
returns table (succeeded integer, failed integer, conflicts integer)
language plpgsql
as $$
declare
    v_succeeded integer := 0;
    v_failed integer := 0;
    v_conflicts integer := 0;
    v_contact jsonb;
begin
    foreach v_contact in array p_contacts
    loop
        begin
            insert into public.sync_contacts (
                keap_id, email, first_name, last_name, tags, custom_fields
            ) values (
                v_contact->>'keap_id',
                v_contact->>'email',
                v_contact->>'first_name',
                v_contact->>'last_name',
                v_contact->'tags',
                v_contact->'custom_fields'
            )
            on conflict (keap_id) do update set
                email = excluded.email,
                first_name = excluded.first_name,
                last_name = excluded.last_name,
                tags = excluded.tags,
                custom_fields = excluded.custom_fields,
                last_synced_at = now(),
                sync_status = 'completed';
            v_succeeded := v_succeeded + 1;
        exception
            when unique_violation then
                v_conflicts := v_conflicts + 1;
            when others then
                v_failed := v_failed + 1;
        end;
    end loop;
    return query select v_succeeded, v_failed, v_conflicts;
end;
$$;
