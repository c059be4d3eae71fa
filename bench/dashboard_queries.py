"""The queries a dashboard on the sync tables sends, as the app sends them, and the pipeline's own that indexes serve.

Each query runs as the identity that would send it: `admin` and `owner` are signed-in app users going
through RLS exactly as PostgREST does (`set local role authenticated` and the JWT claims, see
tests/db/identities.py; the admin's claims carry app_metadata.role = 'admin', an owner's do not);
`service_role` is the project's server key (BYPASSRLS), used by the outbound worker; `ingest` is the Keap
ingestion's role; `owner_role` is the database owner (Supabase Auth deleting a user runs the foreign
keys' ON DELETE SET NULL as the tables' owner).

Ingested contacts and orders have no `created_by` (docs/security.md: only admins read them), so the
dashboard over the Keap data is an admin's; `owner` queries are a signed-in user's view of the rows they
made in the app. Parameters are drawn once from the data by `params` (TABLESAMPLE ... REPEATABLE, so two
runs on the same data draw the same values) and every condition of a comparison runs the same values in
the same order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    """One statement as the app (or the pipeline) sends it."""

    name: str
    title: str
    identity: str  # admin | owner | service_role | ingest | owner_role
    sql: str  # psycopg named parameters %(name)s; an owner query's sample also carries "owner" (a user id)
    params: str  # SQL returning one row of named parameters per execution
    dashboard: bool = True  # in issue 16's list (False: serves an index for the pipeline or an admin chore)


QUERIES: tuple[Query, ...] = (
    Query(
        "contact_by_email", "a contact by email", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where email = %(email)s and deleted_at is null",
        "select email from public.sync_contacts tablesample bernoulli (0.2) repeatable (1) where email is not null",
    ),
    Query(
        "contact_by_email_own", "a contact by email (own rows)", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where email = %(email)s and deleted_at is null",
        "select created_by as owner, email from public.sync_contacts tablesample bernoulli (2) repeatable (2)"
        " where created_by is not null and email is not null",
    ),
    Query(
        "contact_by_keap_id", "a contact by keap_id", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where keap_id = %(keap_id)s",
        "select keap_id from public.sync_contacts tablesample bernoulli (0.2) repeatable (3) where keap_id is not null",
    ),
    Query(
        "contacts_by_status", "contacts by status, first page", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where sync_status = %(status)s and deleted_at is null"
        " order by updated_at desc limit 50",
        "select s as status from unnest(array['completed', 'pending', 'error', 'conflict']) as s,"
        " generate_series(1, 25)",
    ),
    Query(
        "recent_active_contacts", "recently updated active contacts", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where deleted_at is null and sync_status = 'completed'"
        " order by updated_at desc limit 50 offset %(offset)s",
        "select (g % 5) * 50 as offset from generate_series(1, 100) as g",
    ),
    Query(
        "recent_active_contacts_own", "recently updated active contacts (own rows)", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where deleted_at is null and sync_status = 'completed'"
        " order by updated_at desc limit 50",
        "select created_by as owner from public.sync_contacts tablesample bernoulli (2) repeatable (4)"
        " where created_by is not null",
    ),
    Query(
        "recent_active_contacts_fn_own", "recently updated active contacts, own rows: public.recent_contacts", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at"
        " from public.recent_contacts(%(lim)s)",
        "select created_by as owner, 50 as lim from public.sync_contacts tablesample bernoulli (2) repeatable (4)"
        " where created_by is not null",
    ),
    Query(
        "recent_active_contacts_fn", "recently updated active contacts: public.recent_contacts", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at"
        " from public.recent_contacts(%(lim)s)",
        "select 50 as lim from generate_series(1, 20)",
    ),
    Query(
        "contacts_with_tag", "contacts with a tag (as the app sends it today)", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where tags @> %(tags)s::jsonb and deleted_at is null"
        " order by updated_at desc limit 50",
        # a tag as a dashboard picks one: in proportion to how many contacts carry it
        "select jsonb_build_array(t)::text as tags from public.sync_contacts tablesample bernoulli (0.2) repeatable (5),"
        " jsonb_array_elements_text(tags) as t",
    ),
    Query(
        "contacts_with_tag_own", "contacts with a tag, own rows (as the app sends it today)", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where tags @> %(tags)s::jsonb and deleted_at is null"
        " order by updated_at desc limit 50",
        "select c.created_by as owner, jsonb_build_array(t)::text as tags"
        " from public.sync_contacts as c tablesample bernoulli (2) repeatable (6), jsonb_array_elements_text(c.tags) as t"
        " where c.created_by is not null",
    ),
    Query(
        "contacts_by_custom_field", "contacts by a custom field value (as the app sends it today)", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where custom_fields @> %(match)s::jsonb"
        " and deleted_at is null order by updated_at desc limit 50",
        "select jsonb_build_object(f.key, f.value)::text as match"
        " from public.sync_contacts tablesample bernoulli (0.2) repeatable (7), jsonb_each(custom_fields) as f",
    ),
    Query(
        "contacts_by_custom_field_own", "contacts by a custom field value, own rows (today)", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where custom_fields @> %(match)s::jsonb"
        " and deleted_at is null order by updated_at desc limit 50",
        "select c.created_by as owner, jsonb_build_object(f.key, f.value)::text as match"
        " from public.sync_contacts as c tablesample bernoulli (2) repeatable (8), jsonb_each(c.custom_fields) as f"
        " where c.created_by is not null",
    ),
    # the form the app sends since 31 (docs/operations.md): the lookup functions (their index is
    # keap_pipeline.contact_lookup, newest first by id)
    Query(
        "contacts_with_tag_fn", "contacts with a tag: public.contacts_with_tag", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.contacts_with_tag(%(tag)s)",
        "select t as tag from public.sync_contacts tablesample bernoulli (0.2) repeatable (5),"
        " jsonb_array_elements_text(tags) as t",
    ),
    Query(
        "contacts_with_tag_fn_own", "contacts with a tag, own rows: public.contacts_with_tag", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.contacts_with_tag(%(tag)s)",
        "select c.created_by as owner, t as tag"
        " from public.sync_contacts as c tablesample bernoulli (2) repeatable (6), jsonb_array_elements_text(c.tags) as t"
        " where c.created_by is not null",
    ),
    Query(
        "contacts_by_custom_field_fn", "contacts by a custom field value: public.contacts_by_custom_field", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.contacts_by_custom_field(%(field)s, %(value)s::jsonb)",
        "select f.key as field, f.value::text as value"
        " from public.sync_contacts tablesample bernoulli (0.2) repeatable (7), jsonb_each(custom_fields) as f",
    ),
    Query(
        "contacts_by_custom_field_fn_own", "contacts by a custom field value, own rows: the function", "owner",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.contacts_by_custom_field(%(field)s, %(value)s::jsonb)",
        "select c.created_by as owner, f.key as field, f.value::text as value"
        " from public.sync_contacts as c tablesample bernoulli (2) repeatable (8), jsonb_each(c.custom_fields) as f"
        " where c.created_by is not null",
    ),
    Query(
        "orders_of_contact", "orders of a contact", "admin",
        "select id, order_number, order_date, total_amount, currency, status, sync_status from public.sync_orders where contact_id = %(contact_id)s and deleted_at is null"
        " order by order_date desc limit 50",
        # a contact as an order list picks one: in proportion to its orders
        "select contact_id from public.sync_orders tablesample bernoulli (0.05) repeatable (9)"
        " where contact_id is not null",
    ),
    Query(
        "orders_by_date_status", "orders by date range and status", "admin",
        "select id, order_number, order_date, total_amount, currency, status, sync_status from public.sync_orders where status = %(status)s and order_date >= %(since)s"
        " and order_date < %(until)s and deleted_at is null order by order_date desc limit 50",
        "select (array['PAID', 'SENT', 'VIEWED', 'DRAFT'])[1 + g % 4] as status, d.since, d.since + d.span as until"
        " from generate_series(1, 100) as g,"
        " lateral (select now() - interval '1 day' * (1 + (g * 7919) % 700) as since,"
        "          interval '1 day' * (array[1, 7, 30, 90])[1 + (g / 4) % 4] as span) as d",
    ),
    Query(
        "unsynced_contacts", "contacts not synced (sync_status <> 'completed')", "admin",
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts where sync_status <> 'completed' and deleted_at is null"
        " order by updated_at desc limit 50 offset %(offset)s",
        "select (g % 4) * 50 as offset from generate_series(1, 100) as g",
    ),
    Query(
        "unsynced_orders", "orders not synced (sync_status <> 'completed')", "admin",
        "select id, order_number, order_date, total_amount, currency, status, sync_status from public.sync_orders where sync_status <> 'completed' and deleted_at is null"
        " order by order_date desc limit 50 offset %(offset)s",
        "select (g % 4) * 50 as offset from generate_series(1, 100) as g",
    ),
    Query(
        "queue_claim", "sync_queue's next batch (the pusher's claim: keap_pipeline.claim_outbound)", "ingest",
        # what `keap-pipeline push` sends (keap_pipeline/db/outbound.py, claim): as the ingestion's role, with
        # its pusher's lock held on a connection of its own (bench_indexes holds key 16's, the key the data's
        # in-flight items name, so this pusher recovers none and claims 100 pending items)
        "select id, entity_type, entity_id, operation, status, attempts, max_attempts, recovered"
        " from keap_pipeline.claim_outbound(16, array['sync_contacts'], %(batch)s)",
        "select 100 as batch from generate_series(1, 100)",
    ),
    Query(
        "audit_history", "a record's audit history", "admin",
        "select id, operation, changed_fields, sync_source, user_id, created_at from public.sync_audit_log"
        " where entity_type = %(entity_type)s and entity_id = %(entity_id)s order by created_at desc limit 50",
        "(select 'sync_contacts' as entity_type, id as entity_id from public.sync_contacts tablesample bernoulli (0.1)"
        " repeatable (10) limit 60) union all (select 'sync_orders', id from public.sync_orders"
        " tablesample bernoulli (0.1) repeatable (11) limit 40)",
    ),
    Query(
        "open_conflicts", "open conflicts, newest first", "admin",
        "select id, entity_type, entity_id, conflict_fields, detected_at from public.sync_conflicts"
        " where resolved_at is null order by detected_at desc limit 50 offset %(offset)s",
        "select (g % 4) * 50 as offset from generate_series(1, 100) as g",
    ),
    # --- not in the list: what the other indexes of the schema are for ---
    Query(
        "recent_active_contacts_own_filtered", "recently updated active contacts, own rows, the app naming its user",
        "owner",
        # the same page with the filter Supabase advises adding to every query (`created_by=eq.<user>`)
        "select id, keap_id, email, first_name, last_name, phone, company, tags, sync_status, updated_at from public.sync_contacts"
        " where created_by = %(me)s and deleted_at is null and sync_status = 'completed' order by updated_at desc limit 50",
        "select created_by as owner, created_by as me from public.sync_contacts tablesample bernoulli (2) repeatable (4)"
        " where created_by is not null",
        dashboard=False,
    ),
    Query(
        "queue_claim_update", "sync_queue's next batch, a worker of its own (docs/operations.md)", "service_role",
        # claim_key: the worker's key (sql/30: an item in flight names who holds it)
        "update public.sync_queue as q set status = 'processing', started_at = now(), attempts = q.attempts + 1, claim_key = 16"
        " where q.id in (select p.id from public.sync_queue as p where p.status = 'pending' and p.scheduled_at <= now()"
        " order by p.priority, p.scheduled_at limit %(batch)s for update skip locked)"
        " returning q.id, q.operation, q.entity_type, q.entity_id, q.payload",
        "select 100 as batch from generate_series(1, 100)",
        dashboard=False,
    ),
    Query(
        "conflicts_of_record", "a record's conflicts", "admin",
        "select id, conflict_fields, detected_at, resolved_at, resolution_strategy from public.sync_conflicts"
        " where entity_type = %(entity_type)s and entity_id = %(entity_id)s order by detected_at desc",
        "select entity_type, entity_id from public.sync_conflicts tablesample bernoulli (1) repeatable (12)",
        dashboard=False,
    ),
    Query(
        "audit_latest", "latest changes (audit feed)", "admin",
        "select id, entity_type, entity_id, operation, sync_source, created_at from public.sync_audit_log"
        " order by created_at desc limit 50 offset %(offset)s",
        "select (g % 4) * 50 as offset from generate_series(1, 100) as g",
        dashboard=False,
    ),
    Query(
        "audit_deletes", "hard deletes of the last 30 days", "admin",
        "select id, entity_type, entity_id, old_data, user_id, created_at from public.sync_audit_log"
        " where operation = 'DELETE' and created_at >= now() - interval '30 days' order by created_at desc limit 50",
        "select 1 as one from generate_series(1, 100)",
        dashboard=False,
    ),
    Query(
        "audit_day", "changes per entity on one day", "admin",
        "select entity_type, count(*) from public.sync_audit_log where created_at >= %(day)s"
        " and created_at < %(day)s + interval '1 day' group by entity_type",
        "select date_trunc('day', now() - interval '1 day' * (1 + (g * 7919) % 380)) as day from generate_series(1, 100) as g",
        dashboard=False,
    ),
    Query(
        "retry_due", "records whose retry is due", "service_role",
        "select entity_type, entity_id, retry_count, last_sync_error from public.sync_status"
        " where next_retry_at <= now() order by next_retry_at limit 100",
        "select 1 as one from generate_series(1, 100)",
        dashboard=False,
    ),
    Query(
        "recent_syncs", "latest sync activity", "admin",
        "select entity_type, entity_id, last_sync_status, last_sync_at from public.sync_status"
        " where last_sync_at is not null order by last_sync_at desc limit 50 offset %(offset)s",
        "select (g % 4) * 50 as offset from generate_series(1, 100) as g",
        dashboard=False,
    ),
    Query(
        "subscriptions_of_contact", "subscriptions of a contact", "admin",
        "select id, product_name, status, next_bill_date, amount from public.sync_subscriptions"
        " where contact_id = %(contact_id)s and deleted_at is null",
        "select contact_id from public.sync_subscriptions tablesample bernoulli (0.5) repeatable (13)"
        " where contact_id is not null",
        dashboard=False,
    ),
    Query(
        "subscriptions_by_status", "subscriptions by status, newest first", "admin",
        "select id, product_name, status, next_bill_date, amount from public.sync_subscriptions"
        " where status = %(status)s and deleted_at is null order by id desc limit 50",
        "select (array['active', 'inactive'])[1 + g % 2] as status from generate_series(1, 100) as g",
        dashboard=False,
    ),
    Query(
        "subscriptions_of_product", "subscriptions of a product, newest first", "admin",
        "select id, contact_id, status, next_bill_date from public.sync_subscriptions"
        " where product_id = %(product_id)s and deleted_at is null order by id desc limit 50",
        "select product_id from public.sync_subscriptions tablesample bernoulli (0.5) repeatable (14)"
        " where product_id is not null",
        dashboard=False,
    ),
    Query(
        "tag_by_name", "a tag by name", "admin",
        "select id, keap_id, name, category, color from public.sync_tags where name = %(name)s",
        "select name from public.sync_tags tablesample bernoulli (5) repeatable (15)",
        dashboard=False,
    ),
    Query(
        "orders_of_keap_contact", "orders by the Keap contact id", "admin",
        "select id, order_number, order_date, total_amount, currency, status, sync_status from public.sync_orders where keap_contact_id = %(keap_contact_id)s"
        " and deleted_at is null order by order_date desc limit 50",
        "select keap_contact_id from public.sync_orders tablesample bernoulli (0.05) repeatable (16)",
        dashboard=False,
    ),
    Query(
        "unresolved_links", "the asset check: orders waiting for their contact", "ingest",
        "select count(*) filter (where keap_contact_id is not null and contact_id is null),"
        " min(created_at) filter (where keap_contact_id is not null and contact_id is null)"
        " from public.sync_orders where deleted_at is null and (keap_contact_id is not null and contact_id is null)",
        "select 1 as one from generate_series(1, 100)",
        dashboard=False,
    ),
    Query(
        "resolve_links", "linking orders and subscriptions whose parent arrived later", "ingest",
        "select keap_pipeline.resolve_orders_links() + keap_pipeline.resolve_subscriptions_links()"
        " + keap_pipeline.resolve_tags_links()",
        "select 1 as one from generate_series(1, 100)",
        dashboard=False,
    ),
    Query(
        "delete_user", "deleting a user (ON DELETE SET NULL of every *_by column)", "owner_role",
        "delete from auth.users where id = %(user_id)s",
        "select bench.user_id(600 + g) as user_id from generate_series(1, 100) as g",
        dashboard=False,
    ),
)


# The admin's dashboard queries on the sync tables once more as service_role (a dashboard served by a
# backend with the server key: no RLS). The admin's policy test is a parameter the planner cannot see at
# plan time, so through RLS it plans these for a selective filter that is not (docs/benchmarks.md); the
# twins show what the indexes do when the plan is not misled.
SYNC_TABLES = ("public.sync_contacts", "public.sync_orders", "public.sync_subscriptions", "public.sync_tags")


def _twin(q: Query) -> Query:
    return Query(q.name + "_svc", q.title + " (service_role)", "service_role", q.sql, q.params, q.dashboard)


QUERIES = QUERIES + tuple(
    _twin(q) for q in QUERIES if q.identity == "admin" and any(t in q.sql for t in SYNC_TABLES)
)
