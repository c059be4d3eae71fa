"""The sandbox's HTTP/1.1 server: auth, quota, faults, strict contract checks, then the Keap routes."""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from keap_pipeline.sandbox import api
from keap_pipeline.sandbox.contacts import js
from keap_pipeline.sandbox.errors import ApiError
from keap_pipeline.sandbox.state import SandboxState

log = logging.getLogger("keap_pipeline.sandbox")

_PREFIX = api.API_ROOT + "/"
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable"}
_FAULT_STATUSES = (500, 502, 503)


class Faulter:
    """Decides, deterministically from the seed and the request order, which requests misbehave."""

    def __init__(self, state: SandboxState) -> None:
        self.faults = state.config.faults
        self._rng = random.Random(state.config.seed * 7 + 3)
        self._lock = threading.Lock()
        self._lists = 0
        self._errors = 0
        self._drops = 0

    def decide(self, is_list: bool) -> tuple[str, int]:
        """('drop', 0), ('error', status), ('slow', ms) or ('ok', 0) for the next request.

        Args:
            is_list: whether the request is a list request.

        Returns:
            (action, value).
        """
        f = self.faults
        with self._lock:
            roll = self._rng.random()
            if is_list:
                self._lists += 1
            if roll < f.error_share:
                self._errors += 1
                return "error", _FAULT_STATUSES[self._errors % 3]
            if roll < f.error_share + f.drop_share:
                self._drops += 1
                return "drop", self._drops % 2  # alternately no answer and a truncated one
            if is_list and f.slow_every and self._lists % f.slow_every == 0:
                return "slow", f.slow_ms
        return "ok", 0


class SandboxServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that keeps its state and can close idle keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        self.state = state
        self.faulter = Faulter(state)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:  # noqa: D102 - stdlib hook
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:  # noqa: D102 - stdlib hook
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection (keep-alive threads would otherwise idle on)."""
        with self.connections_lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive with Content-Length on every answer."""

    protocol_version = "HTTP/1.1"
    server_version = "keap-sandbox"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end after a minute
    server: SandboxServer
    _truncate = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET  # noqa: N815

    # --- plumbing ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | None, headers: dict[str, str] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        if body is not None:
            lines.append("Content-Type: application/json; charset=utf-8")
        lines.append(f"Content-Length: {len(body) if body is not None else 0}")
        if headers:
            lines.extend(f"{k}: {v}" for k, v in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body is not None and self._truncate:
            self._truncate = False
            self.wfile.write(head + body[: len(body) // 2])
            log.debug("fault: truncated answer of %d bytes", len(body))
            return
        self.wfile.write(head + body if body is not None else head)
        self.log_request(status)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _authorized(self) -> bool:
        state = self.server.state
        key = self.headers.get("X-Keap-API-Key")
        if key is not None:
            return secrets.compare_digest(key.encode(), state.config.api_key.encode())
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            # a service account key or PAT works as a bearer token too
            return state.access_token_valid(token) or secrets.compare_digest(token.encode(), state.config.api_key.encode())
        return False

    # --- the request -------------------------------------------------------------------------------
    def _serve(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        body = self._body()
        with state.lock:
            state.requests += 1
        if url.path == "/token":
            self._token(body)
            return
        strict = state.config.strict
        if not url.path.startswith(_PREFIX):
            if strict:
                state.record_violations([f"{self.command} {url.path}: outside the API root {api.API_ROOT}"])
            self._send(404, api.error_body(404, f"no such resource: {url.path}"), state.quota.peek())
            return
        rest = url.path[len(_PREFIX):]
        route_error: ApiError | None = None
        try:
            op, entity, ident = api.route(self.command, rest)
        except ApiError as err:  # answered after auth and quota, as Keap's gateway does
            op, entity, ident, route_error = "", "", None, err
        if not self._authorized():
            message = "Invalid API key or access token: send X-Keap-API-Key or Authorization: Bearer"
            self._answer(401, api.error_body(401, message), state.quota.peek(), op, rest, url.query, body)
            return
        allowed, retry_after, quota_headers = state.quota.take()
        if not allowed:
            headers = {**quota_headers, "Retry-After": str(retry_after)}
            self._answer(429, api.error_body(429, "Quota Exceeded"), headers, op, rest, url.query, body)
            return
        if route_error is not None:
            error_payload = api.error_body(route_error.status, route_error.message)
            self._answer(route_error.status, error_payload, quota_headers, op, rest, url.query, body)
            return
        if self._fault(op.startswith("list"), op, quota_headers):
            return
        params: dict[str, str] = {}
        for name, value in parse_qsl(url.query, keep_blank_values=True):
            # a repeated parameter (update_mask is an exploded array in the spec) is joined with
            # commas, the form non-exploded arrays (fields) arrive in
            params[name] = f"{params[name]},{value}" if name in params else value
        try:
            status, payload = api.handle(state, op, entity, ident, params, body)
        except ApiError as err:
            status, payload = err.status, api.error_body(err.status, err.message)
        except Exception:  # a sandbox bug must still answer like Keap, and be visible in the log
            log.exception("sandbox error on %s %s", self.command, url.path)
            status, payload = 500, api.error_body(500, "internal error in the sandbox")
        self._answer(status, payload, quota_headers, op, rest, url.query, body)
        state.prefetcher.start_deferred()

    def _answer(
        self, status: int, payload: bytes | None, headers: dict[str, str], op: str, rest: str, query: str, body: bytes
    ) -> None:
        """Send an API answer; in strict mode first check request and answer against the contract."""
        if self.server.state.config.strict:
            self._check(op, "/rest/v2/" + rest, query, body, status, payload)
        self._send(status, payload, headers)

    def _fault(self, is_list: bool, op: str, headers: dict[str, str]) -> bool:
        faults = self.server.state.config.faults
        if not faults.any:
            return False
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        action, value = self.server.faulter.decide(is_list)
        if action == "drop":
            self.close_connection = True
            if value:  # half an answer: the body stops short of its Content-Length
                self._truncate = True
                return False
            log.debug("fault: dropped %s", op)  # no answer at all: the client sees the connection close
            return True
        if action == "error":
            self._send(value, api.error_body(value, f"injected fault: {_REASONS[value]}"), headers)
            return True
        if action == "slow":
            time.sleep(value / 1000)
        return False

    def _check(self, op: str, spec_path: str, query: str, body: bytes, status: int, payload: bytes | None) -> None:
        from keap_pipeline.sandbox.contract.validate import validate_request, validate_response

        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        problems = validate_request(self.command, spec_path, query, parsed, bool(body))
        if op:  # an unknown operation is already reported by validate_request
            answer = json.loads(payload) if payload is not None else None
            problems += validate_response(op, status, answer, payload is not None)
        self.server.state.record_violations(problems)
        for problem in problems:
            log.warning("contract violation: %s", problem)

    def _token(self, body: bytes) -> None:
        """POST /token, grant_type=refresh_token: rotates the refresh token (the old one dies)."""
        if self.command != "POST":
            self._send(405, js({"error": "invalid_request", "error_description": "POST only"}).encode())
            return
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                client_id = client_secret = None
        config = self.server.state.config
        if not (client_id == config.oauth_client_id and client_secret is not None
                and secrets.compare_digest(client_secret.encode(), config.oauth_client_secret.encode())):
            self._send(401, js({"error": "invalid_client", "error_description": "unknown client or wrong secret"}).encode())
            return
        if form.get("grant_type") != "refresh_token":
            self._send(400, js({"error": "unsupported_grant_type", "error_description": "use grant_type=refresh_token"}).encode())
            return
        issued = self.server.state.refresh(form.get("refresh_token", ""))
        if issued is None:
            self._send(400, js({"error": "invalid_grant", "error_description": "refresh token is invalid, expired or already used"}).encode())
            return
        self._send(200, js(issued).encode())
