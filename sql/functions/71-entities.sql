-- requires: 29
-- Every Keap entity's loading and reconcile functions, generated from the templates in 70
-- (keap_pipeline.entities in Python lists the same tables, merge fields and links; tests/db/test_entity_functions.py checks that
-- the two agree). An entity is one call here: its tables, the fields a person may change on either
-- side (merged, compared, shown in sync_conflicts), and the columns filled from a parent table; and one
-- call for its reconcile pass (deletions in Keap, issue 13): its table and the ids table a pass fills.
-- Requires 29 (the ids tables and the pass's records the reconcile functions use): rolling back below 29
-- drops every generated function here, and the next migrate generates them again.

select keap_pipeline.define_sync_entity(
    'contacts', 'public.sync_contacts', 'keap_pipeline.stage_contacts', 'keap_pipeline.stage_contact_keys',
    array['email', 'first_name', 'last_name', 'phone', 'company', 'tags', 'custom_fields']
);

select keap_pipeline.define_sync_entity(
    'tags', 'public.sync_tags', 'keap_pipeline.stage_tags', 'keap_pipeline.stage_tag_keys',
    array['name', 'description'],
    '[{"keap_column": "keap_category_id", "parent_table": "keap_pipeline.tag_categories",
       "parent_key": "keap_id", "columns": [["category", "name"]]}]'
);

select keap_pipeline.define_sync_entity(
    'products', 'public.sync_products', 'keap_pipeline.stage_products', 'keap_pipeline.stage_product_keys',
    array['name', 'sku', 'description', 'price', 'currency', 'active']
);

select keap_pipeline.define_sync_entity(
    'orders', 'public.sync_orders', 'keap_pipeline.stage_orders', 'keap_pipeline.stage_order_keys',
    array['order_number', 'order_date', 'total_amount', 'currency', 'status', 'line_items',
          'shipping_address', 'billing_address'],
    '[{"keap_column": "keap_contact_id", "parent_table": "public.sync_contacts",
       "parent_key": "keap_id", "columns": [["contact_id", "id"]]}]'
);

select keap_pipeline.define_sync_entity(
    'subscriptions', 'public.sync_subscriptions', 'keap_pipeline.stage_subscriptions',
    'keap_pipeline.stage_subscription_keys',
    array['status', 'start_date', 'end_date', 'next_bill_date', 'billing_cycle', 'billing_frequency', 'amount'],
    '[{"keap_column": "keap_contact_id", "parent_table": "public.sync_contacts",
       "parent_key": "keap_id", "columns": [["contact_id", "id"]]},
      {"keap_column": "keap_product_id", "parent_table": "public.sync_products",
       "parent_key": "keap_id", "columns": [["product_id", "id"], ["product_name", "name"], ["currency", "currency"]]}]'
);

-- deletions in Keap: the reconcile pass of each entity (define_reconcile_entity in 70)
select keap_pipeline.define_reconcile_entity('contacts', 'public.sync_contacts', 'keap_pipeline.stage_contact_ids');
select keap_pipeline.define_reconcile_entity('tags', 'public.sync_tags', 'keap_pipeline.stage_tag_ids');
select keap_pipeline.define_reconcile_entity('products', 'public.sync_products', 'keap_pipeline.stage_product_ids');
select keap_pipeline.define_reconcile_entity('orders', 'public.sync_orders', 'keap_pipeline.stage_order_ids');
select keap_pipeline.define_reconcile_entity(
    'subscriptions', 'public.sync_subscriptions', 'keap_pipeline.stage_subscription_ids'
);
