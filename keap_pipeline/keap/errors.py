"""The errors the Keap client raises, one narrow class per thing the caller can do about it."""

from __future__ import annotations

from datetime import datetime

from keap_pipeline.errors import KeapPipelineError


class KeapError(KeapPipelineError):
    """Base of every error raised by the Keap REST client.

    Carries the HTTP status and Keap's error ``code``/``message`` when there was a response;
    never headers, request bodies or credentials.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        keap_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.keap_message = keap_message


class KeapArgumentError(KeapError, ValueError):
    """The caller asked for something the endpoint or the client does not support."""


class KeapAuthError(KeapError):
    """Keap rejected the credentials (401/403) or an OAuth refresh failed."""


class TokenStoreError(KeapError):
    """The encrypted token store is missing, unreadable, or its encryption key is wrong."""


class KeapRateLimited(KeapError):
    """Keap kept answering 429 beyond the retry budget."""


class KeapQuotaExhausted(KeapRateLimited):
    """The daily request quota is spent; nothing more can be fetched until ``resets_at``."""

    def __init__(self, message: str, *, resets_at: datetime, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.resets_at = resets_at


class KeapServerError(KeapError):
    """Keap kept answering 5xx beyond the retry budget."""


class KeapTransportError(KeapError):
    """Timeouts or dropped connections persisted beyond the retry budget."""


class KeapConnectionRefused(KeapTransportError):
    """Nothing accepts connections at the host and port of the base URL; not retried (a refusal is an answer)."""


class KeapRequestError(KeapError):
    """Keap rejected the request itself (a 4xx other than 401/403/404/429)."""


class KeapNotFound(KeapRequestError):
    """Keap answered 404: the path or the record does not exist."""


class KeapResponseError(KeapError):
    """Keap answered 2xx with a body the client cannot read (not JSON, wrong shape)."""


class KeapPagingError(KeapResponseError):
    """The listing misbehaved: a page token came back twice, or the list key is missing."""
