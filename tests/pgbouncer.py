"""A real PgBouncer (Debian's package) on a loopback port, in transaction mode, in front of the test server.

Tests that use it skip when the binary is absent (a fresh clone without it), unless
KEAP_PIPELINE_REQUIRE_PGBOUNCER=1 (CI installs it and sets that, so a missing binary fails there).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REQUIRE_ENV = "KEAP_PIPELINE_REQUIRE_PGBOUNCER"
_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str:
    """The pgbouncer executable, or a skip (a failure where CI requires it)."""
    found = shutil.which("pgbouncer") or next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)
    if found:
        return found
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"pgbouncer is not installed and {REQUIRE_ENV}=1 (apt-get install pgbouncer)")
    pytest.skip("pgbouncer is not installed (apt-get install pgbouncer); CI runs these tests")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Pooler:
    """A running PgBouncer: its port, and the server URL it fronts."""

    port: int
    server_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, database_url: str) -> str:
        """`database_url` (a database of the fronted server) reached through the pooler instead."""
        return make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    def log(self) -> str:
        """What PgBouncer has logged so far."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_pgbouncer(
    server_url: str, *, pool_size: int = 8, pool_mode: str = "transaction", extra_users: tuple[str, ...] = (),
    settings: dict[str, str] | None = None,
) -> Iterator[Pooler]:
    """Start PgBouncer in front of `server_url`'s server (trust auth, as the test servers use); stop it after.

    Args:
        server_url: a database URL of the server to front (its user is the admin user).
        pool_size: server connections per database and user.
        pool_mode: transaction (what Supabase's 6543 is) or session.
        extra_users: more login roles clients may connect as.
        settings: more [pgbouncer] settings (e.g. idle_transaction_timeout).
    """
    binary = pgbouncer_binary()
    params = conninfo_to_dict(server_url)
    user = str(params.get("user") or "postgres")
    host = str(params.get("host") or "127.0.0.1")
    server_port = str(params.get("port") or "5432")
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="keap-pgbouncer-"))
    os.chmod(workdir, 0o755)
    (workdir / "users.txt").write_text("".join(f'"{name}" ""\n' for name in (user, *extra_users)))
    log_path = workdir / "pgbouncer.log"
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={server_port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {workdir / 'users.txt'}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 600\n"
        # transaction mode never resets a server connection between clients: what one client
        # leaves in a session is seen by the next, which is what these tests must not depend on
        "server_reset_query =\n"
        # psycopg sends none of these, other drivers do; PgBouncer refuses unknown ones
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"admin_users = {user}\n"
        + "".join(f"{key} = {value}\n" for key, value in (settings or {}).items())
    )
    for name in ("users.txt", "pgbouncer.ini"):
        os.chmod(workdir / name, 0o644)
    # PgBouncer refuses to run as root; -u switches to an unprivileged user after start
    args = [binary, "-v", str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "nobody"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603 - fixed binary
    pooler = Pooler(port=port, server_url=server_url, process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {process.returncode}: {pooler.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen on {port}: {pooler.log()[-2000:]}") from None
                time.sleep(0.1)
        yield pooler
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
