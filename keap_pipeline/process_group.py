"""A child command in a process group of its own, stopped together with every process it started."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in a process group.

    Args:
        pgid: the group's id (its leader's pid).

    Returns:
        True while a member runs.
    """
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, split after it
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_for_group(child: subprocess.Popen[bytes], deadline: float, hurry: list[signal.Signals]) -> bool:
    """Wait until the leader exited and the group is empty, the deadline passed, or a new signal asks to hurry."""
    count = len(hurry)
    while time.monotonic() < deadline and len(hurry) == count:
        child.poll()  # reap the leader, so it does not count as alive
        if child.returncode is not None and not group_alive(child.pid):
            return True
        time.sleep(0.1)
    child.poll()
    return child.returncode is not None and not group_alive(child.pid)


def stop_group(child: subprocess.Popen[bytes], *, name: str, interrupt_grace: float = 30.0, term_grace: float = 5.0) -> None:
    """Stop a child started in its own group, and everything it started: SIGINT, then SIGTERM, then SIGKILL.

    SIGINT to the whole group is what Ctrl-C in a terminal would send: the child's own clean
    shutdown. Whatever is left after ``interrupt_grace`` seconds (a grandchild the child did not
    wait for) gets SIGTERM, and after ``term_grace`` more, SIGKILL. A further SIGINT, SIGTERM or
    SIGHUP meanwhile moves on to the next step at once instead of breaking off the cleanup.

    Args:
        child: the child, started with ``start_new_session=True`` (its pid is the group id).
        name: what it is, for the log lines.
        interrupt_grace: seconds for the clean shutdown.
        term_grace: seconds after SIGTERM before SIGKILL.
    """
    hurry: list[signal.Signals] = []

    def _hurry(signum: int, frame: FrameType | None) -> None:
        hurry.append(signal.Signals(signum))

    previous = {sig: signal.signal(sig, _hurry) for sig in STOP_SIGNALS}
    try:
        pgid = child.pid
        for sig, grace in ((signal.SIGINT, interrupt_grace), (signal.SIGTERM, term_grace), (signal.SIGKILL, 5.0)):
            if child.poll() is not None and not group_alive(pgid):
                return
            if sig is not signal.SIGINT:
                log.info("%s: still running, sending %s to its process group", name, sig.name)
            _signal_group(pgid, sig)
            if _wait_for_group(child, time.monotonic() + grace, hurry):
                return
        log.warning("%s: processes of group %d survived SIGKILL", name, pgid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def process_group(
    command: Sequence[str], *, name: str, cwd: Path | None = None, interrupt_grace: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command in a new session (its own process group) and stop the whole group on leaving.

    The child does not receive a terminal's Ctrl-C by itself: the caller decides when it stops
    (on leaving the block, however that happens), and stop_group makes sure nothing it started
    is left running.

    Args:
        command: the program and its arguments.
        name: what it is, for the log lines.
        cwd: its working directory.
        interrupt_grace: seconds for its clean shutdown after SIGINT.

    Yields:
        The running child.
    """
    child = subprocess.Popen(command, cwd=cwd, start_new_session=True)  # noqa: S603 - the caller's fixed command
    try:
        yield child
    finally:
        stop_group(child, name=name, interrupt_grace=interrupt_grace)
