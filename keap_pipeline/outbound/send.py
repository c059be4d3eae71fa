"""Sending one record's plan through the Keap client, and what each answer means for its queue item.

- 2xx: the next step; a create's answer links the row, and what the create could not carry
  (a contact's tags) follows as a change plan built against the created record.
- 4xx (not 404, 401/403, 429): Keap refused the request: the item fails with Keap's message,
  stripped of every value the request carried, and is not retried.
- 404: the record is gone in Keap (deleted or merged there); for a delete that is success.
- 429, 5xx, timeouts, dropped connections, unreadable answers: retried later with backoff; a 429
  surely was not acted on, the others may have been (for a create that is what the recovery
  lookup is for).
- a spent daily quota, a rejected credential: the run stops (the item was not sent).
After the last step, Keap's record is checked to hold what was sent (``verify``, batch by batch;
else the item fails, naming the columns Keap holds otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from keap_pipeline.keap.errors import (
    KeapArgumentError,
    KeapAuthError,
    KeapError,
    KeapNotFound,
    KeapQuotaExhausted,
    KeapRateLimited,
    KeapRequestError,
)
from keap_pipeline.outbound.plan import Plan, Step, Unsendable

if TYPE_CHECKING:
    from keap_pipeline.keap import KeapClient
    from keap_pipeline.outbound.spec import OutboundSpec

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_MAX_REASON = 300


@dataclass(frozen=True)
class Failure:
    """Why a plan stopped: refused (fails, not retried), gone, differs, retry (later), stop (the whole run).

    ``unsent``: Keap surely did not act on the last request.
    """

    kind: str
    reason: str
    unsent: bool
    error: KeapError | None = None


@dataclass
class Sent:
    """What sending one plan gave: Keap's record after it (None after a delete), the record a create made, a failure."""

    final: dict[str, Any] | None = None
    created: dict[str, Any] | None = None
    failure: Failure | None = None
    deleted: bool = False
    columns: tuple[str, ...] = ()


def _values(body: Any) -> Iterable[str]:
    """Every value a request body carries, as text (what a reason must never repeat)."""
    if isinstance(body, dict):
        for value in body.values():
            yield from _values(value)
    elif isinstance(body, list | tuple):
        for value in body:
            yield from _values(value)
    elif isinstance(body, str):
        yield body
    elif isinstance(body, int | float | Decimal) and not isinstance(body, bool):
        yield str(body)


def keap_reason(step: Step, err: KeapError) -> str:
    """Keap's refusal as a reason: the request (no ids), the status, Keap's message without any value sent or quoted."""
    message = err.keap_message or ""
    for value in sorted({v for v in _values(step.body) if len(v) >= 2}, key=len, reverse=True):
        message = message.replace(value, "<value>")
    message = _QUOTED.sub("<value>", message)
    said = f": {message}" if message else ""
    return f"{step.what} refused by Keap (HTTP {err.status}){said}"[:_MAX_REASON]


def _failure(step: Step, err: KeapError) -> Failure:
    if isinstance(err, KeapQuotaExhausted | KeapAuthError):
        return Failure("stop", f"{step.what}: {err}"[:_MAX_REASON], unsent=True, error=err)
    if isinstance(err, KeapRateLimited):
        return Failure("retry", f"{step.what}: throttled by Keap (HTTP 429)", unsent=True, error=err)
    if isinstance(err, KeapNotFound):
        return Failure(
            "gone", f"{step.what}: Keap answered 404: the record is not in Keap (deleted or merged there)", unsent=True
        )
    if isinstance(err, KeapArgumentError):
        return Failure("refused", f"{step.what}: not a request Keap takes ({type(err).__name__})", unsent=True)
    if isinstance(err, KeapRequestError):
        return Failure("refused", keap_reason(step, err), unsent=True, error=err)
    status = f"HTTP {err.status}" if err.status else type(err).__name__
    return Failure("retry", f"{step.what}: {status}; Keap may have acted on it", unsent=False, error=err)


def send(client: KeapClient, spec: OutboundSpec, plan: Plan, row: dict[str, Any], context: Any) -> Sent:
    """Send a plan's requests in order and check Keap's record afterwards.

    Args:
        client: the Keap client (paced, retrying within its own small budget).
        spec: the entity's spec.
        plan: what to send.
        row: the row the plan was built from.
        context: the spec's batch context.

    Returns:
        What Keap answered, or why it stopped.
    """
    out = Sent()
    steps = list(plan.steps)
    sent = list(plan.sent)
    record: dict[str, Any] | None = None
    i = 0
    while i < len(steps):
        step = steps[i]
        i += 1
        try:
            answer = client.call(
                step.method, step.path, params=step.params or None, body=step.body, idempotent=step.idempotent
            )
        except KeapNotFound as err:
            if step.gone_ok:
                out.deleted = True
                return out
            out.failure = _failure(step, err)
            return out
        except KeapError as err:
            out.failure = _failure(step, err)
            return out
        if plan.deletes:
            out.deleted = True
            return out
        if step.returns_record:
            if not isinstance(answer, dict) or not answer.get("id"):
                out.failure = Failure("retry", f"{step.what}: Keap's answer holds no record", unsent=False)
                return out
            record = answer
        if step.creates and record is not None:
            out.created = record
            # what the create could not carry (a contact's tags) follows, against the created record
            values = spec.normalize([record]).values.get(str(record["id"]))
            if values is None:
                break
            rest = [c for c in spec.changed(row, values, context) if c not in sent]
            try:
                follow = spec.change_plan(row, record, rest, context) if rest else Plan()
            except Unsendable as err:
                out.failure = Failure("refused", str(err), unsent=True)
                return out
            steps.extend(follow.steps)
            sent.extend(follow.sent)
    if record is None:
        out.failure = Failure("retry", "no step of the plan answered with the record", unsent=False)
        return out
    out.final = record
    out.columns = tuple(sent)
    return out


def verify(spec: OutboundSpec, row: dict[str, Any], values: dict[str, Any] | None, why: str | None, columns: Iterable[str], context: Any) -> Failure | None:
    """Whether Keap's record after a plan (normalized, batch by batch) holds what was sent; the failure if not.

    Args:
        spec: the entity's spec.
        row: the row the plan was built from.
        values: Keap's record as the ingestion normalizes it (None: it could not be loaded).
        why: the normalizer's reason when it could not.
        columns: the row columns the plan sent.
        context: the spec's batch context.

    Returns:
        None when Keap holds what was sent.
    """
    if values is None:
        return Failure("refused", f"Keap's answer cannot be loaded: {why or 'it is not a record'}"[:_MAX_REASON], unsent=False)
    differs = spec.changed(row, values, context, columns=columns)
    if differs:
        return Failure(
            "differs",
            f"Keap holds other values than were sent for {', '.join(differs)} (Keap may normalize or refuse them "
            "silently); the row keeps its values",
            unsent=False,
        )
    return None
