-- The data of bench/bench_indexes.py: a migrated database filled with generate_series, not through the
-- pipeline (the bench measures queries, not the load). Run by the bench in one session, after
-- `select setseed(...)`, with max_parallel_workers_per_gather = 0 (so random() is one reproducible
-- stream) and session_replication_role = replica (no triggers and no foreign-key checks while loading:
-- the audit rows, queue items and sync_status rows the triggers would write are generated here, as
-- they would be after a year of syncing). Sizes come from two settings:
--   bench.contacts  contacts (and orders: the same number)      bench.now  the instant "now" is
--
-- The shape, and the skew that matters for the indexes:
-- * 502 users: 2 admins (app_metadata.role = admin), 500 owners. 8% of contacts were made in the app by
--   an owner (created_by set, source 'supabase'); owners' shares follow random()^2.5: the first owner
--   holds ~8% of the app-made contacts, the median owner a few dozen. The rest came from Keap
--   (created_by NULL). Keap ids are the contact's number; contacts made in the app and not yet pushed
--   (pending) have none.
-- * The first load: contacts created in Keap before it (two thirds) were all inserted at once, 400 days
--   ago; later ones arrived one by one after their Keap creation. ids are UUIDv7 of the insert time, so
--   the table is in insert order, as on a real server.
-- * email: 96% have one, 0.5% share it with the contact before; 2,000 tag ids, tags per contact ~
--   exponential (25% none, mean ~3, at most 40), which tag by a log-uniform draw (Zipf s=1: the first tag
--   is on ~25% of contacts, most tags on a few hundred); 12 custom fields: a lead source of 30 values
--   (Zipf), a tier (bronze 60% .. platinum 3%), a score, a region of 60 values, a date, a unique customer
--   number (25% of contacts), a boolean, and five rare free-text fields.
-- * sync_status: 96% completed, 2.5% pending, 1% error, 0.5% conflict; 3% soft-deleted; 30% updated
--   since they were created, most of them recently.
-- * orders: one per contact on average, by random()^2 over a scrambled contact order (the top contact
--   has ~1,000 orders, half the contacts none); order dates over five years, more recent ones; statuses
--   PAID 62%, SENT 16%, VIEWED 12%, DRAFT 10%; 3% of orders name a Keap contact not loaded (unlinked).
-- * subscriptions (10% of contacts' number) over 300 products, tags 2,000 in 40 categories.
-- * sync_status: one row per record (the ingestion writes it). Audit log: one INSERT row per record (its
--   full row, as the trigger writes it) and one UPDATE row (old and new rows) per update, in monthly
--   partitions over the last 14 months; 0.1% hard deletes by service_role. Queue: one pending item per
--   app-made record still pending or changed locally, and ~25% of the contacts' number of past items
--   (completed, error, cancelled, held, processing). Conflicts: one open per record in 'conflict', and
--   four times as many resolved ones.

-- step: helpers
create schema bench;

-- UUIDv7 of a given instant (the layout of keap_pipeline.uuid_v7(), whose clock is now)
create function bench.uuid_at(p_at timestamptz)
returns uuid
language sql
volatile
as $$
    select encode(
        set_bit(
            set_bit(
                overlay(
                    uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(date_part('epoch', p_at) * 1000)::bigint) from 3)
                    from 1 for 6
                ),
                52, 1
            ),
            53, 1
        ),
        'hex'
    )::uuid
$$;

create function bench.user_id(p_n integer)
returns uuid
language sql
immutable
as $$
    select ('00000000-0000-4000-8000-' || lpad(to_hex(p_n), 12, '0'))::uuid
$$;

create table bench.settings as
select
    current_setting('bench.contacts')::integer as n,
    current_setting('bench.now')::timestamptz as now,
    current_setting('bench.now')::timestamptz - interval '400 days' as first_load;

-- step: users
insert into auth.users (id, email, raw_app_meta_data, raw_user_meta_data)
select bench.user_id(u), 'user' || u || '@bench.example',
       case when u <= 2 then '{"provider": "email", "role": "admin"}' else '{"provider": "email"}' end::jsonb,
       '{}'::jsonb
