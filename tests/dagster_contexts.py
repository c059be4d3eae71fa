"""Dagster's direct-invocation contexts, their ephemeral instance entered and exited inside the test.

`build_asset_check_context()` without an instance enters an ephemeral DagsterInstance that its context
exits only when the garbage collector takes it, and that exit resets a ContextVar of dagster's in the
middle of whichever test runs then (tests/conftest.py, `_no_dagster_state_storage_from_earlier_tests`).
Here the instance is a `with`'s, exited when the check returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dagster import DagsterInstance, build_asset_check_context


def run_asset_check(check: Callable[..., Any], *, resources: Mapping[str, Any] | None = None, **params: Any) -> Any:
    """Invoke an asset check directly (resources as build_asset_check_context takes them, params as the check's)."""
    with DagsterInstance.ephemeral() as instance:
        return check(build_asset_check_context(resources=resources, instance=instance), **params)
