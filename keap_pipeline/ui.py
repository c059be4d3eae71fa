"""`make ui`: the Dagster UI on the demo's data: embedded PostgreSQL, the Keap sandbox (unless a real Keap is configured)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from keap_pipeline.db import embedded
from keap_pipeline.local_stack import SANDBOX_API_KEY, SANDBOX_PORT, ensure_dagster_home, repo_root
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

log = logging.getLogger("keap_pipeline.ui")


def _dagster_dev() -> int:
    command = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(repo_root() / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", os.environ.get("KEAP_PIPELINE_UI_PORT", "3000"),
    ]
    return subprocess.call(command, cwd=repo_root())  # noqa: S603 - our own interpreter and arguments


def main() -> int:
    """Start what the UI needs and run `dagster dev` until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # SIGTERM (a supervisor, `timeout`) unwinds like Ctrl-C, so dagster dev and the sandbox stop too
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = embedded.start()
    ensure_dagster_home(server.url)
    os.environ.setdefault("KEAP_PIPELINE_DATABASE_URL", server.url)
    if os.environ.get("KEAP_BASE_URL") and os.environ.get("KEAP_API_KEY"):
        log.info("using the Keap at KEAP_BASE_URL")
        return _dagster_dev()
    config = SandboxConfig(port=SANDBOX_PORT, contacts=50_000, limits=RateLimits.off(), api_key=SANDBOX_API_KEY)
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        os.environ["KEAP_BASE_URL"] = sandbox.base_url
        os.environ["KEAP_API_KEY"] = SANDBOX_API_KEY
        log.info("Keap sandbox at %s; Dagster UI at http://127.0.0.1:%s", sandbox.base_url,
                 os.environ.get("KEAP_PIPELINE_UI_PORT", "3000"))
        try:
            return _dagster_dev()
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
