"""Fixtures: sandboxes in strict mode (every request and response checked against the contract)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from keap_pipeline.sandbox import RateLimits, SandboxConfig, SandboxHandle, running_sandbox

API_KEY = "contract-key"


@pytest.fixture
def strict_sandbox() -> Iterator[Callable[..., SandboxHandle]]:
    """Start strict sandboxes that stop when the test ends; the test asserts their violations."""
    with ExitStack() as stack:

        def start(**changes: object) -> SandboxHandle:
            config = SandboxConfig(port=0, contacts=300, seed=3, api_key=API_KEY, limits=RateLimits.off(), strict=True)
            return stack.enter_context(running_sandbox(config.with_(**changes)))

        yield start
