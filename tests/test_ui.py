"""`make ui` (python -m keap_pipeline.ui) started for real: one SIGTERM stops everything it started, ports closed, no process left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from keap_pipeline.db import embedded
from keap_pipeline.local_stack import SANDBOX_API_KEY, SANDBOX_STATE_FILE, repo_root
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 300  # initdb, Dagster's storage, the code server importing the definitions; the machine may be busy


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        # "pid (comm) state ppid pgrp ...": split after the command name, which may hold spaces
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _descendants(root: int) -> dict[int, str]:
    """Every live process below root, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            found[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return found


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_one_sigterm_stops_dagster_the_sandbox_and_the_database_it_started(scratch_home: Path, tmp_path: Path) -> None:
    ui_home = scratch_home
    ui_port, sandbox_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KEAP_BASE_URL", "KEAP_API_KEY", "KEAP_PIPELINE_DATABASE_URL", "DAGSTER_HOME")}
    env.update(KEAP_PIPELINE_HOME=str(ui_home), KEAP_PIPELINE_UI_PORT=str(ui_port),
               KEAP_PIPELINE_SANDBOX_PORT=str(sandbox_port))
    # what `make demo` leaves behind in the sandbox: a small dataset and an edit made in Keap
    demo_sandbox = SandboxConfig(port=0, contacts=200, limits=RateLimits.off(), api_key=SANDBOX_API_KEY,
                                 state_file=str(ui_home / SANDBOX_STATE_FILE))
    with running_sandbox(demo_sandbox, subprocess_mode=True) as demo:
        edited = httpx.patch(f"{demo.base_url}/contacts/3", params={"update_mask": "family_name"},
                             json={"family_name": "Edited-In-The-Demo"}, headers={"X-Keap-API-Key": SANDBOX_API_KEY})
        assert edited.status_code == 200
    log_path = tmp_path / "ui.log"
    with log_path.open("w") as log:
        # its own session only so that a failing test can still clean up; the signal goes to the UI alone
        ui = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "keap_pipeline.ui"], cwd=repo_root(), env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert ui.poll() is None, log_path.read_text()
            seen.update(_descendants(ui.pid))
            try:
                if httpx.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the UI did not answer in time:\n" + log_path.read_text()
            time.sleep(1)
        time.sleep(2)  # let the daemon's threads and the code server settle
        seen.update(_descendants(ui.pid))
        database = embedded.server_for(ui_home)
        assert database.is_running() and _answers(sandbox_port)
        # the UI's sandbox is the demo's Keap: its data and its edit
        keap = httpx.Client(base_url=f"http://127.0.0.1:{sandbox_port}/crm/rest/v2",
                            headers={"X-Keap-API-Key": SANDBOX_API_KEY}, timeout=10)
        with keap:
            assert keap.get("/contacts/3").json()["family_name"] == "Edited-In-The-Demo"
            assert keap.get("/contacts/201").status_code == 404  # 200 contacts, as the demo had
        commands = " | ".join(seen.values())
        for part in ("dagster_webserver", "dagster._daemon", "dagster code-server", "keap_pipeline.sandbox.runner"):
            assert part in commands, commands

        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=120) == 0, log_path.read_text()

        survivors = {pid: cmd for pid, cmd in seen.items() if _alive(pid)}
        assert survivors == {}, log_path.read_text()
        assert not _answers(ui_port) and not _answers(sandbox_port)
        assert not database.is_running() and not _answers(database.port)  # this run started it, so it stopped it
        output = log_path.read_text()
        assert "stopped by SIGTERM" in output and "Traceback" not in output
        # the start is quiet about what a user cannot act on
        for noise in ("will not be used", "SupersessionWarning", "RuntimeWarning", "BetaWarning",
                      "setup plugin alembic"):
            assert noise not in output, output
        assert "accepting API key 'sandbox-demo-key'" in output
    finally:
        for pid in [ui.pid, *seen]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        ui.wait(timeout=30)
