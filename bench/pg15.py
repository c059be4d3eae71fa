"""A throwaway Debian PostgreSQL 15 for the benchmarks: initdb in a temp directory, loopback only, stopped after.

PostgreSQL refuses to run as root: as root, initdb and the server run as the `postgres` OS user
(Debian's package creates it). Install with `apt-get install postgresql-15` (and pgbouncer for the
pooling bench).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg

PG15_BIN = Path(os.environ.get("KEAP_BENCH_PG15_BIN", "/usr/lib/postgresql/15/bin"))
# the settings every figure of these benches ran with, unless a bench says otherwise: Debian's defaults
SHOWN_SETTINGS = (
    "max_connections", "shared_buffers", "work_mem", "synchronous_commit", "wal_level", "max_wal_size",
    "checkpoint_timeout", "jit",
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_owner(args: list[str]) -> None:
    user = "postgres" if os.geteuid() == 0 else None
    subprocess.run(args, check=True, capture_output=True, text=True, user=user)  # noqa: S603 - fixed binaries


@contextmanager
def pg15(*, port: int | None = None, settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start a fresh PostgreSQL 15 with Debian's default configuration plus `settings`; its superuser URL.

    Args:
        port: the loopback port (a free one when None).
        settings: postgresql.conf lines, e.g. {"max_connections": "100", "wal_level": "logical"}.

    Yields:
        ``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust auth on loopback).
    """
    if not (PG15_BIN / "postgres").exists():
        raise SystemExit(f"no PostgreSQL 15 at {PG15_BIN}: apt-get install postgresql-15 (or set KEAP_BENCH_PG15_BIN)")
    port = port or free_port()
    data = Path(tempfile.mkdtemp(prefix="keap-bench-pg15-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    try:
        _as_owner([str(PG15_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                   "--locale=C.UTF-8"])
        lines = {"listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": f"'{data}'"}
        lines.update(settings or {})
        with open(data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())
        _as_owner([str(PG15_BIN / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "start"])
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _as_owner([str(PG15_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(data, ignore_errors=True)


def settings_line(url: str) -> str:
    """The server's version and the settings that shape the figures, for the docs."""
    with psycopg.connect(url) as conn:
        version = conn.execute("show server_version").fetchone()
        values = [f"{name}={conn.execute(f'show {name}').fetchone()[0]}" for name in SHOWN_SETTINGS]  # type: ignore[index]
    return f"PostgreSQL {version[0] if version else '?'} ({', '.join(values)})"


def running_pg15(port: int, settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """pg15() on a given port (bench_indexes' name for it)."""
    return pg15(port=port, settings=settings)  # type: ignore[return-value]
