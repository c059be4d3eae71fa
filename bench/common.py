"""Shared pieces of the benchmarks: the machine line, sandbox-shaped records, databases, docs/benchmarks.md sections."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keap_pipeline.db.migrate import migrate
from keap_pipeline.entities import CONTACTS
from keap_pipeline.sandbox import SandboxConfig
from keap_pipeline.sandbox.dataset import Dataset

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    """One line: date, CPU, cores, memory, Python, for the figures' heading."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} cores{mem}; "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}"
    )


def _stat(path: Path) -> list[str]:
    """The fields of a /proc/PID/stat after the command name (state is [0], ppid [1], utime [11], stime [12])."""
    return path.read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(url: str) -> float | None:
    """CPU seconds a PostgreSQL server on this machine has used so far: the postmaster with the children it
    reaped, plus its live children (backends, checkpointer, walwriter, autovacuum, WAL senders).

    Differences of two readings are the server's CPU in between. None when the server's processes cannot be
    read from here (another machine, another user, or no superuser to show data_directory).
    """
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("select setting from pg_settings where name = 'data_directory'").fetchone()
        if row is None or not row[0]:
            return None
        postmaster = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
        fields = _stat(Path(f"/proc/{postmaster}/stat"))
        total = sum(int(f) for f in fields[11:15])  # utime, stime, and its reaped children's
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                child = _stat(stat)
            except OSError:
                continue  # ended meanwhile
            if int(child[1]) == postmaster:
                total += int(child[11]) + int(child[12])
    except (OSError, psycopg.Error, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def server_version(url: str) -> str:
    """PostgreSQL's version string, short."""
    with psycopg.connect(url) as conn:
        row = conn.execute("select current_setting('server_version')").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def contact_records(n: int, seed: int = 1, batch: int = 1000) -> Iterator[list[dict]]:
    """The sandbox's contacts 1..n (the fields the pipeline asks for), as Keap sends them, in batches."""
    dataset = Dataset(SandboxConfig(contacts=n, seed=seed))
    fragments = dataset.contacts.compile(CONTACTS.fields)
    for start in range(1, n + 1, batch):
        ids = range(start, min(start + batch, n + 1))
        yield [json.loads(text) for text in dataset.contacts.render_many(ids, fragments)]


def fresh_database(server_url: str, name: str, *, migrated: bool = True) -> str:
    """Drop and create a database (migrated by the real migrations unless told not to)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = make_conninfo(server_url, dbname=name)
    if migrated:
        migrate(url)
    return url


# Ends what write_section writes: the hand-written text of a section after it (earlier runs, analysis)
# is kept when the section is written again.
GENERATED_END = "<!-- the bench's text ends here; what follows is kept when it writes again -->"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the generated part of the section `## title` of docs/benchmarks.md.

    The generated part runs from the heading to GENERATED_END; text after that marker, down to the
    next heading, is kept. A section written before the marker existed is replaced down to the next
    heading, and the text that was there is kept after the marker (nothing hand-written is lost).
    """
    DOCS.parent.mkdir(exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\nFigures measured by the scripts in bench/; each section says how to rerun it.\n"
    generated = f"## {title}\n\n{body.strip()}\n\n{GENERATED_END}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    if found is None:
        DOCS.write_text(text.rstrip() + "\n\n" + generated)
        return
    old = found.group(1)
    kept = old.split(GENERATED_END, 1)[1] if GENERATED_END in old else "\n" + old
    kept = kept.strip("\n")
    section = generated + ("\n" + kept + "\n" if kept else "") + "\n"
    DOCS.write_text(text[: found.start()] + section + text[found.end():])


def git_revision() -> str:
    """The commit the figures were measured on."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
