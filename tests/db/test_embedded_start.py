"""The embedded server's start when its port is taken between the probe and the postmaster's bind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from keap_pipeline.db import embedded
from keap_pipeline.db.errors import EmbeddedServerError


@pytest.fixture
def home(scratch_home: Path) -> Path:
    """A fresh KEAP_PIPELINE_HOME whose server is removed after the test (conftest's scratch_home)."""
    return scratch_home


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by a listener for the test's length (as another server's would be)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_taken_after_the_probe_moves_the_server_to_another(
    home: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the race of two homes (or two test workers) starting at once: the probe said free, then the
    # other bound it first; the probe is made to say so here, the listener is real
    real_free_port = embedded._free_port
    answers = iter([taken_port])
    monkeypatch.setattr(embedded, "_free_port", lambda preferred: next(answers, None) or real_free_port(preferred))
    server = embedded.start(home)
    assert server.port != taken_port
    assert (home / "pg.port").read_text() == str(server.port), "the port a later command reads is the one it serves on"
    with psycopg.connect(server.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_failure_that_is_not_the_port_is_raised_with_postgresqls_words(home: Path) -> None:
    embedded.start(home)
    embedded.stop(home)
    (home / "pgdata" / "postgresql.conf").write_text("this is not a setting\n")
    with pytest.raises(EmbeddedServerError, match="pg_ctl failed"):
        embedded.start(home)
