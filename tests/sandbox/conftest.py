"""Fixtures: an in-process sandbox on a free loopback port, and an httpx client for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from keap_pipeline.sandbox import RateLimits, SandboxConfig, SandboxHandle, running_sandbox

API_KEY = "test-sandbox-key"


def small_config(**changes: object) -> SandboxConfig:
    """A small sandbox without rate limits (tests that want limits or faults say so)."""
    base = SandboxConfig(port=0, contacts=600, seed=7, api_key=API_KEY, limits=RateLimits.off())
    return base.with_(**changes)


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., SandboxHandle]]:
    """Start sandboxes (small_config(**changes)) that stop when the test ends."""
    with ExitStack() as stack:
        yield lambda **changes: stack.enter_context(running_sandbox(small_config(**changes)))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    """One shared read-only sandbox per module (tests that mutate start their own)."""
    with running_sandbox(small_config()) as handle:
        yield handle


def api(handle: SandboxHandle, key: str | None = API_KEY) -> httpx.Client:
    """A plain httpx client on the sandbox's API root."""
    headers = {"X-Keap-API-Key": key} if key is not None else {}
    return httpx.Client(base_url=handle.base_url, headers=headers, timeout=10.0)


def list_all(client: httpx.Client, path: str, list_key: str, **params: object) -> list[dict]:
    """Every record of a listing, following next_page_token until it is empty."""
    records: list[dict] = []
    query = {k: v for k, v in params.items() if v is not None}
    tokens: set[str] = set()
    while True:
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        records += body[list_key]
        token = body.get("next_page_token")
        if not token:
            return records
        assert token not in tokens, "token repeated"
        tokens.add(token)
        query["page_token"] = token
