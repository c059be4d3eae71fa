"""The local stack of `make demo` and `make ui`: embedded PostgreSQL, a Dagster home on it, and the Keap sandbox."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from keap_pipeline.db import embedded
from keap_pipeline.sandbox.config import DEMO_API_KEY

DAGSTER_DATABASE = "dagster"
SANDBOX_API_KEY = DEMO_API_KEY  # a made-up key the local sandbox accepts; never a real one
SANDBOX_PORT = 8765
DEMO_CONTACTS = 50_000  # the sandbox's contacts when `make demo` is given no --contacts
SANDBOX_STATE_FILE = "sandbox-state.json"


def sandbox_state_file() -> Path:
    """Where `make demo` and `make ui` keep what was changed in the sandbox (KEAP_PIPELINE_HOME/sandbox-state.json).

    The sandbox saves its changes there when it stops and loads them when it starts, so `make ui`
    serves the Keap that `make demo` left, edits included, beside the database it left.
    """
    return embedded.home_dir() / SANDBOX_STATE_FILE


def repo_root() -> Path:
    """The checkout (dagster.yaml and workspace.yaml live here)."""
    return Path(__file__).resolve().parents[1]


def ensure_dagster_home(database_url: str) -> Path:
    """Create $DAGSTER_HOME (default KEAP_PIPELINE_HOME/dagster_home) with the repo's dagster.yaml.

    Args:
        database_url: the embedded server's URL; its database "dagster" holds Dagster's storage.

    Returns:
        The Dagster home; DAGSTER_HOME and KEAP_PIPELINE_DAGSTER_STORAGE_URL are set for this process
        and its children.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or embedded.home_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo_root() / "dagster.yaml", home / "dagster.yaml")
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (DAGSTER_DATABASE,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DAGSTER_DATABASE)))
    os.environ["DAGSTER_HOME"] = str(home)
    # SQLAlchemy (Dagster's storage) wants a URL, not a key=value conninfo, and dagster-postgres
    # speaks psycopg2 (its NOTIFY with a bound parameter fails under SQLAlchemy's psycopg 3 dialect)
    os.environ["KEAP_PIPELINE_DAGSTER_STORAGE_URL"] = urlunsplit(
        urlsplit(database_url)._replace(scheme="postgresql+psycopg2", path=f"/{DAGSTER_DATABASE}")
    )
    return home
