"""Attack 1: a temp DOMAIN named uuid makes the SECURITY DEFINER sync trigger run the user's own function as the owner."""

from __future__ import annotations

import psycopg

from tests.security.conftest import ALICE, api, rows, scalar

# The attacker's objects, all in their own session's pg_temp (the API roles may create temp objects:
# TEMP on the database is PUBLIC's by default, on Supabase too). The CHECK function tries what only
# the owner may do (write the pipeline's settings) and swallows the error, so the user's own write
# goes through either way; only a privileged caller can make it succeed.
PLANT = [
    """
    create function pg_temp.escalate(v pg_catalog.uuid) returns boolean
    language plpgsql as $$
    begin
        begin
            update keap_pipeline.settings set value = '1' where name = 'audit_retention_months';
            raise notice 'escalated: ran as %', current_user;
        exception when others then
            null;
        end;
        return true;
    end
    $$
    """,
    "create domain pg_temp.uuid as pg_catalog.uuid check (pg_temp.escalate(value))",
]


def test_a_temp_domain_named_uuid_runs_nothing_as_the_owner(world: str) -> None:
    notices: list[str] = []
    # one session of the attacker (a plain SQL session as authenticated), as over a direct connection
    with psycopg.connect(world) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("set role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, false)", (f'{{"sub": "{ALICE}", "role": "authenticated"}}',))
        for statement in PLANT:
            conn.execute(statement)
        conn.commit()
        # the honest path and the trigger: insert, update and soft-delete her own contact
        conn.execute("insert into public.sync_contacts (email, first_name) values ('alice@app.example', 'Alice')")
        conn.execute("update public.sync_contacts set first_name = 'Alicia' where email = 'alice@app.example'")
        conn.commit()

    assert not [n for n in notices if n.startswith("escalated")], notices
    assert scalar(world, "select value from keap_pipeline.settings where name = 'audit_retention_months'") == "24", (
        "the user's CHECK function ran with the trigger owner's privileges"
    )
    # and the user's writes were audited and queued as hers
    audit = rows(
        world,
        "select a.operation, a.sync_source, a.user_id from public.sync_audit_log as a"
        " join public.sync_contacts as c on c.id = a.entity_id where c.email = 'alice@app.example' order by a.created_at",
    )
    assert [(a["operation"], a["sync_source"], a["user_id"]) for a in audit] == [
        ("INSERT", "supabase", ALICE), ("UPDATE", "supabase", ALICE),
    ]
    with api(world, ALICE) as conn:
        assert conn.execute("select first_name from public.sync_contacts").fetchall() == [("Alicia",)]


def test_every_security_definer_function_searches_pg_catalog_first_and_pg_temp_last(world: str) -> None:
    found = rows(
        world,
        "select p.oid::regprocedure::text as name, p.proconfig from pg_catalog.pg_proc as p"
        " join pg_catalog.pg_namespace as n on n.oid = p.pronamespace"
        " where p.prosecdef and n.nspname in ('public', 'keap_pipeline') order by 1",
    )
    # sql/31 + functions/80 added four (the decision changed): the trigger that keeps
    # keap_pipeline.contact_lookup on app users' writes, and the contact lookups, which must apply the read
    # policy's rule themselves because through RLS no index can serve a jsonb lookup
    # (tests/security/test_contact_lookups.py holds them to that rule); sql/38 + functions/80 an owner's
    # "recently updated" page (through users_read's OR an owner's page read and sorted all their rows)
    assert {f["name"] for f in found} == {
        "trigger_sync_on_update()", "keap_pipeline.release_held_outbound()", "keap_pipeline.maintain_contact_lookup()",
        "contacts_with_tag(text,integer,uuid)", "recent_contacts(integer,timestamp with time zone,uuid)", "contacts_by_custom_field(text,jsonb,integer,uuid)",
        "keap_pipeline.contacts_by_lookup_key(uuid,jsonb,integer,uuid)",
        # sql/28: app users' writes must count in sync_health_counters, which they may not write
        *(f"keap_pipeline.count_health_{t}()" for t in (
            "sync_contacts", "sync_orders", "sync_tags", "sync_subscriptions", "sync_products",
            "sync_conflicts", "sync_queue", "dead_letters",
        )),
        "keap_pipeline.uncount_truncated()",
    }
    for function in found:
        paths = [c.split("=", 1)[1] for c in function["proconfig"] or [] if c.startswith("search_path=")]
        assert paths == ["pg_catalog, pg_temp"], function
