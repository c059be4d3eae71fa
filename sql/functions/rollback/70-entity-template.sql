-- Drop of 70: the template (the functions it generated are 71's).
drop function if exists keap_pipeline.define_sync_entity(text, regclass, regclass, regclass, text[], jsonb);