from generate_series(1, 502) as u;
-- users without rows (deleting one measures the foreign keys' lookups alone)
insert into auth.users (id, email, raw_app_meta_data, raw_user_meta_data)
select bench.user_id(u), 'user' || u || '@bench.example', '{"provider": "email"}'::jsonb, '{}'::jsonb
from generate_series(601, 700) as u;

-- ---------------------------------------------------------------------------------------------
-- contacts
-- ---------------------------------------------------------------------------------------------
-- step: contacts
create table bench.contacts_raw as
with base as (
    select
        i,
        -- Keap creation over six years, denser towards now
        s.now - interval '6 years' + interval '6 years' * sqrt(i::double precision / s.n) as keap_created_at,
        random() as r_origin,
        random() as r_status,
        random() as r_update,
        random() as r_delete,
        s.now,
        s.first_load,
        s.n
    from bench.settings as s
    cross join generate_series(1, (select n from bench.settings)) as i
),
placed as (
    select
        b.*,
        b.keap_created_at > b.first_load and b.r_origin < 0.24 as app_made,
        case
            when b.keap_created_at <= b.first_load then b.first_load + interval '0.3 ms' * b.i
            else b.keap_created_at + interval '1 minute' * (1 + 9 * random())
        end as created_at
    from base as b
)
select
    p.i,
    p.app_made,
    p.created_at,
    p.keap_created_at,
    case
        when p.app_made then 3 + floor(500 * power(random(), 2.5))::integer
    end as owner,
    case
        when p.r_status < 0.96 then 'completed'
        when p.r_status < 0.985 then 'pending'
        when p.r_status < 0.995 then 'error'
        else 'conflict'
    end as sync_status,
    case
        when p.r_update < 0.30
            then p.created_at + (p.now - p.created_at) * power(random(), 0.3)
    end as changed_at,
    case
        when p.r_delete < 0.03 then p.created_at + (p.now - p.created_at) * random()
    end as deleted_at
from placed as p;

insert into public.sync_contacts (
    id, keap_id, email, first_name, last_name, phone, company, tags, custom_fields, source_system,
    keap_updated_at, last_synced_at, sync_status, sync_error, version, created_at, updated_at,
    created_by, updated_by, deleted_at, deleted_by, keap_created_at, keap_hash
)
select
    bench.uuid_at(r.created_at),
    case when not (r.app_made and r.sync_status = 'pending') then r.i::text end,
    case
        when r.i % 25 = 0 then null
        when r.i % 200 = 1 and r.i > 1 then 'c' || (r.i - 1) || '@d' || ((r.i - 1) % 300) || '.example'
        else 'c' || r.i || '@d' || (r.i % 300) || '.example'
    end,
    (array['Ana', 'Ben', 'Cleo', 'Dan', 'Eva', 'Finn', 'Gia', 'Hugo', 'Ines', 'Jon', 'Kai', 'Lea', 'Max', 'Nia',
           'Omar', 'Pia', 'Quinn', 'Rosa', 'Sam', 'Tara'])[1 + r.i % 20],
    (array['Smith', 'Jones', 'Garcia', 'Chen', 'Khan', 'Novak', 'Silva', 'Kim', 'Rossi', 'Meyer', 'Dubois',
           'Singh', 'Sato', 'Olsen', 'Costa', 'Ivanov', 'Haddad', 'Moreau', 'Lopez', 'Brown'])[1 + (r.i / 20) % 20],
    case when random() < 0.6 then '+1555' || lpad((r.i % 10000000)::text, 7, '0') end,
    case when random() < 0.4 then 'Company ' || floor(random() * 20000)::integer end,
    (
        select coalesce(jsonb_agg(distinct t.tag::text), '[]'::jsonb)
        from (
            select floor(exp(random() * ln(2001)))::integer as tag
            from generate_series(1, least(40, floor(-ln(1 - random()) * 3.5)::integer + r.i * 0))
        ) as t
    ),
    jsonb_strip_nulls(jsonb_build_object(
        '1', case when random() < 0.85 then
                 (array['Google Ads', 'Referral', 'Webinar', 'Facebook', 'Trade show', 'Newsletter', 'Organic',
                        'Partner', 'LinkedIn', 'Cold call'] || array(select 'Campaign ' || g from generate_series(11, 30) as g))
                 [floor(exp(random() * ln(31)))::integer]
             end,
        '2', case when random() < 0.6 then
                 (array['bronze', 'silver', 'gold', 'platinum'])[1 + width_bucket(random(), array[0.60, 0.85, 0.97])]
             end,
        '3', case when random() < 0.5 then to_jsonb(floor(random() * 101)::integer) end,
        '4', case when random() < 0.7 then to_jsonb('Region ' || floor(exp(random() * ln(61)))::integer) end,
        '5', case when random() < 0.3 then to_jsonb(to_char(r.keap_created_at - interval '1 day' * floor(random() * 9000), 'YYYY-MM-DD')) end,
        '6', case when random() < 0.25 then to_jsonb('CUST-' || r.i) end,
        '7', case when random() < 0.5 then to_jsonb(random() < 0.7) end,
        '8', case when random() < 0.05 then to_jsonb('note ' || floor(random() * 1000)::integer) end,
        '9', case when random() < 0.05 then to_jsonb('note ' || floor(random() * 1000)::integer) end,
        '10', case when random() < 0.05 then to_jsonb('note ' || floor(random() * 1000)::integer) end,
        '11', case when random() < 0.05 then to_jsonb('note ' || floor(random() * 1000)::integer) end,
        '12', case when random() < 0.05 then to_jsonb('note ' || floor(random() * 1000)::integer) end
    )),
    case when r.app_made then 'supabase' else 'keap' end,
    coalesce(r.changed_at, r.keap_created_at),
    case when r.sync_status <> 'pending' then coalesce(r.changed_at, r.created_at) + interval '2 seconds' end,
    r.sync_status,
    case r.sync_status
        when 'error' then 'Keap API 400 on update: email is not a valid address'
        when 'conflict' then 'changed in Keap and locally since the last sync; resolve the open sync_conflicts row'
    end,
    1 + case when r.changed_at is not null then 1 + floor(random() * 4)::integer else 0 end
      + case when r.deleted_at is not null then 1 else 0 end,
    r.created_at,
    greatest(coalesce(r.changed_at, r.created_at), coalesce(r.deleted_at, r.created_at)),
    bench.user_id(r.owner),
    case when r.app_made and (r.changed_at is not null or r.deleted_at is not null) then bench.user_id(r.owner) end,
    r.deleted_at,
    case when r.app_made and r.deleted_at is not null then bench.user_id(r.owner) end,
    r.keap_created_at,
    md5(r.i::text || coalesce(r.changed_at::text, ''))::uuid
from bench.contacts_raw as r
order by r.created_at;

-- ---------------------------------------------------------------------------------------------
-- products, tags, categories, orders, subscriptions
-- ---------------------------------------------------------------------------------------------
-- step: tags and products
insert into keap_pipeline.tag_categories (keap_id, name, description, keap_updated_at)
select k::text, 'Category ' || k, null, s.first_load
from bench.settings as s
cross join generate_series(1, 40) as k;

insert into public.sync_tags (
    id, keap_id, name, category, keap_category_id, description, color, keap_updated_at, last_synced_at,
    sync_status, created_at, updated_at, created_by
)
select bench.uuid_at(s.first_load), k::text, 'Tag ' || (k % 1500), 'Category ' || (k % 40 + 1),
       case when k % 100 = 0 then '999' else (k % 40 + 1)::text end, null, null, s.first_load, s.first_load,
       'completed', s.first_load, s.first_load, null
from bench.settings as s
cross join generate_series(1, 2000) as k;
update public.sync_tags set category = null where keap_category_id = '999';

insert into public.sync_products (
    id, keap_id, name, sku, description, price, currency, active, keap_updated_at, last_synced_at,
    sync_status, created_at, updated_at, created_by
)
select bench.uuid_at(s.first_load), k::text, 'Product ' || k, 'SKU-' || k, null, (5 + k % 200)::numeric,
       'USD', k % 10 <> 0, s.first_load, s.first_load, 'completed', s.first_load, s.first_load, null
from bench.settings as s
cross join generate_series(1, 300) as k;

-- step: orders
create table bench.orders_raw as
select
    j,
    -- a contact by random()^2 (a few contacts with many orders), scrambled over the id space
    1 + ((floor(s.n * power(random(), 2))::bigint * 7919) % s.n)::integer as contact_no,
    random() < 0.03 as unlinked,
    s.now - interval '5 years' + interval '5 years' * sqrt(random()) as order_date,
    random() as r_status,
    random() as r_sync,
    random() as r_update,
    s.first_load,
    s.now
from bench.settings as s
cross join generate_series(1, (select n from bench.settings)) as j;

insert into public.sync_orders (
    id, keap_id, contact_id, keap_contact_id, order_number, order_date, total_amount, currency, status,
    line_items, shipping_address, billing_address, keap_updated_at, last_synced_at, sync_status, sync_error,
    version, created_at, updated_at, created_by, deleted_at, keap_hash
)
select
    bench.uuid_at(o.created_at),
    o.j::text,
    case when not o.unlinked then c.id end,
    case when o.unlinked then (o.contact_no + 5000000)::text else o.contact_no::text end,
    'INV-' || o.j,
    o.order_date,
    round(exp(random() * 7)::numeric, 2),
    (array['USD', 'EUR', 'GBP', 'CAD'])[1 + width_bucket(random(), array[0.88, 0.94, 0.98])],
    case when o.r_status < 0.62 then 'PAID' when o.r_status < 0.78 then 'SENT'
         when o.r_status < 0.90 then 'VIEWED' else 'DRAFT' end,
    jsonb_build_array(jsonb_build_object(
        'product_id', (1 + floor(random() * 300))::integer::text, 'quantity', 1 + floor(random() * 3)::integer,
        'price', jsonb_build_object('amount', floor(random() * 20000)::integer, 'currency', 'USD'))),
    case when random() < 0.6 then jsonb_build_object(
        'address', jsonb_build_object('line1', o.j || ' Main St', 'locality', 'Springfield', 'country_code', 'USA'),
        'first_name', 'Ana', 'last_name', 'Smith') end,
    null,
    coalesce(o.changed_at, o.order_date),
    case when o.sync_status <> 'pending' then coalesce(o.changed_at, o.created_at) + interval '2 seconds' end,
    o.sync_status,
    case o.sync_status when 'error' then 'Keap API 400 on update: order_items is not valid' end,
    case when o.changed_at is not null then 2 else 1 end,
    o.created_at,
    coalesce(o.changed_at, o.created_at),
    null,
    case when o.r_update > 0.99 then coalesce(o.changed_at, o.created_at) + interval '1 hour' end,
    md5('o' || o.j)::uuid
from (
    select
        r.*,
        case when r.order_date <= r.first_load then r.first_load + interval '0.3 ms' * r.j
             else r.order_date + interval '1 minute' * (1 + 9 * random()) end as created_at,
        case when r.r_update < 0.15 then greatest(r.order_date, r.first_load) + (r.now - greatest(r.order_date, r.first_load)) * random() end
            as changed_at,
        case when r.r_sync < 0.97 then 'completed' when r.r_sync < 0.99 then 'pending'
             when r.r_sync < 0.997 then 'error' else 'conflict' end as sync_status
    from bench.orders_raw as r
) as o
left join public.sync_contacts as c
    on c.keap_id = o.contact_no::text
order by o.created_at;

-- step: subscriptions
insert into public.sync_subscriptions (
    id, keap_id, contact_id, keap_contact_id, product_id, keap_product_id, keap_subscription_plan_id,
    product_name, status, start_date, end_date, next_bill_date, billing_cycle, billing_frequency, amount,
    currency, keap_updated_at, last_synced_at, sync_status, version, created_at, updated_at, created_by
)
select
    bench.uuid_at(x.created_at), x.k::text, c.id, x.contact_no::text, p.id, x.product_no::text, 'plan-' || x.product_no,
    p.name, case when random() < 0.7 then 'active' else 'inactive' end, x.created_at::date, null,
    (s.now + interval '1 day' * floor(random() * 30))::date, 'MONTH', 1, p.price, case when p.id is null then null else 'USD' end,
    x.created_at, x.created_at, 'completed', 1, x.created_at, x.created_at, null
from (
    select
        k,
        1 + ((floor(st.n * power(random(), 2))::bigint * 7919) % st.n)::integer as contact_no,
        case when random() < 0.03 then 9000 + k % 100 else least(300, floor(exp(random() * ln(301)))::integer) end as product_no,
        st.first_load + (st.now - st.first_load) * random() as created_at
    from bench.settings as st
    cross join generate_series(1, (select n / 10 from bench.settings)) as k
) as x
cross join bench.settings as s
left join public.sync_contacts as c
    on c.keap_id = x.contact_no::text
left join public.sync_products as p
    on p.keap_id = x.product_no::text
order by x.created_at;

-- ---------------------------------------------------------------------------------------------
-- sync_status: one row per record
-- ---------------------------------------------------------------------------------------------
-- step: sync_status
insert into public.sync_status (
    id, entity_type, entity_id, keap_id, supabase_id, sync_direction, last_sync_at, last_sync_status,
    last_sync_error, retry_count, next_retry_at, created_at, updated_at
)
select
    r.id, r.entity_type, r.id, r.keap_id, r.id,
    case when r.source_system = 'supabase' then 'supabase_to_keap' else 'keap_to_supabase' end,
    r.last_synced_at, r.sync_status, r.sync_error,
    case when r.sync_status = 'error' then 1 + floor(random() * 3)::integer else 0 end,
    case when r.sync_status = 'error' then s.now + interval '1 hour' * (random() * 48 - 12) end,
    r.created_at, r.updated_at
from (
    select 'sync_contacts'::varchar(50) as entity_type, id, keap_id, source_system, last_synced_at, sync_status,
           sync_error, created_at, updated_at
    from public.sync_contacts
    union all
    select 'sync_orders', id, keap_id, 'keap', last_synced_at, sync_status, sync_error, created_at, updated_at
    from public.sync_orders
    union all
    select 'sync_subscriptions', id, keap_id, 'keap', last_synced_at, sync_status, sync_error, created_at, updated_at
    from public.sync_subscriptions
) as r
cross join bench.settings as s;

-- ---------------------------------------------------------------------------------------------
-- audit log: monthly partitions over the last 14 months, one INSERT row per record, UPDATE rows
-- ---------------------------------------------------------------------------------------------
-- step: audit log
select public.create_monthly_partition((s.now - interval '1 month' * m)::date)
from bench.settings as s
cross join generate_series(14, 0, -4) as m;

insert into public.sync_audit_log (
    id, entity_type, entity_id, operation, old_data, new_data, changed_fields, sync_source, sync_destination,
    user_id, created_at
)
select bench.uuid_at(e.at), e.entity_type, e.id, e.operation, e.old_data, e.new_data, e.changed_fields,
       e.sync_source, case when e.sync_source = 'keap' then 'supabase' else 'keap' end, e.user_id, e.at
from (
    select 'sync_contacts' as entity_type, c.id, 'INSERT' as operation, null::jsonb as old_data,
           to_jsonb(c.*) as new_data, null::text[] as changed_fields,
           c.source_system as sync_source, c.created_by as user_id, c.created_at as at
    from public.sync_contacts as c
    union all
    select 'sync_contacts', c.id, 'UPDATE', j.row || jsonb_build_object('company', null),
           j.row, array['company'], case when c.updated_by is null then 'keap' else 'supabase' end,
           c.updated_by, c.updated_at
    from public.sync_contacts as c
    cross join lateral (select to_jsonb(c.*) as row offset 0) as j
    where c.version > 1
    union all
    select 'sync_orders', o.id, 'INSERT', null, to_jsonb(o.*), null, 'keap', null, o.created_at
    from public.sync_orders as o
    union all
    select 'sync_orders', o.id, 'UPDATE', j.row || jsonb_build_object('status', 'DRAFT'), j.row,
           array['status'], 'keap', null, o.updated_at
    from public.sync_orders as o
    cross join lateral (select to_jsonb(o.*) as row offset 0) as j
    where o.version > 1
    union all
    select 'sync_subscriptions', x.id, 'INSERT', null, to_jsonb(x.*), null, 'keap', null, x.created_at
    from public.sync_subscriptions as x
) as e;

-- hard deletes by service_role (rows of records no longer in the tables): 0.1% of the contacts' number
insert into public.sync_audit_log (
    id, entity_type, entity_id, operation, old_data, new_data, changed_fields, sync_source, sync_destination,
    user_id, created_at
)
select bench.uuid_at(t.at), 'sync_contacts', gen_random_uuid(), 'DELETE',
       jsonb_build_object('email', 'gone' || k || '@d.example'), null, null, 'supabase', 'keap', null, t.at
from bench.settings as s
cross join generate_series(1, (select n / 1000 from bench.settings)) as k
cross join lateral (select s.first_load + (s.now - s.first_load) * random() as at) as t;

-- ---------------------------------------------------------------------------------------------
-- queue: pending items of app-made or locally changed records, and the history
-- ---------------------------------------------------------------------------------------------
-- step: queue
insert into public.sync_queue (
    id, operation, entity_type, entity_id, payload, priority, status, attempts, max_attempts, scheduled_at,
    started_at, completed_at, error_message, created_at, claim_key
)
select bench.uuid_at(q.at), q.operation, 'sync_contacts', q.id, q.payload, q.priority, q.status, q.attempts, 3,
       q.scheduled_at, q.started_at, q.completed_at, q.error_message, q.at,
       -- an item in flight is held by a pusher (sql/30's sync_queue_in_flight_is_claimed); no random()
       -- here, so the data stays the same stream as before 30
       case when q.status = 'processing' then 16 end
from (
    -- unsent: pending (one per record), held behind open conflicts, processing, failed
    select c.id, case when c.keap_id is null then 'create' else 'update' end as operation,
           to_jsonb(c.*) as payload,
           case c.sync_status when 'error' then 1 when 'conflict' then 2 else 5 end as priority,
           case when c.sync_status = 'conflict' then 'held'
                when c.sync_status = 'error' and random() < 0.5 then 'error'
                when random() < 0.01 then 'processing'
                else 'pending' end as status,
           case when c.sync_status = 'error' then 1 + floor(random() * 2)::integer else 0 end as attempts,
           -- most are due; failed ones wait for their retry
           case when c.sync_status = 'error' then s.now + interval '1 minute' * (random() * 120 - 30)
                else s.now - interval '1 minute' * (random() * 240) end as scheduled_at,
           null::timestamptz as started_at, null::timestamptz as completed_at,
           case when c.sync_status = 'error' then 'Keap API 400 on update: email is not a valid address' end as error_message,
           s.now - interval '1 minute' * (random() * 240) as at
    from public.sync_contacts as c
    cross join bench.settings as s
    where c.sync_status <> 'completed'
      and (c.created_by is not null or c.sync_status in ('error', 'conflict') or random() < 0.4)
    union all
    -- sent: completed (and a few cancelled) over the last 400 days
    select c.id, 'update', to_jsonb(c.*), 5,
           case when random() < 0.97 then 'completed' else 'cancelled' end, 1, s.now - interval '1 second' * t.secs,
           s.now - interval '1 second' * t.secs, s.now - interval '1 second' * (t.secs - 2), null,
           s.now - interval '1 second' * t.secs
    from public.sync_contacts as c
    cross join bench.settings as s
    cross join lateral (select (random() * 400 * 86400)::integer + 10 as secs) as t
    where c.sync_status = 'completed'
      and random() < 0.25
) as q;

-- ---------------------------------------------------------------------------------------------
-- conflicts: one open per record in 'conflict', four times as many resolved ones
-- ---------------------------------------------------------------------------------------------
-- step: conflicts and dead letters
insert into public.sync_conflicts (
    id, entity_type, entity_id, keap_data, supabase_data, conflict_fields, detected_at, resolution_strategy,
    resolved_at, resolved_by, resolution_notes
)
select bench.uuid_at(x.detected_at), x.entity_type, x.id, x.keap_data, x.supabase_data, array['company'],
       x.detected_at, x.strategy, x.resolved_at, x.resolved_by, null
from (
    select 'sync_contacts' as entity_type, c.id, jsonb_build_object('company', 'Keap Co') as keap_data,
           jsonb_build_object('company', 'Local Co') as supabase_data, c.updated_at as detected_at,
           null as strategy, null::timestamptz as resolved_at, null::uuid as resolved_by
    from public.sync_contacts as c
    where c.sync_status = 'conflict'
    union all
    select 'sync_orders', o.id, jsonb_build_object('status', 'PAID'), jsonb_build_object('status', 'SENT'),
           o.updated_at, null, null, null
    from public.sync_orders as o
    where o.sync_status = 'conflict'
    union all
    select 'sync_contacts', c.id, jsonb_build_object('company', 'Keap Co'), jsonb_build_object('company', 'Local Co'),
           t.at, (array['keap_wins', 'supabase_wins', 'manual', 'merge'])[1 + width_bucket(random(), array[0.6, 0.8, 0.95])],
           t.at + interval '1 hour' * random() * 72, case when random() < 0.5 then bench.user_id(1 + (random() < 0.5)::integer) end
    from public.sync_contacts as c
    cross join bench.settings as s
    cross join lateral (select s.first_load + (s.now - s.first_load) * random() as at) as t
    where c.sync_status = 'completed'
      and random() < 0.02
) as x;

insert into keap_pipeline.dead_letters (entity, keap_id, record_json, reason, field, run_id, status)
select 'contacts', (s.n + k)::text, '{"id": ' || (s.n + k) || '}', 'email: longer than 255 characters', 'email',
       'bench', case when k % 3 = 0 then 'replayed' else 'open' end
from bench.settings as s
cross join generate_series(1, 500) as k;

drop table bench.contacts_raw;
drop table bench.orders_raw;
