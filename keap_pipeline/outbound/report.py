"""PushReport: what one push run did, for the CLI's lines and Dagster's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PushReport:
    """Counts of one push run (all entities), and why it stopped early, if it did.

    claimed: items claimed; recovered: of those, in flight under a pusher that died; created,
    updated, deleted: records Keap now holds as the rows say; unchanged: nothing to send (Keap held
    it already); conflicts_keap_wins: items dropped because Keap's change won (recorded in
    sync_conflicts); held: items waiting for a conflict's resolution; adopted: records an
    unconfirmed create had made, found and linked instead of created again; failed: items that
    failed (a refusal, or attempts used up); retried: items back in the queue for a later attempt;
    released: claimed items put back unsent (the run stopped); unsupported: items of entities
    without a Keap write path, kept as such; retried_failed: failed items made pending again
    (--retry-failed); yielded: entities skipped for a running sync; requests: Keap requests sent.
    """

    claimed: int = 0
    recovered: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    conflicts_keap_wins: int = 0
    held: int = 0
    adopted: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    unsupported: int = 0
    retried_failed: int = 0
    requests: int = 0
    seconds: float = 0.0
    yielded: list[str] = field(default_factory=list)
    stopped_early: str | None = None

    @property
    def sent(self) -> int:
        """Records Keap now holds as their rows say (created, updated or deleted by this run)."""
        return self.created + self.updated + self.deleted

    @property
    def per_second(self) -> float:
        """Records sent per second of the run."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for metadata."""
        data = asdict(self)
        data["sent"] = self.sent
        data["yielded"] = "; ".join(self.yielded) or "-"
        data["stopped_early"] = self.stopped_early or "-"
        data["seconds"] = round(self.seconds, 3)
        return data

    def summary(self) -> str:
        """One line for the CLI and the run log."""
        line = (
            f"push: {self.claimed} claimed ({self.recovered} recovered), {self.created} created, {self.updated} "
            f"updated, {self.deleted} deleted, {self.unchanged} unchanged, {self.conflicts_keap_wins} dropped "
            f"(Keap won), {self.held} held, {self.adopted} adopted, {self.failed} failed, {self.retried} to retry, "
            f"{self.unsupported} unsupported; {self.requests} requests in {self.seconds:.1f} s"
        )
        if self.yielded:
            line += f"; yielded: {'; '.join(self.yielded)}"
        if self.stopped_early:
            line += f"; stopped early: {self.stopped_early}"
        return line
