-- Down of 29. The generated reconcile functions are dropped before this script runs, by
-- sql/functions/rollback/71-entities.sql (71 requires 29, so its drop script runs first in every
-- rollback below 29). Rows soft-deleted by reconcile passes stay soft-deleted (their audit rows tell
-- why); only the record of which rows Keap deleted goes.
drop table keap_pipeline.keap_deleted_rows;
drop table keap_pipeline.reconcile_pending_deletions;
drop table keap_pipeline.reconcile_passes;
drop table keap_pipeline.stage_contact_ids, keap_pipeline.stage_tag_ids, keap_pipeline.stage_product_ids,
    keap_pipeline.stage_order_ids, keap_pipeline.stage_subscription_ids;
