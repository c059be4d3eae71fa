"""SQL migrations: numbered files applied once, then repeatable function files re-applied when they change.

Versioned files (sql/NN-slug.sql, down scripts in sql/rollback/) are applied in order, each in its own
transaction, and never edited once applied (their checksums are checked). Repeatable files
(sql/functions/NN-slug.sql, drop scripts in sql/functions/rollback/) hold the functions and views: after
the versioned files, all of them are re-applied in NN order, in one transaction, whenever one of them
is new or changed or a versioned file was applied in the same run. Everything runs under one advisory
lock.
"""

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
# The header every repeatable file carries: the lowest versioned migration its text needs.
_REQUIRES = re.compile(r"^--\s*requires:\s*(?P<version>\d+)\s*$")
REPEATABLE_DIR = "functions"


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
class Repeatable:
    """One repeatable file (functions, views) with its drop script and the version it requires."""

    order: int
    name: str
    path: Path
    drop_path: Path
    checksum: str
    requires: int

    @property
    def label(self) -> str:
        """The file as messages name it: functions/NN-slug."""
        return f"{REPEATABLE_DIR}/{self.name}"

    def text(self) -> str:
        """The SQL that (re)creates the file's objects; idempotent."""
        return self.path.read_text(encoding="utf-8")

    def drop_text(self) -> str:
        """The SQL that removes what only this file creates."""
        return self.drop_path.read_text(encoding="utf-8")


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


@dataclass(frozen=True)
class RepeatableState:
    """A repeatable file as `keap-pipeline migrations` shows it."""

    name: str
    checksum: str | None
    requires: int | None
    applied_at: datetime | None
    applied_checksum: str | None

    @property
    def status(self) -> str:
        """applied; pending or changed (the next migrate re-applies them all); removed (gone from disk)."""
        if self.checksum is None:
            return "removed"
        if self.applied_at is None:
            return "pending"
        return "applied" if self.applied_checksum == self.checksum else "changed"


@dataclass(frozen=True)
class MigrationReport:
    """What one migrate or rollback did, in the order it did it."""

    versioned: list[Migration]
    repeatable: list[Repeatable]


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


