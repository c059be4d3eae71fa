"""process_group: a child and everything it started stop together, even a grandchild that ignores SIGINT and SIGTERM."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from keap_pipeline.process_group import group_alive, process_group

# a child that starts a grandchild (which ignores the signals named) and exits on SIGINT, leaving it behind
CHILD = """
import signal, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\\n"
    + "".join(f"signal.signal(signal.{name}, signal.SIG_IGN)\\n" for name in sys.argv[2:])
    + "open(sys.argv[1], 'w').close()\\n" + "time.sleep(600)\\n", sys.argv[1]])
time.sleep(600)
"""


def _start(tmp_path: Path, *ignored: str) -> list[str]:
    # the grandchild touches "ready" once its handlers are set
    return [sys.executable, "-c", CHILD, str(tmp_path / "ready"), *ignored]


@pytest.mark.parametrize("ignored", [(), ("SIGINT",), ("SIGINT", "SIGTERM")], ids=["clean", "no SIGINT", "no SIGTERM"])
def test_nothing_of_the_group_survives_leaving_the_block(tmp_path: Path, ignored: tuple[str, ...]) -> None:
    with process_group(_start(tmp_path, *ignored), name="test child", interrupt_grace=1.0) as child:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        pgid = child.pid
        assert group_alive(pgid)
    assert child.returncode is not None and not group_alive(pgid)


def test_the_callers_signal_handlers_are_restored(tmp_path: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with process_group([sys.executable, "-c", "pass"], name="quick"):
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before
