-- Drop of 70: the templates (the functions they generated are 71's).
drop function if exists keap_pipeline.define_reconcile_entity(text, regclass, regclass);
drop function if exists keap_pipeline.define_sync_entity(text, regclass, regclass, regclass, text[], jsonb);
