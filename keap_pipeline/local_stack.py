"""The local stack of `make demo` and `make ui`: embedded PostgreSQL, a Dagster home on it, the Keap sandbox, job runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from keap_pipeline.db import embedded
from keap_pipeline.sandbox.config import DEMO_API_KEY

if TYPE_CHECKING:
    from dagster import DagsterInstance
    from dagster._core.execution.execute_in_process_result import ExecutionResult

DAGSTER_DATABASE = "dagster"
SANDBOX_API_KEY = DEMO_API_KEY  # a made-up key the local sandbox accepts; never a real one
SANDBOX_PORT = 8765
DEMO_CONTACTS = 50_000  # the sandbox's contacts when `make demo` is given no --contacts
SANDBOX_STATE_FILE = "sandbox-state.json"

# The sandbox's records were last updated from 2019-01 on (sandbox/timeline.py): the local stack's
# partitions start there (defs/partitions.py); a real account sets its own month.
SANDBOX_PARTITIONS_START = "2019-01"


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
    # before the definitions are imported (here, and in `make ui`'s code server): the demo and the
    # UI must agree on the partition set of the instance they share
    os.environ.setdefault("KEAP_PIPELINE_PARTITIONS_START", SANDBOX_PARTITIONS_START)
    return home


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    # what a run worker of `make ui` would find in its environment (the resources' EnvVar), for one run
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_job(
    instance: DagsterInstance,
    job_name: str,
    *,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    asset_selection: set[Any] | None = None,
    environment: Mapping[str, str] | None = None,
) -> ExecutionResult:
    """Run a job of the workspace's code location in this process, recorded as the UI would launch it.

    The run carries the code location's origin (workspace.yaml), so the UI lists it under its job and
    can re-execute it (runs of ``materialize()`` or ``execute_in_process`` are ephemeral: neither).

    Args:
        instance: the Dagster instance to record the run in.
        job_name: a job of the definitions (keap_sync_all_job, keap_contacts_job, __ASSET_JOB ...).
        run_config: the run's config (never secrets: the UI shows it and re-executions reuse it).
        tags: the run's tags (partition range tags included).
        asset_selection: the AssetKeys to run, when not the whole job.
        environment: environment variables the run's resources read (EnvVar), set for its duration.

    Returns:
        The result, with the run's events.
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    [origin] = location_origins_from_yaml_paths([str(repo_root() / "workspace.yaml")])
    target = origin.loadable_target_origin
    with _environment(environment or {}):
        recon_repo = ReconstructableRepository.for_module(
            str(target.module_name), "defs", working_directory=target.working_directory
        )
        recon_job = recon_repo.get_reconstructable_job(job_name)
        repository = recon_repo.get_definition()
        run = instance.create_run_for_job(
            recon_job.get_definition(),
            run_config=dict(run_config or {}),
            tags=dict(tags or {}),
            asset_selection=frozenset(asset_selection) if asset_selection else None,
            remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(origin, repository.name), job_name),
            job_code_origin=recon_job.get_python_origin(),
        )
        return execute_run(recon_job, run, instance)
