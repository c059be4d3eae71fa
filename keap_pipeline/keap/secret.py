"""A wrapper for credentials whose repr and str are masked, so they cannot leak by accident."""

from __future__ import annotations

import hashlib
import hmac
from typing import NoReturn

MASK = "***"


class Secret:
    """A credential value that prints as ``***``; call ``reveal()`` only where it is sent."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        """Wrap ``value``.

        Args:
            value: the credential, or another Secret (unwrapped, not nested).

        Raises:
            TypeError: if value is neither a str nor a Secret.
        """
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """Return the clear value (for the one place that must send or encrypt it)."""
        return self._value

    def fingerprint(self, purpose: str) -> str:
        """A stable one-way hash of the value, safe to use as a key or to log.

        Args:
            purpose: a domain-separation label, so one hash cannot stand in for another.

        Returns:
            the hex SHA-256 of purpose + value.
        """
        return hashlib.sha256(f"{purpose}\0{self._value}".encode()).hexdigest()

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # constant time, so comparing tokens leaks nothing through timing
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]  # secrets are not dict keys; use fingerprint()

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __reduce__(self) -> NoReturn:
        # pickling would write the clear value wherever the pickle goes
        raise TypeError("Secret values cannot be pickled")


def redact(text: str, secrets: list[Secret]) -> str:
    """Replace every occurrence of the given secrets in ``text`` with ``***``.

    Args:
        text: a message that may echo a credential (e.g. a server error message).
        secrets: the credentials to mask; empty values are ignored.

    Returns:
        the text with each secret's clear value replaced.
    """
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, MASK)
    return text
