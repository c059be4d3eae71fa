-- Drop script of functions/80-contact-lookups.sql: `keap-pipeline rollback --to N` runs it for N below 31.
-- The key functions and the trigger function are dropped by 31's down script (31 created them).
drop function if exists public.recent_contacts(integer, timestamptz, uuid);
drop function if exists keap_pipeline.contacts_by_lookup_key(uuid, jsonb, integer, uuid);
drop function if exists public.contacts_by_custom_field(text, jsonb, integer, uuid);
drop function if exists public.contacts_with_tag(text, integer, uuid);
drop function if exists keap_pipeline.contact_reader();
drop function if exists keap_pipeline.check_page_limit(integer, text);
