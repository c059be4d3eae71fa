"""The contacts names other code and outside checks rely on, as the entity factory (defs.entities) makes them.

keap_contacts, ContactsSyncConfig, the checks keap_contacts_dead_letters and keap_contacts_cursor_fresh,
keap_contacts_job and keap_contacts_incremental_schedule are the generated objects themselves (the same
ones definitions.py lists), not copies.
"""

from keap_pipeline.defs.entities import (
    CURSOR_MAX_AGE,
    KEAP_POOL,
    SCHEDULE_CRON,
    SCHEDULE_INTERVAL,
    defs_for,
)
from keap_pipeline.defs.partitions import PARTITIONS
from keap_pipeline.entities import CONTACTS

_contacts = defs_for(CONTACTS)
ContactsSyncConfig = _contacts.config
keap_contacts = _contacts.asset
keap_contacts_dead_letters, keap_contacts_cursor_fresh = _contacts.checks
keap_contacts_job = _contacts.job
keap_contacts_incremental_schedule = _contacts.schedule

__all__ = [
    "CURSOR_MAX_AGE",
    "KEAP_POOL",
    "PARTITIONS",
    "SCHEDULE_CRON",
    "SCHEDULE_INTERVAL",
    "ContactsSyncConfig",
    "keap_contacts",
    "keap_contacts_cursor_fresh",
    "keap_contacts_dead_letters",
    "keap_contacts_incremental_schedule",
    "keap_contacts_job",
]
