-- Drop of 71 (rolling back below 26): the generated functions of the entities 26 added, and every
-- entity's link resolver. upsert_contacts_from_stage and diff_contacts_from_stage stay: versioned
-- migration 20 created them and its down script drops them; until then the generated text (same
-- signature, same behaviour as 24's) serves the older versions, and 24's down script puts 21's back.
drop function if exists keap_pipeline.upsert_tags_from_stage(uuid, text, text);
drop function if exists keap_pipeline.upsert_products_from_stage(uuid, text, text);
drop function if exists keap_pipeline.upsert_orders_from_stage(uuid, text, text);
drop function if exists keap_pipeline.upsert_subscriptions_from_stage(uuid, text, text);
drop function if exists keap_pipeline.diff_tags_from_stage(uuid);
drop function if exists keap_pipeline.diff_products_from_stage(uuid);
drop function if exists keap_pipeline.diff_orders_from_stage(uuid);
drop function if exists keap_pipeline.diff_subscriptions_from_stage(uuid);
drop function if exists keap_pipeline.resolve_contacts_links();
drop function if exists keap_pipeline.resolve_tags_links();
drop function if exists keap_pipeline.resolve_products_links();
drop function if exists keap_pipeline.resolve_orders_links();
drop function if exists keap_pipeline.resolve_subscriptions_links();
