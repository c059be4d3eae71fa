"""Timeline: record times as a deterministic permutation of ids, so a time window is enumerated directly."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

# Base data spans 2019-01-01 .. 2026-01-01 (UTC) for update times, creation times come before
# (2012-01-01 .. 2019-01-01); anything updated through the API gets "now", after all of them.
UPDATE_START_MS = 1_546_300_800_000
UPDATE_END_MS = 1_767_225_600_000
CREATE_START_MS = 1_325_376_000_000
CREATE_END_MS = UPDATE_START_MS


@dataclass(frozen=True)
class Timeline:
    """Update times of ids 1..n: rank(id) = ((id-1)*k + shift) mod n is a bijection with a known
    inverse, and time = start + (rank // group) * step, so the ids updated inside any window are a
    contiguous run of ranks. `group` ids share each timestamp (bulk imports do that in real Keap),
    which is what forces paging to carry (time, id) rather than time alone.
    """

    n: int
    k: int
    k_inv: int
    shift: int
    start_ms: int
    step_ms: int
    group: int

    @classmethod
    def build(cls, n: int, seed: int, salt: int, group: int = 3) -> Timeline:
        """A timeline for n ids, its permutation chosen by seed and salt.

        Args:
            n: number of ids.
            seed: the sandbox seed.
            salt: distinguishes entities with the same seed.
            group: ids per shared timestamp.

        Returns:
            The timeline.
        """
        if n <= 1:
            return cls(n, 1, 1, 0, UPDATE_START_MS, 1, group)
        # near n/phi, so ids that share a window are spread over the whole id range
        k = (int(n * 0.6180339887498949) + (seed * 7919 + salt * 104729) % max(1, n // 64)) % n or 1
        while math.gcd(k, n) != 1:
            k = k % n + 1
        slots = -(-n // group)
        step = max(1, (UPDATE_END_MS - UPDATE_START_MS) // slots)
        return cls(n, k, pow(k, -1, n), (seed * 31 + salt) % n, UPDATE_START_MS, step, group)

    def rank(self, ident: int) -> int:
        """Position of an id in update-time order.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The rank (0-based).
        """
        return ((ident - 1) * self.k + self.shift) % self.n if self.n > 1 else 0

    def ident(self, rank: int) -> int:
        """The id at a position in update-time order.

        Args:
            rank: position in update-time order.

        Returns:
            The id.
        """
        return ((rank - self.shift) * self.k_inv) % self.n + 1 if self.n > 1 else 1

    def time_ms(self, ident: int) -> int:
        """The base update time of an id, in epoch milliseconds.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            Epoch milliseconds.
        """
        return self.start_ms + (self.rank(ident) // self.group) * self.step_ms

    def _groups(self, lo_ms: int | None, hi_ms: int | None) -> tuple[int, int]:
        """First and last timestamp group inside [lo, hi] (last < first when none is)."""
        slots = -(-self.n // self.group)
        g_lo = 0 if lo_ms is None else max(0, -(-(lo_ms - self.start_ms) // self.step_ms))
        g_hi = slots - 1 if hi_ms is None else min(slots - 1, (hi_ms - self.start_ms) // self.step_ms)
        return g_lo, g_hi

    def count_window(self, lo_ms: int | None, hi_ms: int | None) -> int:
        """How many base ids have lo <= time <= hi, in O(1).

        Args:
            lo_ms: inclusive lower bound, or None.
            hi_ms: inclusive upper bound, or None.

        Returns:
            The number of ids.
        """
        g_lo, g_hi = self._groups(lo_ms, hi_ms)
        if self.n == 0 or g_hi < g_lo:
            return 0
        return min(self.n, (g_hi + 1) * self.group) - g_lo * self.group

    def iter_window(
        self, lo_ms: int | None, hi_ms: int | None, after: tuple[int, int] | None, desc: bool
    ) -> Iterator[tuple[int, int]]:
        """(time_ms, id) of every base id with lo <= time <= hi, in (time, id) order, strictly
        after the `after` key in that order. Costs O(records yielded), never O(n).

        Args:
            lo_ms: inclusive lower bound, or None.
            hi_ms: inclusive upper bound, or None.
            after: the last key already returned, or None to start at the beginning.
            desc: newest first.

        Yields:
            (time_ms, id) pairs.
        """
        if self.n == 0:
            return
        g_lo, g_hi = self._groups(lo_ms, hi_ms)
        if after is not None:
            g_after = (after[0] - self.start_ms) // self.step_ms
            if desc:
                g_hi = min(g_hi, g_after)
            else:
                g_lo = max(g_lo, g_after)
        groups = range(g_hi, g_lo - 1, -1) if desc else range(g_lo, g_hi + 1)
        for g in groups:
            t = self.start_ms + g * self.step_ms
            ids = sorted(
                (self.ident(r) for r in range(g * self.group, min(self.n, (g + 1) * self.group))),
                reverse=desc,
            )
            for ident in ids:
                key = (t, ident)
                if after is not None and (key <= after if not desc else key >= after):
                    continue
                yield key


def create_time_ms(ident: int, n: int) -> int:
    """Creation time of base id: increasing with the id (ids are handed out in creation order).

    Args:
        ident: record id (ids are 1-based).
        n: number of base records.

    Returns:
        Epoch milliseconds.
    """
    step = max(1, (CREATE_END_MS - CREATE_START_MS) // max(1, n))
    return CREATE_START_MS + (ident - 1) * step
