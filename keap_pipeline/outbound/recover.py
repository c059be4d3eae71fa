"""Before creating a record again: find the one an unconfirmed create may have made (Keap v2 has no idempotency key).

A create whose answer never arrived (the pusher was killed, the request timed out, Keap answered
5xx) leaves its item's sent_at set. Before the record is created again, Keap is asked for records
the spec's lookup finds (contacts: by the row's email, updated since the send; tags: by name,
created since). A candidate is the row's record only if all of these hold:

- Keap says it was created at or after the send (less a clock-skew allowance);
- its values are what was sent (any of the unconfirmed sends' rows), compared as the ingestion
  normalizes them;
- no row is linked to it already (a Keap record another row holds is someone else's: adopting it
  would aim this row's later writes at a record its owner may not own).

Exactly one candidate: it is adopted (linked to the row, as a create's answer would have been).
None: nothing was created; the record is created now. Several, or one Keap returns in a form the
pipeline cannot load: the item fails, naming why, and nothing is created (a person decides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keap_pipeline.db.outbound import UnconfirmedSend
from keap_pipeline.outbound.plan import Unsendable

if TYPE_CHECKING:
    from keap_pipeline.keap import KeapClient
    from keap_pipeline.outbound.spec import OutboundSpec


@dataclass(frozen=True)
class Found:
    """The outcome of a lookup: the record to adopt, or None (create it); Unsendable is raised when in doubt."""

    record: dict[str, Any] | None
    candidates: int


def _created_at(record: dict[str, Any]) -> datetime | None:
    value = record.get("create_time")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def find_created(
    spec: OutboundSpec,
    client: KeapClient,
    row: dict[str, Any],
    unconfirmed: UnconfirmedSend,
    context: Any,
    linked: Callable[[set[str]], set[str]],
) -> Found:
    """Look for the record an unconfirmed create of `row` may have made.

    Args:
        spec: the entity's spec (its lookup, comparison and skew allowance).
        client: the Keap client.
        row: the row now.
        unconfirmed: since when creates of it are unconfirmed, and the rows they sent.
        context: the spec's batch context.
        linked: which of some Keap ids belong to a row already (db.outbound.linked_keap_ids).

    Returns:
        The record to adopt, or None when Keap holds none (create it).

    Raises:
        Unsendable: Keap holds several candidates, or one the pipeline cannot load: a person decides.
    """
    since = unconfirmed.sent_at - spec.clock_skew
    candidates = [r for r in spec.lookup(client, row, unconfirmed.sent_at) if isinstance(r, dict)]
    recent = [r for r in candidates if (_created_at(r) or since) >= since and r.get("id") is not None]
    if not recent:
        return Found(None, 0)
    normalized = spec.normalize(recent)
    taken = linked({str(r["id"]) for r in recent})
    unreadable = [r for r in recent if str(r["id"]) not in normalized.values and str(r["id"]) not in taken]
    if unreadable:
        raise Unsendable(
            f"an earlier create may have reached Keap, and {len(unreadable)} record(s) created since cannot be "
            "loaded to compare; nothing is created again: link the row by hand"
        )
    matching = [
        r for r in recent
        if str(r["id"]) not in taken
        and any(spec.matches(sent, normalized.values[str(r["id"])], context) for sent in unconfirmed.payloads)
    ]
    if len(matching) > 1:
        raise Unsendable(
            f"an earlier create may have reached Keap, and {len(matching)} records created since match what was "
            "sent; nothing is created again: link the row by hand"
        )
    return Found(matching[0] if matching else None, len(recent))
