"""Numbered SQL migrations: apply in order under an advisory lock, record checksums, roll back with down scripts."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from keap_pipeline.db.connect import connect
from keap_pipeline.db.errors import MigrationChecksumMismatch, MigrationError, MigrationFileError

log = logging.getLogger(__name__)

# One fixed key for pg_advisory_lock: every migrate/rollback of this project serialises on it.
ADVISORY_LOCK_KEY = 0x6B65_6170_6D69_6772  # "keapmigr"
# DDL waits for ACCESS EXCLUSIVE locks; on a database shared with a live app a migration
# must give up rather than queue behind a long transaction and stall every writer behind it.
DEFAULT_LOCK_TIMEOUT = "10s"
_NAME = re.compile(r"^(?P<version>\d+)-(?P<slug>[a-z0-9][a-z0-9-]*)\.sql$")


def sql_dir() -> Path:
    """The folder of migration files: the repository's sql/ or, installed, the packaged copy."""
    repo = Path(__file__).resolve().parents[2] / "sql"
    if repo.is_dir():
        return repo
    return Path(__file__).resolve().parents[1] / "sql"


@dataclass(frozen=True)
class Migration:
    """One forward file with its down script."""

    version: int
    name: str
    path: Path
    down_path: Path
    checksum: str

    def text(self) -> str:
        """The forward SQL."""
        return self.path.read_text(encoding="utf-8")

    def down_text(self) -> str:
        """The down SQL."""
        return self.down_path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationState:
    """A migration as `keap-pipeline migrations` shows it."""

    version: int
    name: str
    checksum: str
    applied_at: datetime | None
    applied_checksum: str | None

    @property
    def status(self) -> str:
        """applied, pending, or changed (applied, but the file differs now)."""
        if self.applied_at is None:
            return "pending"
        return "applied" if self.applied_checksum == self.checksum else "changed"


def discover(directory: Path | None = None) -> list[Migration]:
    """List the migration files in version order.

    Args:
        directory: the sql/ folder; sql_dir() when None.

    Returns:
        The migrations, ordered by version.

    Raises:
        MigrationFileError: a file name is malformed, a version repeats, or a down script is missing.
    """
    directory = directory or sql_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationFileError(
                f"{path.name}: migration files are named NN-some-name.sql (digits, a dash, lower-case words)"
            )
        version = int(match["version"])
        if version in found:
            raise MigrationFileError(
                f"{path.name} and {found[version].path.name} share version {version}; renumber one"
            )
        down = directory / "rollback" / path.name
        if not down.is_file():
            raise MigrationFileError(f"{path.name} has no down script; add sql/rollback/{path.name}")
        found[version] = Migration(
            version=version,
            name=path.stem,
            path=path,
            down_path=down,
            checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str, datetime]]:
    exists = conn.execute("select to_regclass('keap_pipeline.schema_migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        "select version, name, checksum, applied_at from keap_pipeline.schema_migrations order by version"
    ).fetchall()
    return {int(v): (name, checksum, at) for v, name, checksum, at in rows}


def _line_of(text: str, position: str | None) -> int | None:
    if not position:
        return None
    try:
        offset = int(position)
    except ValueError:
        return None
    return text.count("\n", 0, max(offset - 1, 0)) + 1


def _describe_failure(migration: Migration, text: str, err: psycopg.Error, *, down: bool) -> str:
    diag = err.diag
    where = migration.down_path if down else migration.path
    line = _line_of(text, diag.statement_position)
    location = f"{where.parent.name}/{where.name}" + (f", line {line}" if line else "")
    message = diag.message_primary or str(err).strip()
    parts = [f"{location}: {message}"]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    if diag.context:
        parts.append(f"CONTEXT: {diag.context.strip()}")
    if diag.sqlstate:
        parts.append(f"(SQLSTATE {diag.sqlstate})")
    return "\n".join(parts)