def _requirement(path: Path) -> int | None:
    """The version of the `-- requires: NN` line among the file's leading comment lines."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return None
        match = _REQUIRES.match(stripped)
        if match:
            return int(match["version"])
    return None


def discover_repeatable(directory: Path | None = None) -> list[Repeatable]:
    """List the repeatable files (sql/functions/NN-slug.sql) in the order they are applied.

    Args:
        directory: the sql/ folder; sql_dir() when None.

    Returns:
        The repeatable files, ordered by NN (empty when sql/functions/ does not exist).

    Raises:
        MigrationFileError: a name is malformed, an NN repeats, a drop script is missing, or the
            `-- requires: NN` header is missing or names no versioned migration.
    """
    directory = directory or sql_dir()
    versions = {m.version for m in discover(directory)}
    folder = directory / REPEATABLE_DIR
    found: dict[int, Repeatable] = {}
    for path in sorted(folder.glob("*.sql")):
        label = f"{REPEATABLE_DIR}/{path.name}"
        match = _NAME.match(path.name)
        if not match:
            raise MigrationFileError(
                f"{label}: repeatable files are named NN-some-name.sql (digits, a dash, lower-case words)"
            )
        order = int(match["version"])
        if order in found:
            raise MigrationFileError(f"{label} and {found[order].label}.sql share number {order}; renumber one")
        drop = folder / "rollback" / path.name
        if not drop.is_file():
            raise MigrationFileError(
                f"{label} has no drop script; add {REPEATABLE_DIR}/rollback/{path.name}"
            )
        requires = _requirement(path)
        if requires is None:
            raise MigrationFileError(
                f"{label} has no `-- requires: NN` line in its leading comments; name the lowest "
                "versioned migration its text needs"
            )
        if requires not in versions:
            raise MigrationFileError(f"{label} requires migration {requires}, which sql/ does not have")
        found[order] = Repeatable(
            order=order,
            name=path.stem,
            path=path,
            drop_path=drop,
            checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
            requires=requires,
        )
    return [found[n] for n in sorted(found)]


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str, datetime]]:
    exists = conn.execute("select to_regclass('keap_pipeline.schema_migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        "select version, name, checksum, applied_at from keap_pipeline.schema_migrations order by version"
    ).fetchall()
    return {int(v): (name, checksum, at) for v, name, checksum, at in rows}


def _has_repeatable_table(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass('keap_pipeline.repeatable_migrations') is not null").fetchone()
    return bool(row and row[0])


def _recorded(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    if not _has_repeatable_table(conn):
        return {}
    rows = conn.execute(
        "select name, checksum, applied_at from keap_pipeline.repeatable_migrations order by name"
    ).fetchall()
    return {name: (checksum, at) for name, checksum, at in rows}


def _line_of(text: str, position: str | None) -> int | None:
    if not position:
        return None
    try:
        offset = int(position)
    except ValueError:
        return None
    return text.count("\n", 0, max(offset - 1, 0)) + 1


def _describe_failure(location: str, text: str, err: psycopg.Error) -> str:
    diag = err.diag
    line = _line_of(text, diag.statement_position)
    location += f", line {line}" if line else ""
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


def _versioned_location(migration: Migration, *, down: bool) -> str:
    where = migration.down_path if down else migration.path
    return f"{where.parent.name}/{where.name}"


class _Locked:
    """Two connections: one holds the migration advisory lock, the other applies the files.

    The lock is transaction-scoped, held by an open, idle transaction on a connection of its own
    (as the run lock is, db/locks.py): a pooler in transaction mode (PgBouncer, Supavisor on 6543)
    keeps that transaction on one server connection, and when this process ends or its connection
    drops, PostgreSQL releases the lock. A session lock (pg_advisory_lock) behind a transaction
    pooler would stay on whichever server connection took it, long after this run, and every later
    migrate would wait for it forever. The files run on the autocommit connection, one transaction
    each, so nothing depends on session state.
    """

    def __init__(self, conninfo: str) -> None:
        self.lock_conn = connect(conninfo, application_name="keap-pipeline migrate (lock)")
        try:
            self.conn = connect(conninfo, autocommit=True, application_name="keap-pipeline migrate")
        except BaseException:
            self.lock_conn.close()
            raise

    def __enter__(self) -> psycopg.Connection:
        # A second concurrent run waits here until the first is done, then finds nothing pending.
        # An idle-in-transaction timeout must not end the holding transaction under a running migrate.
        self.lock_conn.execute("select pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true)")
        self.lock_conn.execute("select pg_catalog.pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.close()
        finally:
            # ending the transaction releases the lock; closing alone would too
            try:
                if not self.lock_conn.closed:
                    self.lock_conn.rollback()
            finally:
                self.lock_conn.close()


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


def _set_lock_timeout(conn: psycopg.Connection, lock_timeout: str) -> None:
    conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(lock_timeout)))


def _apply_repeatables(
    conn: psycopg.Connection, repeatables: list[Repeatable], *, force: bool, lock_timeout: str
) -> list[Repeatable]:
    """Re-apply every repeatable file, in order and in one transaction, when one is new or changed.

    All of them, not only the changed one: a later file may call or build on an earlier one, and
    re-applying an unchanged file is harmless (they are idempotent). `force` re-applies them even when
    none changed: a versioned file applied in the same run may have dropped or replaced their objects.
    """
    recorded = _recorded(conn)
    on_disk = {r.name: r.checksum for r in repeatables}
    if not force and {name: checksum for name, (checksum, _at) in recorded.items()} == on_disk:
        return []
    for name in sorted(set(recorded) - set(on_disk)):
        log.warning(
            "%s/%s.sql was applied but is no longer in sql/%s/: it is forgotten, and the objects it "
            "created stay in the database until a file drops them",
            REPEATABLE_DIR, name, REPEATABLE_DIR,
        )
    if not repeatables and not recorded:
        return []
    if not _has_repeatable_table(conn):
        raise MigrationError(
            "keap_pipeline.repeatable_migrations is missing (sql/27-repeatable-migrations.sql creates it); "
            f"the repeatable files of sql/{REPEATABLE_DIR}/ cannot be recorded"
        )
    current: Repeatable | None = None
    text = ""
    try:
        with conn.transaction():
            _set_lock_timeout(conn, lock_timeout)
            for current in repeatables:
                text = current.text()
                conn.execute(text.encode("utf-8"))  # type: ignore[arg-type]
            current = None
            conn.execute("delete from keap_pipeline.repeatable_migrations")
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into keap_pipeline.repeatable_migrations (name, checksum) values (%s, %s)",
                    [(r.name, r.checksum) for r in repeatables],
                )
    except psycopg.Error as err:
        location = f"{current.label}.sql" if current else "keap_pipeline.repeatable_migrations"
        raise MigrationError(_describe_failure(location, text if current else "", err)) from None
    for r in repeatables:
        log.info("applied repeatable %s", r.label)
    return list(repeatables)


def migrate_report(
    conninfo: str,
    *,
    target: int | None = None,
    directory: Path | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> MigrationReport:
    """Apply the pending migrations in order, then the repeatable files when needed.

    Each versioned file runs in its own transaction. Then, once every versioned file is applied
    (not with a `target` below the latest), the repeatable files are re-applied, all of them in NN
    order in one transaction, when any of them is new or changed, when one was removed, or when
    this run applied a versioned file.

    Args:
        conninfo: database URL (direct, or through a pooler in session or transaction mode).
        target: apply up to this version only; all when None.
        directory: the sql/ folder; sql_dir() when None.
        lock_timeout: how long a statement may wait for a table lock before the file fails.

    Returns:
        The versioned migrations and the repeatable files applied by this call.

    Raises:
        MigrationChecksumMismatch: an applied versioned file was edited since.
        MigrationError: a file failed; the database keeps its previous state (the versioned files
            applied before it stay applied; a failed repeatable leaves every repeatable's previous
            text in place) and the message names the file, the line and PostgreSQL's message.
    """
    migrations = discover(directory)
    repeatables = discover_repeatable(directory)
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
                    _set_lock_timeout(conn, lock_timeout)
                    conn.execute(text.encode("utf-8"))  # type: ignore[arg-type]
                    conn.execute(
                        "insert into keap_pipeline.schema_migrations (version, name, checksum)"
                        " values (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except psycopg.Error as err:
                location = _versioned_location(migration, down=False)
                raise MigrationError(_describe_failure(location, text, err)) from None
            log.info("applied migration %s", migration.name)
            done.append(migration)
        complete = {m.version for m in migrations} <= set(applied) | {m.version for m in done}
        reapplied: list[Repeatable] = []
        if complete:
            reapplied = _apply_repeatables(conn, repeatables, force=bool(done), lock_timeout=lock_timeout)
        elif repeatables:
            log.info("repeatable files not applied: the database is not at the latest version")
    return MigrationReport(versioned=done, repeatable=reapplied)


def migrate(
    conninfo: str,
    *,
    target: int | None = None,
    directory: Path | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> list[Migration]:
    """Apply the pending migrations and, when needed, the repeatable files (see migrate_report).

    Args:
        conninfo: database URL (direct, or through a pooler in session or transaction mode).
        target: apply up to this version only; all when None.
        directory: the sql/ folder; sql_dir() when None.
        lock_timeout: how long a statement may wait for a table lock before the file fails.

    Returns:
        The versioned migrations applied by this call (empty when nothing was pending).

    Raises:
        MigrationChecksumMismatch: an applied file was edited since.
        MigrationError: a file failed; the database stays at the previous version and the message
            names the file, the line and PostgreSQL's message.
    """
    return migrate_report(conninfo, target=target, directory=directory, lock_timeout=lock_timeout).versioned


def _drop_repeatables(
    conn: psycopg.Connection,
    repeatables: list[Repeatable],
    *,
    to_version: int,
    top: int,
    lock_timeout: str,
) -> list[Repeatable]:
    """Run the drop scripts of the files whose requirement is rolled back, newest first, and forget them.

    A file whose requirement is above `top` (the highest applied version) was already dropped by an
    earlier rollback, or never applied: its drop script does not run again.
    """
    dropping = [r for r in reversed(repeatables) if to_version < r.requires <= top]
    if not dropping:
        return []
    current: Repeatable | None = None
    text = ""
    try:
        with conn.transaction():
            _set_lock_timeout(conn, lock_timeout)
            for current in dropping:
                text = current.drop_text()
                conn.execute(text.encode("utf-8"))  # type: ignore[arg-type]
            current = None
            if _has_repeatable_table(conn):
                conn.execute(
                    "delete from keap_pipeline.repeatable_migrations where name = any(%s)",
                    ([r.name for r in dropping],),
                )
    except psycopg.Error as err:
        location = f"{REPEATABLE_DIR}/rollback/{current.name}.sql" if current else "keap_pipeline.repeatable_migrations"
        raise MigrationError(_describe_failure(location, text if current else "", err)) from None
    for r in dropping:
        log.info("dropped repeatable %s", r.label)
    return dropping


def rollback_report(
    conninfo: str,
    to_version: int,
    *,
    directory: Path | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> MigrationReport:
    """Roll back to `to_version`: drop scripts of the repeatables it goes below, then the down scripts.

    First the drop scripts (sql/functions/rollback/) of the repeatable files whose `requires` is above
    `to_version`, newest first and in one transaction; those files are forgotten, so the next migrate
    re-applies them. Then the down scripts of every applied migration above `to_version`, newest
    first, each in its own transaction. Rolling back never re-applies a repeatable file.

    Args:
        conninfo: database URL.
        to_version: the version to end at; 0 removes everything.
        directory: the sql/ folder; sql_dir() when None.
        lock_timeout: how long a statement may wait for a table lock.

    Returns:
        The versioned migrations rolled back and the repeatable files dropped, in the order undone.

    Raises:
        MigrationError: a drop or down script failed (that step is undone; the earlier ones stay undone).
    """
    migrations = {m.version: m for m in discover(directory)}
    repeatables = discover_repeatable(directory)
    undone: list[Migration] = []
    with _Locked(conninfo) as conn:
        applied = _applied(conn)
        _check_history(list(migrations.values()), applied)
        dropped: list[Repeatable] = []
        if any(version > to_version for version in applied):
            dropped = _drop_repeatables(
                conn, repeatables, to_version=to_version, top=max(applied), lock_timeout=lock_timeout
            )
        for version in sorted(applied, reverse=True):
            if version <= to_version:
                break
            migration = migrations[version]
            text = migration.down_text()
            try:
                with conn.transaction():
                    _set_lock_timeout(conn, lock_timeout)
                    conn.execute(text.encode("utf-8"))  # type: ignore[arg-type]
                    still_there = conn.execute(
                        "select to_regclass('keap_pipeline.schema_migrations') is not null"
                    ).fetchone()
                    if still_there and still_there[0]:
                        conn.execute(
                            "delete from keap_pipeline.schema_migrations where version = %s", (version,)
                        )
            except psycopg.Error as err:
                location = _versioned_location(migration, down=True)
                raise MigrationError(_describe_failure(location, text, err)) from None
            log.info("rolled back migration %s", migration.name)
            undone.append(migration)
    return MigrationReport(versioned=undone, repeatable=dropped)


def rollback(
    conninfo: str,
    to_version: int,
    *,
    directory: Path | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> list[Migration]:
    """Roll back to `to_version` (see rollback_report) and return the versioned migrations undone.

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
    return rollback_report(conninfo, to_version, directory=directory, lock_timeout=lock_timeout).versioned


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


def repeatable_status(conninfo: str, *, directory: Path | None = None) -> list[RepeatableState]:
    """Every repeatable file on disk (then any recorded but gone) with its recorded checksum.

    Args:
        conninfo: database URL.
        directory: the sql/ folder; sql_dir() when None.

    Returns:
        One state per file, in the order they are applied; recorded files no longer on disk last.
    """
    repeatables = discover_repeatable(directory)
    with connect(conninfo, autocommit=True) as conn:
        recorded = _recorded(conn)
    states = [
        RepeatableState(
            name=r.name,
            checksum=r.checksum,
            requires=r.requires,
            applied_at=recorded[r.name][1] if r.name in recorded else None,
            applied_checksum=recorded[r.name][0] if r.name in recorded else None,
        )
        for r in repeatables
    ]
    on_disk = {r.name for r in repeatables}
    states += [
        RepeatableState(name=name, checksum=None, requires=None, applied_at=at, applied_checksum=checksum)
        for name, (checksum, at) in sorted(recorded.items())
        if name not in on_disk
    ]
    return states
