"""Test doubles for the Keap client tests: a fake clock and scripted MockTransport handlers."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx

from keap_pipeline.keap import ApiKeyAuth, KeapClient, Pacer, RateLimits, RetryPolicy

BASE_URL = "http://127.0.0.1:8765/crm/rest/v2"
API_KEY = "KeapAK-test-4f7d1c0ffee-SECRET"
START = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)


class FakeClock:
    """Wall-clock seconds that move only when something sleeps."""

    def __init__(self, start: datetime = START) -> None:
        self.t = start.timestamp()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.t += seconds


def keap_json(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response with a JSON body, as Keap sends it."""
    return httpx.Response(status, content=json.dumps(body).encode(), headers={
        "content-type": "application/json", **(headers or {})
    })


def error_body(status: int, message: str, code: int | None = None) -> dict[str, object]:
    """Keap's error body shape: {"code", "message", "status", "details"}."""
    return {"code": code if code is not None else status, "message": message, "status": "Error", "details": []}


class Scripted:
    """A MockTransport handler that answers from a list of responses (or exceptions) in turn."""

    def __init__(self, answers: Iterable[httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected extra request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: FakeClock,
    *,
    auth: object | None = None,
    limits: RateLimits | None = None,
    retry: RetryPolicy | None = None,
    pacing: bool = True,
) -> KeapClient:
    """A client on a MockTransport whose pacer and retries use the fake clock."""
    pacer = Pacer(limits or RateLimits.personal_key(), clock=clock.time, sleep=clock.sleep) if pacing else None

    return KeapClient(
        BASE_URL,
        auth or ApiKeyAuth(API_KEY),  # type: ignore[arg-type]
        pacer=pacer,
        pacing=pacing,
        retry=retry or RetryPolicy(rng=random.Random(7)),
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        now=clock.now,
        timeout=5.0,
    )


TOKEN_URL = "http://127.0.0.1:8765/token"
CLIENT_ID = "client-id-7c1f-SECRET"
CLIENT_SECRET = "client-secret-91ab-SECRET"


class OAuthKeap:
    """A MockTransport handler playing Keap's API and token endpoint with rotating refresh tokens.

    Only the newest refresh token works; after a refresh the previous access token is revoked.
    """

    def __init__(self, access: str = "access-0-SECRET", refresh: str = "refresh-0-SECRET", token_delay: float = 0.0) -> None:
        import threading

        self.lock = threading.Lock()
        self.valid_access = {access}
        self.valid_refresh = refresh
        self.issued = 0
        self.token_calls: list[httpx.Request] = []
        self.api_calls: list[httpx.Request] = []
        self.token_delay = token_delay
        self.on_api: Callable[[httpx.Request], None] | None = None

    def revoke_all_access(self) -> None:
        with self.lock:
            self.valid_access.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return self.token(request)
        with self.lock:
            self.api_calls.append(request)
        if self.on_api is not None:
            self.on_api(request)
        with self.lock:
            ok = request.headers.get("authorization", "").removeprefix("Bearer ") in self.valid_access
        if not ok:
            return keap_json(401, error_body(401, "Invalid Access Token"))
        return keap_json(200, {"contacts": [{"id": "1"}], "next_page_token": ""})

    def token(self, request: httpx.Request) -> httpx.Response:
        import time
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        with self.lock:
            self.token_calls.append(request)
        if self.token_delay:
            time.sleep(self.token_delay)  # widen the race window for the concurrency tests
        with self.lock:
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.valid_refresh:
                return keap_json(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})
            self.issued += 1
            access, refresh = f"access-{self.issued}-SECRET", f"refresh-{self.issued}-SECRET"
            self.valid_access = {access}
            self.valid_refresh = refresh
        return keap_json(200, {"access_token": access, "refresh_token": refresh, "expires_in": 86400,
                               "token_type": "bearer", "scope": "full"})