class _Locked:
    """An autocommit connection holding the migration advisory lock for its lifetime."""

    def __init__(self, conninfo: str) -> None:
        self.conn = connect(conninfo, autocommit=True, application_name="keap-pipeline migrate")

    def __enter__(self) -> psycopg.Connection:
        # Session lock: a second concurrent run waits here until the first is done, then finds
        # nothing pending. Migrations must run on a direct or session-mode connection.
        self.conn.execute("select pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.conn.closed:
                self.conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        finally:
            self.conn.close()


def _check_history(migrations: list[Migration], applied: dict[int, tuple[str, str, datetime]]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum, _at) in applied.items():
        current = by_version.get(version)
        if current is None:
            raise MigrationError(
                f"the database has migration {version} ({name}) applied but sql/ has no such file; "
                "restore the file or roll the database back with the release that added it"
            )
        if current.checksum != checksum:
            raise MigrationChecksumMismatch(
                f"sql/{current.path.name} changed after it was applied (checksum {checksum[:12]} in the "
                f"database, {current.checksum[:12]} on disk); never edit an applied migration: restore "
                "it and add a new numbered file instead"
            )


def migrate(
    conninfo: str,
    *,
    target: int | None = None,
    directory: Path | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> list[Migration]:
    """Apply the pending migrations in order, each in its own transaction.

    Args:
        conninfo: database URL (a direct or session-mode connection, not a transaction pooler).
        target: apply up to this version only; all when None.
        directory: the sql/ folder; sql_dir() when None.
        lock_timeout: how long a statement may wait for a table lock before the file fails.

    Returns:
        The migrations applied by this call (empty when nothing was pending).

    Raises:
        MigrationChecksumMismatch: an applied file was edited since.
        MigrationError: a file failed; the database stays at the previous version and the message
            names the file, the line and PostgreSQL's message.
    """
    migrations = discover(directory)
    done: list[Migration] = []
    with _Locked(conninfo) as conn:
        applied = _applied(conn)
        _check_history(migrations, applied)
        for migration in migrations:
            if migration.version in applied or (target is not None and migration.version > target):
                continue
            text = migration.text()
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(lock_timeout)))
                    conn.execute(text.encode("utf-8"))  # type: ignore[arg-type]
                    conn.execute(
                        "insert into keap_pipeline.schema_migrations (version, name, checksum)"
                        " values (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except psycopg.Error as err:
                raise MigrationError(_describe_failure(migration, text, err, down=False)) from None
            log.info("applied migration %s", migration.name)
            done.append(migration)
        # TEMP (lead, local only): until the repeatable mechanism lands
        if target is None and (directory is None):
            with conn.transaction():
                for p in sorted((sql_dir() / "functions").glob("*.sql")):
                    conn.execute(p.read_text().encode())  # type: ignore[arg-type]
    return done


def rollback(
    conninfo: str,
    to_version: int,
    *,
    directory: Path | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> list[Migration]:
    """Run the down scripts of every applied migration above `to_version`, newest first.

    Args:
        conninfo: database URL.
        to_version: the version to end at; 0 removes everything.
        directory: the sql/ folder; sql_dir() when None.
        lock_timeout: how long a statement may wait for a table lock.

    Returns:
        The migrations rolled back, in the order they were undone.

    Raises:
        MigrationError: a down script failed (that step is undone; the earlier ones stay undone).
    """
    migrations = {m.version: m for m in discover(directory)}
    undone: list[Migration] = []
    with _Locked(conninfo) as conn:
        applied = _applied(conn)
        _check_history(list(migrations.values()), applied)
        for version in sorted(applied, reverse=True):
            if version <= to_version:
                break
            migration = migrations[version]
            text = migration.down_text()
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(lock_timeout)))
                    conn.execute(text.encode("utf-8"))  # type: ignore[arg-type]
                    still_there = conn.execute(
                        "select to_regclass('keap_pipeline.schema_migrations') is not null"
                    ).fetchone()
                    if still_there and still_there[0]:
                        conn.execute(
                            "delete from keap_pipeline.schema_migrations where version = %s", (version,)
                        )
            except psycopg.Error as err:
                raise MigrationError(_describe_failure(migration, text, err, down=True)) from None
            log.info("rolled back migration %s", migration.name)
            undone.append(migration)
    return undone


def status(conninfo: str, *, directory: Path | None = None) -> list[MigrationState]:
    """Every migration on disk with whether (and when, with which checksum) it was applied.

    Args:
        conninfo: database URL.
        directory: the sql/ folder; sql_dir() when None.

    Returns:
        One state per file, in version order.
    """
    migrations = discover(directory)
    with connect(conninfo, autocommit=True) as conn:
        applied = _applied(conn)
    return [
        MigrationState(
            version=m.version,
            name=m.name,
            checksum=m.checksum,
            applied_at=applied[m.version][2] if m.version in applied else None,
            applied_checksum=applied[m.version][1] if m.version in applied else None,
        )
        for m in migrations
    ]
