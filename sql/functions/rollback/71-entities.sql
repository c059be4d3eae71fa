-- Drop of 71 (rolling back below 29, which 71 requires): every entity's reconcile functions, the
-- generated functions of the entities 26 added, and every entity's link resolver. The next migrate
-- generates them again. upsert_contacts_from_stage and diff_contacts_from_stage stay: versioned
-- migration 20 created them and its down script drops them; until then the generated text (same
-- signature, same behaviour as 24's) serves the older versions, and 24's down script puts 21's back.
drop function if exists keap_pipeline.reconcile_contacts_from_stage(uuid, timestamptz, timestamptz, numeric, bigint, bigint);
drop function if exists keap_pipeline.reconcile_contacts_from_stage(uuid, timestamptz, timestamptz, numeric, bigint);
drop function if exists keap_pipeline.reconcile_tags_from_stage(uuid, timestamptz, timestamptz, numeric, bigint, bigint);
drop function if exists keap_pipeline.reconcile_tags_from_stage(uuid, timestamptz, timestamptz, numeric, bigint);
drop function if exists keap_pipeline.reconcile_products_from_stage(uuid, timestamptz, timestamptz, numeric, bigint, bigint);
drop function if exists keap_pipeline.reconcile_products_from_stage(uuid, timestamptz, timestamptz, numeric, bigint);
drop function if exists keap_pipeline.reconcile_orders_from_stage(uuid, timestamptz, timestamptz, numeric, bigint, bigint);
drop function if exists keap_pipeline.reconcile_orders_from_stage(uuid, timestamptz, timestamptz, numeric, bigint);
drop function if exists keap_pipeline.reconcile_subscriptions_from_stage(uuid, timestamptz, timestamptz, numeric, bigint, bigint);
drop function if exists keap_pipeline.reconcile_subscriptions_from_stage(uuid, timestamptz, timestamptz, numeric, bigint);
drop function if exists keap_pipeline.apply_contacts_deletions(uuid, timestamptz, timestamptz, bigint);
drop function if exists keap_pipeline.apply_contacts_deletions(uuid, timestamptz, timestamptz);
drop function if exists keap_pipeline.apply_tags_deletions(uuid, timestamptz, timestamptz, bigint);
drop function if exists keap_pipeline.apply_tags_deletions(uuid, timestamptz, timestamptz);
drop function if exists keap_pipeline.apply_products_deletions(uuid, timestamptz, timestamptz, bigint);
drop function if exists keap_pipeline.apply_products_deletions(uuid, timestamptz, timestamptz);
drop function if exists keap_pipeline.apply_orders_deletions(uuid, timestamptz, timestamptz, bigint);
drop function if exists keap_pipeline.apply_orders_deletions(uuid, timestamptz, timestamptz);
drop function if exists keap_pipeline.apply_subscriptions_deletions(uuid, timestamptz, timestamptz, bigint);
drop function if exists keap_pipeline.apply_subscriptions_deletions(uuid, timestamptz, timestamptz);
drop function if exists keap_pipeline.missing_contacts_from_stage(timestamptz, timestamptz);
drop function if exists keap_pipeline.missing_tags_from_stage(timestamptz, timestamptz);
drop function if exists keap_pipeline.missing_products_from_stage(timestamptz, timestamptz);
drop function if exists keap_pipeline.missing_orders_from_stage(timestamptz, timestamptz);
drop function if exists keap_pipeline.missing_subscriptions_from_stage(timestamptz, timestamptz);
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
