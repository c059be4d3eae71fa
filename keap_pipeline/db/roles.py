"""The Keap ingestion's database role: a load transaction's writes count as Keap's only when it runs as this role."""

from __future__ import annotations

import psycopg

# Created NOLOGIN by sql/24-security-hardening.sql and granted to the migrating user. The sync
# triggers audit a write as 'keap' and keep it out of the outbound queue only for this role
# (keap_pipeline.is_ingestion()), only it may set keap_id, and upsert_contacts_from_stage refuses
# to run as anyone else. See docs/security.md.
INGEST_ROLE = "keap_pipeline_ingest"


def as_ingestion(conn: psycopg.Connection) -> None:
    """Run the rest of the current transaction as the ingestion's role (SET LOCAL ROLE keap_pipeline_ingest).

    Call it first in every transaction that loads Keap records (a batch, a dead-letter replay).
    SET LOCAL ends with the transaction, so the connection is itself again afterwards, and it
    works behind transaction-mode poolers. The connecting user must be a member of the role
    (the migrating user is; see sql/24).
    """
    conn.execute(f"set local role {INGEST_ROLE}")
