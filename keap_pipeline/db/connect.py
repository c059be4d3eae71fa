"""Which database to use (an explicit URL, KEAP_PIPELINE_DATABASE_URL, or the embedded server) and how to connect."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

ENV_DATABASE_URL = "KEAP_PIPELINE_DATABASE_URL"
# seconds to wait for a server that does not answer (a dropped route, a full pooler), unless the URL
# (connect_timeout=...) or PGCONNECT_TIMEOUT says otherwise: libpq's own default is to wait forever
CONNECT_TIMEOUT_SECONDS = 10


def resolve_database_url(database_url: str | None = None, *, start_embedded: bool = True) -> str:
    """Return the database URL to use.

    Args:
        database_url: an explicit URL (the --database-url flag); wins when given.
        start_embedded: start the embedded server when neither a URL nor the environment names one.

    Returns:
        The URL: the argument, else KEAP_PIPELINE_DATABASE_URL, else the embedded server's.
    """
    if database_url:
        return database_url
    env = os.environ.get(ENV_DATABASE_URL)
    if env:
        return env
    from keap_pipeline.db import embedded

    server = embedded.start() if start_embedded else embedded.server_for()
    return server.url


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs, metadata and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        if "password=" in url:  # key=value conninfo form
            return " ".join(
                "password=***" if item.startswith("password=") else item for item in url.split()
            )
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, *, autocommit: bool = False, application_name: str = "keap-pipeline") -> psycopg.Connection:
    """Open a psycopg connection that is safe behind transaction-mode poolers.

    Args:
        url: the database URL.
        autocommit: open in autocommit mode (maintenance, migrations' lock connection).
        application_name: shown in pg_stat_activity.

    Returns:
        An open connection; prepared statements are off (prepare_threshold=None) because
        Supavisor/PgBouncer in transaction mode cannot keep them across transactions. It gives up
        after CONNECT_TIMEOUT_SECONDS on a server that does not answer, unless the URL's
        connect_timeout or PGCONNECT_TIMEOUT sets the wait (a schedule's run then fails instead of
        hanging on a dropped route).
    """
    extra: dict[str, Any] = {}
    if "PGCONNECT_TIMEOUT" not in os.environ and "connect_timeout" not in _conninfo(url):
        extra["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return psycopg.connect(
        url,
        autocommit=autocommit,
        prepare_threshold=None,
        application_name=application_name,
        **extra,
    )


def _conninfo(url: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}  # psycopg.connect names what is wrong with it
