"""A throwaway Debian PostgreSQL 15 cluster for a benchmark: initdb, start on a loopback port, stop and remove."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"


class ServerError(RuntimeError):
    """initdb or pg_ctl failed; the message carries the server's log tail."""


def _as_owner(args: list[str]) -> subprocess.CompletedProcess[str]:
    # initdb and pg_ctl refuse to run as root: as root, run them as the postgres OS user
    if os.geteuid() == 0:
        args = ["runuser", "-u", OS_USER, "--", *args]
    return subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603 - fixed binaries


@contextmanager
def running_pg15(port: int, settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a fresh cluster of Debian's PostgreSQL 15 on 127.0.0.1:`port`; yield its maintenance URL.

    Default configuration except what `settings` names (passed as -c options, so the figures can say
    exactly what was changed). Trust authentication on loopback only. The data directory is removed
    afterwards.

    Args:
        port: the loopback port (one of your own: other work on the machine runs its own servers).
        settings: server settings to pass with -c, e.g. {"shared_buffers": "1GB"}.

    Yields:
        postgresql://postgres@127.0.0.1:port/postgres

    Raises:
        ServerError: the binaries are missing, or initdb / pg_ctl failed.
    """
    if not (BIN / "pg_ctl").exists():
        raise ServerError(f"{BIN} has no pg_ctl: install Debian's postgresql-15 (apt-get install postgresql-15)")
    home = Path(tempfile.mkdtemp(prefix="keap-bench-pg15-"))
    data = home / "data"
    if os.geteuid() == 0:
        owner = pwd.getpwnam(OS_USER)
        os.chown(home, owner.pw_uid, owner.pw_gid)
    options = [f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={home}"]
    options += [f"-c {name}={value}" for name, value in (settings or {}).items()]
    try:
        done = _as_owner([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                          "--no-instructions"])
        if done.returncode != 0:
            raise ServerError(f"initdb failed: {done.stderr[-2000:]}")
        done = _as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(home / "server.log"),
                          "-o", " ".join(options), "start"])
        if done.returncode != 0:
            log = (home / "server.log").read_text(errors="replace") if (home / "server.log").exists() else ""
            raise ServerError(f"pg_ctl start failed on port {port}: {done.stderr[-1000:]} {log[-2000:]}")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop"])
    finally:
        shutil.rmtree(home, ignore_errors=True)
