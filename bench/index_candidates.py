"""Forms the schema does not have, measured by bench/bench_indexes.py against the schema as it is.

Each is set up inside the transaction that is rolled back ("with": the setup, then the queries;
"without": the schema as migrated): the indexes migration 31 removed or redefined, so the figures
that decided it are rerun on every run, and forms measured and not adopted (kind "candidate").
"""

from __future__ import annotations

from dataclasses import dataclass

_SVC = "_svc"


@dataclass(frozen=True)
class Candidate:
    """A form of an index the schema does not have, and the queries it is for."""

    name: str
    kind: str  # retired | candidate
    table: str  # the table it is on, for the write cost ("" = not measured)
    setup: tuple[str, ...]  # DDL run inside the rolled-back transaction
    queries: tuple[str, ...]  # bench/dashboard_queries.py names
    present: tuple[str, str]  # (index, piece of its definition): the schema has this form (then skipped)
    sized: tuple[str, ...] = ()  # indexes whose size is reported


def _has(name: str, fragment: str = "") -> tuple[str, str]:
    # (index name, a piece of its definition): the schema has this form when such an index exists
    return name, fragment


CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        "idx_contacts_tags", "retired", "public.sync_contacts",
        ("create index idx_contacts_tags on public.sync_contacts using gin (tags)",),
        ("contacts_with_tag" + _SVC,), _has("idx_contacts_tags"), ("idx_contacts_tags",),
    ),
    Candidate(
        "idx_contacts_custom", "retired", "public.sync_contacts",
        ("create index idx_contacts_custom on public.sync_contacts using gin (custom_fields jsonb_path_ops)",),
        ("contacts_by_custom_field" + _SVC,), _has("idx_contacts_custom"), ("idx_contacts_custom",),
    ),
    Candidate(
        "idx_sync_contacts_updated_at", "retired", "public.sync_contacts",
        ("create index idx_sync_contacts_updated_at on public.sync_contacts (updated_at)",),
        ("contacts_by_status", "contacts_by_status" + _SVC, "recent_active_contacts", "recent_active_contacts" + _SVC,
         "unsynced_contacts", "unsynced_contacts" + _SVC),
        _has("idx_sync_contacts_updated_at"), ("idx_sync_contacts_updated_at",),
    ),
    Candidate(
        "idx_sync_contacts_sync_status (sync_status), 22's", "retired", "public.sync_contacts",
        ("drop index public.idx_sync_contacts_sync_status",
         "create index idx_sync_contacts_sync_status on public.sync_contacts (sync_status) where sync_status <> 'completed'"),
        ("contacts_by_status", "contacts_by_status" + _SVC, "unsynced_contacts", "unsynced_contacts" + _SVC),
        _has("idx_sync_contacts_sync_status", "(sync_status) WHERE"), ("idx_sync_contacts_sync_status",),
    ),
    Candidate(
        "idx_sync_orders_date_status, 13's predicate", "retired", "public.sync_orders",
        ("drop index public.idx_sync_orders_date_status",
         "create index idx_sync_orders_date_status on public.sync_orders (order_date desc, sync_status)"
         " where deleted_at is null and sync_status in ('pending', 'error', 'conflict')"),
        ("unsynced_orders", "unsynced_orders" + _SVC),
        _has("idx_sync_orders_date_status", "ANY"), ("idx_sync_orders_date_status",),
    ),
    Candidate(
        "idx_audit_log_created", "retired", "",
        ("create index idx_audit_log_created on public.sync_audit_log using brin (created_at)",),
        ("audit_day", "audit_latest"), _has("idx_audit_log_created"), (),
    ),
    Candidate(
        "idx_sync_conflicts_detected + idx_sync_conflicts_resolved", "retired", "",
        ("drop index public.idx_sync_conflicts_open",
         "create index idx_sync_conflicts_detected on public.sync_conflicts (detected_at)",
         "create index idx_sync_conflicts_resolved on public.sync_conflicts (resolved_at)"),
        ("open_conflicts",), _has("idx_sync_conflicts_resolved"),
        ("idx_sync_conflicts_detected", "idx_sync_conflicts_resolved"),
    ),
)
