"""The id <-> update-time permutation: a bijection, and window enumeration equal to brute force."""

from __future__ import annotations

import pytest

from keap_pipeline.sandbox.timeline import Timeline


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1024, 9973])
def test_rank_is_a_bijection_with_its_inverse(n: int) -> None:
    tl = Timeline.build(n, seed=3, salt=1)
    ranks = [tl.rank(i) for i in range(1, n + 1)]
    assert sorted(ranks) == list(range(n))
    assert all(tl.ident(tl.rank(i)) == i for i in range(1, n + 1))


@pytest.mark.parametrize("desc", [False, True])
def test_window_enumeration_matches_brute_force(desc: bool) -> None:
    n = 5000
    tl = Timeline.build(n, seed=11, salt=2)
    times = sorted(((tl.time_ms(i), i) for i in range(1, n + 1)), reverse=desc)
    lo, hi = times[len(times) // 5][0], times[len(times) // 2][0]
    lo, hi = min(lo, hi), max(lo, hi)
    expected = [k for k in times if lo <= k[0] <= hi]
    assert list(tl.iter_window(lo, hi, None, desc)) == expected
    # resuming after any key gives exactly the rest
    cut = expected[len(expected) // 3]
    assert list(tl.iter_window(lo, hi, cut, desc)) == expected[len(expected) // 3 + 1 :]
    # several ids share a timestamp (paging must carry the id too)
    assert len({t for t, _ in times}) < n


def test_window_costs_the_records_it_yields_not_n() -> None:
    tl = Timeline.build(10_000_000, seed=1, salt=1)
    t = tl.time_ms(123_456)
    window = list(tl.iter_window(t, t, None, False))
    assert (t, 123_456) in window
    assert len(window) <= tl.group


def test_count_window_matches_enumeration() -> None:
    tl = Timeline.build(7777, seed=5, salt=3)
    times = sorted(tl.time_ms(i) for i in range(1, 7778))
    for lo, hi in [(None, None), (times[100], times[2000]), (times[0] - 5, times[0] - 1), (times[-1], None)]:
        assert tl.count_window(lo, hi) == len(list(tl.iter_window(lo, hi, None, False)))
