"""What a push sends for one record: a plan of Keap requests, built from the row and Keap's current record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keap_pipeline.errors import KeapPipelineError


class Unsendable(KeapPipelineError):
    """A row cannot be turned into a valid request (the reason names the field and the rule, never a value)."""


@dataclass(frozen=True)
class Step:
    """One Keap request of a plan.

    Attributes:
        what: the request in words, for reasons (``PATCH /contacts/{id}``: never a value).
        method: HTTP method.
        path: relative to the API root; every id in it is digits.
        params: query parameters.
        body: the JSON body, or None.
        idempotent: False for a create (not retried in the client after a 5xx or a timeout).
        returns_record: the answer is the record as it is now (contacts: asked with ``fields``).
        creates: the answer is the record this request created (its id links the row).
        gone_ok: a 404 means done (a delete of a record that is gone already).
    """

    what: str
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    idempotent: bool = True
    returns_record: bool = False
    creates: bool = False
    gone_ok: bool = False


@dataclass(frozen=True)
class Plan:
    """The requests that bring Keap to the row, and the row columns they send (checked against the answer)."""

    steps: tuple[Step, ...] = ()
    sent: tuple[str, ...] = ()
    deletes: bool = False

    @property
    def empty(self) -> bool:
        """Nothing to send: Keap holds the row already."""
        return not self.steps
