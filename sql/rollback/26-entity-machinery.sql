-- Down of 26. The generated functions of the four entities are dropped before this script runs, by
-- sql/functions/rollback/71-entities.sql (rollback runs the drop scripts of repeatable files requiring 26 first).

drop index public.idx_sync_orders_unlinked_contact;
drop index public.idx_sync_subscriptions_unlinked_contact;
drop index public.idx_sync_subscriptions_unlinked_product;
drop index public.idx_sync_tags_unlinked_category;

drop table keap_pipeline.tag_categories;
drop table keap_pipeline.stage_tags, keap_pipeline.stage_tag_keys;
drop table keap_pipeline.stage_products, keap_pipeline.stage_product_keys;
drop table keap_pipeline.stage_orders, keap_pipeline.stage_order_keys;
drop table keap_pipeline.stage_subscriptions, keap_pipeline.stage_subscription_keys;

alter table keap_pipeline.sync_cursors drop constraint sync_cursors_resume_after_is_digits;
alter table keap_pipeline.sync_cursors drop column resume_after;

-- rows without a currency cannot go back under NOT NULL, and inventing one would mangle them: refuse
do $refuse$
begin
    if exists (select 1 from public.sync_products where currency is null)
       or exists (select 1 from public.sync_subscriptions where currency is null) then
        raise exception 'cannot roll back 26: sync_products or sync_subscriptions hold rows without a currency'
            using hint = 'Set their currency (or delete them) first; 25 and earlier require one.';
    end if;
end
$refuse$;
alter table public.sync_products alter column currency set not null;
alter table public.sync_subscriptions alter column currency set not null;

alter table public.sync_orders drop column keap_hash;
alter table public.sync_tags drop column keap_hash;
alter table public.sync_subscriptions drop column keap_hash;
alter table public.sync_products drop column keap_hash;
