"""A comparable snapshot of a database's own catalog, object for object (roles, being cluster-wide, excluded)."""

from __future__ import annotations

import psycopg

# Every catalog whose rows are database objects a migration can create; identified by
# pg_identify_object so the snapshot names objects, not OIDs.
_CATALOGS = [
    "pg_namespace", "pg_class", "pg_proc", "pg_type", "pg_constraint", "pg_trigger",
    "pg_policy", "pg_publication", "pg_publication_rel", "pg_extension", "pg_attrdef",
    "pg_rewrite", "pg_event_trigger", "pg_default_acl", "pg_cast", "pg_operator",
    "pg_collation", "pg_conversion", "pg_statistic_ext", "pg_ts_config", "pg_foreign_server",
]

_DETAILS = {
    "relations": """
        select n.nspname, c.relname, c.relkind::text, c.relreplident::text, c.relrowsecurity,
               c.relforcerowsecurity, coalesce(c.relacl::text, ''), coalesce(array_to_string(c.reloptions, ','), '')
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
    """,
    "columns": """
        select c.oid::regclass::text, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
               a.attnotnull, coalesce(a.attacl::text, '')
        from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where a.attnum > 0 and not a.attisdropped
          and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
    """,
    "functions": """
        select p.oid::regprocedure::text, p.prosecdef, coalesce(array_to_string(p.proconfig, ','), ''),
               md5(p.prosrc), coalesce(p.proacl::text, '')
        from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname not in ('pg_catalog', 'information_schema')
    """,
    "schemas": "select nspname, coalesce(nspacl::text, '') from pg_catalog.pg_namespace",
    "policies": "select schemaname, tablename, policyname, coalesce(qual, ''), coalesce(with_check, '') from pg_catalog.pg_policies",
    "publication_tables": "select pubname, schemaname, tablename from pg_catalog.pg_publication_tables",
    "extensions": "select extname, extversion from pg_catalog.pg_extension",
    "database": "select coalesce(datacl::text, '') from pg_catalog.pg_database where datname = current_database()",
    "settings": """
        select coalesce(array_to_string(setconfig, ','), '') from pg_catalog.pg_db_role_setting s
        join pg_catalog.pg_database d on d.oid = s.setdatabase where d.datname = current_database()
    """,
}


def snapshot(conninfo: str) -> dict[str, set[tuple[object, ...]]]:
    """Return every object of the database as comparable tuples, grouped by kind."""
    result: dict[str, set[tuple[object, ...]]] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for catalog in _CATALOGS:
            # internal triggers (the RI_ConstraintTrigger_<oid> pairs behind every foreign key) are named
            # by OID, so they differ between two builds; their foreign keys are compared via pg_constraint
            where = " where not tgisinternal" if catalog == "pg_trigger" else ""
            rows = conn.execute(
                f"select (pg_catalog.pg_identify_object('{catalog}'::regclass, oid, 0)).identity"  # noqa: S608 - fixed names
                f" from pg_catalog.{catalog}{where}"
            ).fetchall()
            # toast tables are named by OID and so differ between two builds of the same schema
            result[catalog] = {tuple(r) for r in rows if not str(r[0]).startswith("pg_toast.")}
        for name, query in _DETAILS.items():
            result[name] = {tuple(r) for r in conn.execute(query).fetchall()}
        has_cron = conn.execute("select to_regclass('cron.job') is not null").fetchone()
        if has_cron and has_cron[0]:
            jobs = conn.execute(
                "select jobname, schedule, command from cron.job where database = current_database()"
            ).fetchall()
            result["cron_jobs"] = {tuple(r) for r in jobs}
    return result


def diff(before: dict[str, set[tuple[object, ...]]], after: dict[str, set[tuple[object, ...]]]) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    lines: list[str] = []
    for kind in sorted(set(before) | set(after)):
        b, a = before.get(kind, set()), after.get(kind, set())
        lines += [f"{kind}: gone   {row}" for row in sorted(b - a, key=repr)]
        lines += [f"{kind}: extra  {row}" for row in sorted(a - b, key=repr)]
    return lines


# What snapshot() leaves out or keeps as a hash: the full text of every function and view, owners,
# and every comment. Two builds that agree here define the same objects the same way.
_DEFINITIONS = {
    "function_definitions": """
        select p.oid::regprocedure::text, pg_catalog.pg_get_functiondef(p.oid), p.proowner::regrole::text,
               coalesce(p.proacl::text, ''), coalesce(array_to_string(p.proconfig, ','), '')
        from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname not in ('pg_catalog', 'information_schema') and p.prokind <> 'a'
    """,
    "view_definitions": """
        select c.oid::regclass::text, pg_catalog.pg_get_viewdef(c.oid), c.relowner::regrole::text,
               coalesce(c.relacl::text, ''), coalesce(array_to_string(c.reloptions, ','), '')
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
    """,
    "owners": """
        select c.oid::regclass::text, c.relowner::regrole::text
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
    """,
    "comments": """
        select d.classoid::regclass::text, (pg_catalog.pg_identify_object(d.classoid, d.objoid, d.objsubid)).identity,
               d.description
        from pg_catalog.pg_description d
        where d.objoid >= 16384
    """,
}


def definitions(conninfo: str) -> dict[str, set[tuple[object, ...]]]:
    """Return the full definition of every function and view, relation owners and every comment."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {name: {tuple(r) for r in conn.execute(query).fetchall()} for name, query in _DEFINITIONS.items()}
