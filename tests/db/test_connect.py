"""db.connect: a server that never answers fails the connection after a bounded wait instead of hanging."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import psycopg
import pytest

from keap_pipeline.db import connect as connect_module
from keap_pipeline.db.connect import connect


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port whose listener completes TCP handshakes (the backlog) and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _time_to_fail(url: str) -> float:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        connect(url).close()
    return time.monotonic() - started


def test_a_silent_server_fails_after_the_default_timeout(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_SECONDS", 2)
    waited = _time_to_fail(f"postgresql://postgres@127.0.0.1:{silent_server}/postgres")
    assert 1.5 <= waited < 10


def test_the_urls_own_connect_timeout_wins(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_SECONDS", 60)
    waited = _time_to_fail(f"postgresql://postgres@127.0.0.1:{silent_server}/postgres?connect_timeout=2")
    assert 1.5 <= waited < 10


def test_pgconnect_timeout_wins_over_the_default(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_SECONDS", 60)
    waited = _time_to_fail(f"postgresql://postgres@127.0.0.1:{silent_server}/postgres")
    assert 1.5 <= waited < 10


def test_a_working_server_still_connects(migrated_database: str) -> None:
    with connect(migrated_database) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
