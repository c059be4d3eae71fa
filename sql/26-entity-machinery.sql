-- 26: the tables every Keap entity's load needs beside contacts' (issue 11). The functions that load
-- them are generated from one template (sql/functions/70-entity-template.sql, 71-entities.sql).
-- * keap_hash on the four other sync tables (as 20 added it to sync_contacts): the fingerprint of the
--   Keap content last seen, so a re-sync or a full pass recognises unchanged records by key and hash.
--   A nullable column without a default: a catalog-only change, no rewrite of a live table.
-- * staging tables per entity (full rows, and keys for phase one), UNLOGGED like stage_contacts
--   (rows live only inside their loading transaction); columns as keap_pipeline.entities lists them.
-- * keap_pipeline.tag_categories: Keap's tag categories (id -> name). sync_tags.category is the
--   category's name (the request's column) and keap_category_id its id; a tag names its category by
--   id only, so the name is looked up here, by the tags run, set-based.
-- * sync_products.currency and sync_subscriptions.currency lose NOT NULL (deviation, docs/schema.md):
--   a product without a price has no currency, and a subscription carries no currency at all (it is its
--   product's); a default of 'USD' would be a guess. App inserts keep the default.
-- * sync_cursors.resume_after: for entities without a time filter (subscriptions), a run is a full
--   pass ordered by id; the last id committed lets a killed pass resume (NULL: start from the first).
-- * partial indexes over the rows whose Keap parent is not linked yet: linking them when the parent
--   arrives reads only those rows.

alter table public.sync_orders add column keap_hash uuid;
alter table public.sync_tags add column keap_hash uuid;
alter table public.sync_subscriptions add column keap_hash uuid;
alter table public.sync_products add column keap_hash uuid;

alter table public.sync_products alter column currency drop not null;
alter table public.sync_subscriptions alter column currency drop not null;

alter table keap_pipeline.sync_cursors add column resume_after text;
alter table keap_pipeline.sync_cursors
    add constraint sync_cursors_resume_after_is_digits check (resume_after ~ '^[0-9]{1,40}$');

create unlogged table keap_pipeline.stage_tags (
    batch_id uuid not null,
    ordinal integer not null,
    keap_id varchar(255) not null,
    name varchar(255) not null,
    description text,
    keap_category_id varchar(255),
    keap_updated_at timestamptz not null,
    content_hash uuid
);

create unlogged table keap_pipeline.stage_products (
    batch_id uuid not null,
    ordinal integer not null,
    keap_id varchar(255) not null,
    name varchar(255) not null,
    sku varchar(255),
    description text,
    price numeric(19, 4),
    currency varchar(3),
    active boolean,
    keap_updated_at timestamptz not null,
    content_hash uuid
);

create unlogged table keap_pipeline.stage_orders (
    batch_id uuid not null,
    ordinal integer not null,
    keap_id varchar(255) not null,
    keap_contact_id varchar(255),
    order_number varchar(255),
    order_date timestamptz not null,
    total_amount numeric(19, 4) not null,
    currency varchar(3) not null,
    status varchar(50) not null,
    line_items jsonb not null,
    shipping_address jsonb,
    billing_address jsonb,
    keap_updated_at timestamptz not null,
    content_hash uuid
);

create unlogged table keap_pipeline.stage_subscriptions (
    batch_id uuid not null,
    ordinal integer not null,
    keap_id varchar(255) not null,
    keap_contact_id varchar(255),
    keap_product_id varchar(255),
    keap_subscription_plan_id varchar(255),
    status varchar(50) not null,
    start_date date,
    end_date date,
    next_bill_date date,
    billing_cycle varchar(50),
    billing_frequency integer,
    amount numeric(19, 4),
    keap_updated_at timestamptz not null,
    content_hash uuid
);

do $stage$
declare
    v_entity text;
begin
    foreach v_entity in array array['tag', 'product', 'order', 'subscription'] loop
        execute pg_catalog.format(
            'create unlogged table keap_pipeline.%I (batch_id uuid not null, ordinal integer not null,'
            ' keap_id varchar(255) not null, keap_updated_at timestamptz not null, content_hash uuid)',
            'stage_' || v_entity || '_keys'
        );
        execute pg_catalog.format(
            'create index %I on keap_pipeline.%I (batch_id)', 'stage_' || v_entity || 's_batch_id_idx',
            'stage_' || v_entity || 's'
        );
        execute pg_catalog.format(
            'create index %I on keap_pipeline.%I (batch_id)', 'stage_' || v_entity || '_keys_batch_id_idx',
            'stage_' || v_entity || '_keys'
        );
        execute pg_catalog.format(
            'comment on table keap_pipeline.%I is %L', 'stage_' || v_entity || 's',
            'Transient COPY target of the ' || v_entity || 's loader; rows live only inside their loading transaction.'
        );
        execute pg_catalog.format(
            'comment on table keap_pipeline.%I is %L', 'stage_' || v_entity || '_keys',
            'Transient COPY target: keap_id, update time and content hash of a ' || v_entity || 's batch, for the diff.'
        );
        execute pg_catalog.format(
            'grant select, insert, delete on table keap_pipeline.%I, keap_pipeline.%I to keap_pipeline_ingest',
            'stage_' || v_entity || 's', 'stage_' || v_entity || '_keys'
        );
    end loop;
end
$stage$;

create table keap_pipeline.tag_categories (
    keap_id varchar(255) not null,
    name varchar(255) not null,
    description text,
    keap_updated_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint tag_categories_pkey
        primary key (keap_id)
);

comment on table keap_pipeline.tag_categories is
    'Keap''s tag categories (id -> name), loaded by the tags run; sync_tags.category is looked up here.';

-- internal like the others (16): RLS on, no policy but the ingestion's, no grants to the API roles
alter table keap_pipeline.tag_categories enable row level security;
grant select, insert, update on table keap_pipeline.tag_categories to keap_pipeline_ingest;
create policy ingestion_all on keap_pipeline.tag_categories
    for all to keap_pipeline_ingest using (true) with check (true);

create index idx_sync_orders_unlinked_contact
    on public.sync_orders (keap_contact_id)
    where contact_id is null and keap_contact_id is not null;
create index idx_sync_subscriptions_unlinked_contact
    on public.sync_subscriptions (keap_contact_id)
    where contact_id is null and keap_contact_id is not null;
create index idx_sync_subscriptions_unlinked_product
    on public.sync_subscriptions (keap_product_id)
    where product_id is null and keap_product_id is not null;
create index idx_sync_tags_unlinked_category
    on public.sync_tags (keap_category_id)
    where category is null and keap_category_id is not null;
