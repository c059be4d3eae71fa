"""`make ui`: the Dagster UI on the demo's data: embedded PostgreSQL, the Keap sandbox (unless a real Keap is configured).

One SIGINT, SIGTERM or SIGHUP stops everything it started: `dagster dev` with its webserver,
daemon and code servers (their own process group, stopped as a whole), the sandbox, and the
embedded PostgreSQL when this command started it (a server already running, as after `make demo`,
is left running). KEAP_PIPELINE_UI_PORT (default 3000) and KEAP_PIPELINE_SANDBOX_PORT (default
8765) move the two ports.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from keap_pipeline.db import embedded
from keap_pipeline.local_stack import (
    DEMO_CONTACTS,
    SANDBOX_API_KEY,
    SANDBOX_PORT,
    ensure_dagster_home,
    repo_root,
    sandbox_state_file,
)
from keap_pipeline.process_group import STOP_SIGNALS, process_group
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox
from keap_pipeline.sandbox.saved_state import saved_dataset

log = logging.getLogger("keap_pipeline.ui")

# `dagster dev` still works and is what the docs name; its notice that `dg dev` supersedes it is
# not for our users (the literal start of that one warning's message, nothing broader)
_SUPERSEDED = "ignore:Function `dev_command` is superseded"


def _ui_port() -> str:
    return os.environ.get("KEAP_PIPELINE_UI_PORT", "3000")


def _dagster_dev(dagster_home: Path) -> int:
    command = [
        sys.executable, "-W", _SUPERSEDED, "-m", "dagster", "dev",
        "-w", str(repo_root() / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", _ui_port(),
    ]
    # run in DAGSTER_HOME: from the checkout, dagster dev warns that the dagster.yaml it sees there
    # "will not be used" (the instance is DAGSTER_HOME's copy of it)
    with process_group(command, name="dagster dev", cwd=dagster_home) as child:
        return child.wait()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    """Start what the UI needs and run `dagster dev` until it exits or a signal stops everything.

    Returns:
        0 when stopped by a signal, else dagster dev's exit status.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("keap_pipeline").setLevel(logging.INFO)
    # SIGTERM (a supervisor, `timeout`, make) and SIGHUP (a closed terminal) unwind like Ctrl-C
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupt)
    with ExitStack() as stack:
        try:
            return _run(stack)
        except KeyboardInterrupt as stop:
            log.info("stopped by %s; Dagster's processes are stopped, now the rest this command started",
                     str(stop) or "SIGINT")
            return 0
        finally:
            # dagster dev's group is stopped by now (its own with-block); what the stack still holds
            # (the sandbox, the database) stops to its end, a second signal does not break that off
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)


def _run(stack: ExitStack) -> int:
    already_running = embedded.server_for().is_running()
    server = embedded.start()
    if already_running:
        stack.callback(log.info, "the embedded PostgreSQL was running before and keeps running "
                       "(keap-pipeline db down stops it)")
    else:
        stack.callback(_stop_database)
    dagster_home = ensure_dagster_home(server.url)
    os.environ.setdefault("KEAP_PIPELINE_DATABASE_URL", server.url)
    if os.environ.get("KEAP_BASE_URL") and os.environ.get("KEAP_API_KEY"):
        log.info("using the Keap at KEAP_BASE_URL; Dagster UI at http://127.0.0.1:%s", _ui_port())
        return _dagster_dev(dagster_home)
    port = int(os.environ.get("KEAP_PIPELINE_SANDBOX_PORT", SANDBOX_PORT))
    # the Keap `make demo` left: its data (seed and counts) and its changes, from the state file
    state_file = sandbox_state_file()
    dataset = saved_dataset(state_file) or {"contacts": DEMO_CONTACTS}
    config = SandboxConfig(port=port, limits=RateLimits.off(), api_key=SANDBOX_API_KEY, state_file=str(state_file),
                           **dataset)  # type: ignore[arg-type]
    sandbox = stack.enter_context(running_sandbox(config, subprocess_mode=True))
    os.environ["KEAP_BASE_URL"] = sandbox.base_url
    os.environ["KEAP_API_KEY"] = SANDBOX_API_KEY
    log.info(
        "Keap sandbox at %s (API key %r; the UI's runs use it); Dagster UI at http://127.0.0.1:%s",
        sandbox.base_url, SANDBOX_API_KEY, _ui_port(),
    )
    return _dagster_dev(dagster_home)


def _stop_database() -> None:
    log.info("stopping the embedded PostgreSQL this command started")
    embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
