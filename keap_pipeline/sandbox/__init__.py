"""The local Keap REST v2 sandbox: deterministic, messy data served over loopback for demo, tests and benchmarks."""

from keap_pipeline.sandbox.config import (
    Faults,
    RateLimits,
    SandboxConfig,
    add_arguments,
    config_from_args,
)
from keap_pipeline.sandbox.runner import SandboxHandle, running_sandbox, serve

__all__ = [
    "Faults",
    "RateLimits",
    "SandboxConfig",
    "SandboxHandle",
    "add_arguments",
    "config_from_args",
    "running_sandbox",
    "serve",
]
