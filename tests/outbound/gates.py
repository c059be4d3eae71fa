"""What the kill and overlap tests share: a sandbox write gate that holds one request, and a pusher as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from keap_pipeline.sandbox.errors import ApiError
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import API_KEY


class Hold:
    """Holds the first request `op` at `where` (before: not applied; after: applied, not answered)."""

    def __init__(self, op: str, where: str) -> None:
        self.op, self.where = op, where
        self.reached = threading.Event()
        self.release = threading.Event()
        self.refuse = False

    def _hold(self, op: str, where: str) -> None:
        if op != self.op or where != self.where or self.reached.is_set():
            return
        self.reached.set()
        self.release.wait(60)
        if self.refuse:
            raise ApiError(503, "held and refused: the client is gone")

    def before(self, op: str, ident: int | None) -> None:
        self._hold(op, "before")

    def after(self, op: str, ident: int | None) -> None:
        self._hold(op, "after")


def pusher(handle: SandboxHandle, url: str, *options: str) -> subprocess.Popen[str]:
    """`keap-pipeline push --no-pacing [options]` against the sandbox, as a subprocess (to be killed)."""
    env = {**os.environ, "KEAP_API_KEY": API_KEY}
    env.pop("KEAP_PIPELINE_DATABASE_URL", None)
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", "push", "--base-url", handle.base_url, "--database-url", url,
         "--no-pacing", *options],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
