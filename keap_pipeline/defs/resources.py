"""Dagster resources: the PostgreSQL database (URL or embedded) and, later, the Keap API."""

from __future__ import annotations

import psycopg
from dagster import ConfigurableResource
from pydantic import Field

from keap_pipeline.db.connect import connect, redact, resolve_database_url


class PostgresResource(ConfigurableResource):
    """The sync database: an explicit URL, else KEAP_PIPELINE_DATABASE_URL, else the embedded server."""

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; empty means KEAP_PIPELINE_DATABASE_URL, then the embedded server.",
    )

    def url(self) -> str:
        """The resolved URL (starts the embedded server when that is what serves)."""
        return resolve_database_url(self.database_url)

    def safe_url(self) -> str:
        """The resolved URL with any password masked, for metadata and logs."""
        return redact(self.url())

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """A new connection (prepared statements off, safe behind poolers)."""
        return connect(self.url(), autocommit=autocommit)
