"""Running the sandbox: serve() until a signal, or running_sandbox() in a thread or a subprocess for tests."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from keap_pipeline.sandbox import saved_state
from keap_pipeline.sandbox.api import API_ROOT
from keap_pipeline.sandbox.config import (
    API_KEY_ENV,
    Faults,
    RateLimits,
    SandboxConfig,
    accepted_key,
)
from keap_pipeline.sandbox.errors import SandboxStartError
from keap_pipeline.sandbox.server import SandboxServer
from keap_pipeline.sandbox.state import SandboxState

log = logging.getLogger("keap_pipeline.sandbox")
_SECRET_ENV = "KEAP_SANDBOX_OAUTH_CLIENT_SECRET"
_REFRESH_ENV = "KEAP_SANDBOX_OAUTH_REFRESH_TOKEN"
_SUBPROCESS_MAIN = "import sys; from keap_pipeline.sandbox.runner import main; sys.exit(main())"


@dataclass
class SandboxHandle:
    """A running sandbox: where it listens and, when it runs in this process, its state."""

    host: str
    port: int
    state: SandboxState | None
    pid: int

    @property
    def base_url(self) -> str:
        """The Keap API root (what KEAP_BASE_URL is set to): http://127.0.0.1:PORT/crm/rest/v2."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_ROOT}"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/token"


def _start(config: SandboxConfig) -> tuple[SandboxServer, threading.Thread]:
    state = SandboxState(config)
    if config.state_file:
        saved_state.writable(Path(config.state_file))  # before serving: the changes are saved at stop
        saved_state.load(state, Path(config.state_file))
    try:
        server = SandboxServer((config.host, config.port), state)
    except OSError as err:
        raise SandboxStartError(f"cannot listen on {config.host}:{config.port}: {err.strerror}") from err
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="keap-sandbox", daemon=True)
    thread.start()
    return server, thread


def _stop(server: SandboxServer, thread: threading.Thread) -> None:
    server.state.prefetcher.close()
    server.shutdown()
    server.close_connections()
    server.server_close()
    thread.join(timeout=5)
    if server.state.config.state_file:  # after the last request: nothing changes any more
        saved_state.save(server.state, Path(server.state.config.state_file))


def serve(config: SandboxConfig, port_file: Path | None = None) -> None:
    """Serve the sandbox until SIGINT or SIGTERM.

    Args:
        config: what to serve.
        port_file: if given, the bound port is written there once listening (for a parent process).

    Raises:
        SandboxStartError: the address cannot be bound.
    """
    server, thread = _start(config)
    port = server.server_address[1]
    log.info(
        "Keap sandbox on http://%s:%d%s, accepting %s (%s contacts, seed %d, limits %s, faults %s)",
        config.host, port, API_ROOT, accepted_key(config.api_key), f"{config.contacts:,}", config.seed,
        "off" if config.limits == RateLimits.off() else "on", "on" if config.faults.any else "off",
    )
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(port_file)  # atomic: the parent never reads half a number
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(server, thread)
        log.info("Keap sandbox stopped")


@contextmanager
def running_sandbox(config: SandboxConfig, subprocess_mode: bool = False, startup_timeout: float = 30.0) -> Iterator[SandboxHandle]:
    """Run a sandbox for the duration of a with-block.

    Args:
        config: what to serve (port 0 picks a free port).
        subprocess_mode: run the server in its own process (benchmarks: client and server on
            separate cores); then handle.state is None.
        startup_timeout: seconds to wait for a subprocess to listen.

    Yields:
        The handle (base_url, state, port, pid).

    Raises:
        SandboxStartError: the server did not come up.
    """
    if not subprocess_mode:
        server, thread = _start(config)
        try:
            yield SandboxHandle(config.host, server.server_address[1], server.state, os.getpid())
        finally:
            _stop(server, thread)
        return
    with tempfile.TemporaryDirectory(prefix="keap-sandbox-") as tmp:
        port_file = Path(tmp) / "port"
        # the config goes in a file: raw records can make it longer than one argument may be
        config_file = Path(tmp) / "config.json"
        config_file.write_text(config_to_json(config), encoding="utf-8")
        # secrets go by environment, never on the command line (visible to every local user)
        env = {**os.environ, API_KEY_ENV: config.api_key, _SECRET_ENV: config.oauth_client_secret,
               _REFRESH_ENV: config.oauth_refresh_token}
        proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            # -c, not `-m keap_pipeline.sandbox.runner`: the package imports runner, and runpy warns
            # (RuntimeWarning) when the module it is asked to run as __main__ is already imported
            [sys.executable, "-c", _SUBPROCESS_MAIN, "--config-file", str(config_file), "--port-file", str(port_file)],
            env=env,
        )
        try:
            deadline = time.monotonic() + startup_timeout
            while not port_file.exists():
                if proc.poll() is not None:
                    raise SandboxStartError(f"the sandbox subprocess exited with status {proc.returncode}")
                if time.monotonic() > deadline:
                    raise SandboxStartError(f"the sandbox subprocess did not listen within {startup_timeout:.0f} s")
                time.sleep(0.05)
            yield SandboxHandle(config.host, int(port_file.read_text()), None, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def config_to_json(config: SandboxConfig) -> str:
    """A config without its secrets as JSON (for a subprocess; secrets travel by environment).

    Args:
        config: a sandbox configuration.

    Returns:
        The JSON text.
    """
    data = dataclasses.asdict(config)
    for secret in ("api_key", "oauth_client_secret", "oauth_refresh_token"):
        data.pop(secret)
    # raw records are any bytes: latin-1 maps each byte to one code point, so JSON carries them exactly
    data["raw_contacts"] = [raw.decode("latin-1") for raw in config.raw_contacts]
    data["raw_records"] = [[entity, [raw.decode("latin-1") for raw in lines]] for entity, lines in config.raw_records]
    return json.dumps(data)


def config_from_json(text: str) -> SandboxConfig:
    """The inverse of config_to_json; the secrets come from the environment running_sandbox sets.

    Args:
        text: the text to parse.

    Returns:
        The configuration.
    """
    data = json.loads(text)
    data["limits"] = RateLimits(**data["limits"])
    data["faults"] = Faults(**data["faults"])
    data["raw_contacts"] = tuple(raw.encode("latin-1") for raw in data["raw_contacts"])
    data["raw_records"] = tuple(
        (entity, tuple(raw.encode("latin-1") for raw in lines)) for entity, lines in data["raw_records"]
    )
    config = SandboxConfig(**data)
    secrets = {"oauth_client_secret": os.environ.get(_SECRET_ENV), "oauth_refresh_token": os.environ.get(_REFRESH_ENV)}
    return config.with_(**{k: v for k, v in secrets.items() if v})


def main(argv: list[str] | None = None) -> int:
    """Entry point of the sandbox subprocess that running_sandbox(subprocess_mode=True) starts.

    Args:
        argv: command-line arguments.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m keap_pipeline.sandbox.runner")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-json")
    source.add_argument("--config-file", type=Path)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = args.config_json if args.config_json is not None else args.config_file.read_text(encoding="utf-8")
    serve(config_from_json(text), args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
