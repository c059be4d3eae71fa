"""A share of the credential's quota for the pusher: its own limits on top of the pacer every client shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keap_pipeline.keap.pacing import Pacer, RateLimits
from keap_pipeline.keap.quota import QuotaState


class SharedPacer(Pacer):
    """Paces to ``share`` of the limits, and through the credential's pacer too (so both always hold).

    The ingestion and the push use one key and one budget: give the pusher e.g. 0.2 and it sends at
    most a fifth of the requests per second, minute and day, while the syncs' pacer (the same
    credential's, Pacer.shared) still sees every request.
    """

    def __init__(self, parent: Pacer, share: float, **kwargs: Any) -> None:
        """Configure the share.

        Args:
            parent: the credential's pacer (every client of the key uses it).
            share: a fraction in (0, 1].
            **kwargs: clock, sleep, low_water, as Pacer takes them.

        Raises:
            ValueError: a share outside (0, 1].
        """
        if not 0 < share <= 1:
            raise ValueError(f"the push's quota share must be in (0, 1], got {share}")
        limits = parent.limits
        super().__init__(
            RateLimits(
                max(1, int(limits.per_second * share)),
                max(1, int(limits.per_minute * share)),
                max(1, int(limits.per_day * share)),
            ),
            enabled=parent.enabled,
            **kwargs,
        )
        self.parent = parent

    def acquire(self) -> float:
        """Wait for the share, then for the credential's pacer."""
        return super().acquire() + self.parent.acquire()

    def settle(self) -> None:
        """The request is answered: settled in this pacer and the credential's."""
        super().settle()
        self.parent.settle()

    def observe(self, headers: Mapping[str, str]) -> QuotaState | None:
        """Keap's figures go to the credential's pacer (and this one)."""
        super().observe(headers)
        return self.parent.observe(headers)
