"""The push's share of the quota: its own limits on top of the credential's pacer, both always honoured."""

from __future__ import annotations

import pytest

from keap_pipeline.keap import Pacer, RateLimits
from keap_pipeline.outbound.share import SharedPacer
from tests.keap.fakes import FakeClock


def test_a_share_paces_to_its_part_and_counts_in_the_parent() -> None:
    clock = FakeClock()
    parent = Pacer(RateLimits(10, 240, 30_000), clock=clock.time, sleep=clock.sleep)
    share = SharedPacer(parent, 0.25, clock=clock.time, sleep=clock.sleep)
    assert share.limits == RateLimits(2, 60, 7_500)
    for _ in range(60):
        share.acquire()
    # 60 requests at 2/s: the last one 29 s after the first; and the credential's pacer saw every one
    assert clock.t - FakeClock().t >= 29
    assert parent.day_count == 60 and share.day_count == 60


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        SharedPacer(Pacer(RateLimits()), 0)
    with pytest.raises(ValueError):
        SharedPacer(Pacer(RateLimits()), 1.5)
