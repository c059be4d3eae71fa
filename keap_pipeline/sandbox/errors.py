"""Errors the local Keap sandbox raises on purpose."""

from __future__ import annotations

from keap_pipeline.errors import KeapPipelineError


class SandboxError(KeapPipelineError):
    """Base of every error raised by the local Keap sandbox."""


class ContractError(SandboxError):
    """The Keap spec or the derived contract cannot be read or used."""


class SandboxConfigError(SandboxError):
    """A sandbox setting is out of range."""


class TimeFormatError(SandboxError, ValueError):
    """A date-time is not full ISO-8601 with an offset, the form Keap's filters take."""


class SandboxStartError(SandboxError):
    """The sandbox server did not come up."""


class ApiError(SandboxError):
    """A request the sandbox answers with a Keap error body (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
