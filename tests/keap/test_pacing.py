"""The pacer with a fake clock: 10/s, 240/min, the UTC day, the x-keap-* headers, sharing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from keap_pipeline.keap import ApiKeyAuth, KeapClient, KeapQuotaExhausted, Pacer, RateLimits
from tests.keap.fakes import API_KEY, FakeClock


def sent_per_window(times: list[float], width: float) -> int:
    """The most requests inside any window of ``width`` seconds."""
    most = 0
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - width:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.parametrize(
    ("limits", "count", "window", "allowed", "min_elapsed"),
    [
        (RateLimits.personal_key(), 30, 1.0, 10, 2.0),       # 10 a second
        (RateLimits.personal_key(), 500, 60.0, 240, 120.0),  # 240 a minute
        (RateLimits.oauth_app(), 1600, 60.0, 1500, 60.0),    # 1500 a minute
        (RateLimits.oauth_app(), 100, 1.0, 25, 3.0),         # 25 a second
    ],
)
def test_local_windows_are_never_exceeded(
    limits: RateLimits, count: int, window: float, allowed: int, min_elapsed: float
) -> None:
    clock = FakeClock()
    pacer = Pacer(limits, clock=clock.time, sleep=clock.sleep)
    start = clock.time()
    times = []
    for _ in range(count):
        pacer.acquire()
        times.append(clock.time())
    assert sent_per_window(times, window) == allowed
    assert clock.time() - start >= min_elapsed
    assert pacer.day_count == count


def test_the_daily_limit_raises_with_the_next_utc_midnight() -> None:
    clock = FakeClock(datetime(2026, 3, 5, 23, 0, tzinfo=UTC))
    pacer = Pacer(RateLimits(per_second=1000, per_minute=100_000, per_day=50), clock=clock.time, sleep=clock.sleep)
    for _ in range(50):
        pacer.acquire()
    with pytest.raises(KeapQuotaExhausted) as info:
        pacer.acquire()
    assert info.value.resets_at == datetime(2026, 3, 6, tzinfo=UTC)
    assert "2026-03-06T00:00:00+00:00" in str(info.value)
    # at 00:00 UTC the day starts again
    clock.t = datetime(2026, 3, 6, 0, 0, 1, tzinfo=UTC).timestamp()
    pacer.acquire()
    assert pacer.day_count == 1


def test_pacing_off_never_waits() -> None:
    clock = FakeClock()
    pacer = Pacer(RateLimits.personal_key(), clock=clock.time, sleep=clock.sleep, enabled=False)
    for _ in range(1000):
        pacer.acquire()
        pacer.settle()
    assert clock.sleeps == []
    # and keeps no windows: an unpaced run of any length holds no memory per request (nor scans it)
    assert len(pacer._second) == len(pacer._minute) == 0
    assert pacer.day_count == 1000


def headers(available: int, limit: int = 240, **extra: str) -> dict[str, str]:
    return {"x-keap-product-throttle-available": str(available),
            "x-keap-product-throttle-limit": str(limit),
            "x-keap-product-throttle-time-unit": "minute",
            "x-keap-product-throttle-interval": "1", **extra}


def test_headers_with_plenty_available_do_not_slow_down() -> None:
    clock = FakeClock()
    pacer = Pacer(RateLimits(per_second=1000, per_minute=100_000), clock=clock.time, sleep=clock.sleep)
    pacer.observe(headers(200))
    for _ in range(5):
        pacer.acquire()
    assert clock.sleeps == []


def test_headers_running_low_space_requests_out_more_and_more() -> None:
    clock = FakeClock()
    pacer = Pacer(RateLimits(per_second=1000, per_minute=100_000), clock=clock.time, sleep=clock.sleep)
    pacer.acquire()
    pacer.observe(headers(24))  # 24 of 240 left: at the 10 % mark, not below it
    pacer.acquire()
    assert clock.sleeps == []
    pacer.observe(headers(20))  # below it: 60 s * 0.1 / 20 between requests
    pacer.acquire()
    assert clock.sleeps == [pytest.approx(0.3)]
    pacer.observe(headers(1))  # the last one: a tenth of the window
    pacer.acquire()
    assert clock.sleeps[1] == pytest.approx(6.0)
    assert len(clock.sleeps) == 2


def test_headers_at_zero_wait_for_the_window_to_pass() -> None:
    clock = FakeClock()
    pacer = Pacer(RateLimits(per_second=1000, per_minute=100_000), clock=clock.time, sleep=clock.sleep)
    pacer.observe(headers(0))
    pacer.acquire()
    assert sum(clock.sleeps) == pytest.approx(60.0)


def test_the_tenant_throttle_counts_when_it_is_the_tighter_one() -> None:
    clock = FakeClock()
    pacer = Pacer(RateLimits(per_second=1000, per_minute=100_000), clock=clock.time, sleep=clock.sleep)
    pacer.observe({**headers(200), "x-keap-tenant-throttle-available": "0",
                   "x-keap-tenant-throttle-limit": "5000", "x-keap-tenant-throttle-time-unit": "minute",
                   "x-keap-tenant-throttle-interval": "1"})
    assert pacer.quota is not None and pacer.quota.throttle_available == 0
    assert pacer.quota.throttle_limit == 5000
    pacer.acquire()
    assert sum(clock.sleeps) == pytest.approx(60.0)


def test_header_quota_zero_raises_until_it_expires() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock.time, sleep=clock.sleep)
    reset = clock.now() + timedelta(hours=3)
    pacer.observe({"x-keap-product-quota-available": "0", "x-keap-product-quota-limit": "30000",
                   "x-keap-product-quota-expiry-time": str(int(reset.timestamp() * 1000))})
    with pytest.raises(KeapQuotaExhausted) as info:
        pacer.acquire()
    assert info.value.resets_at == reset
    clock.t = reset.timestamp() + 1  # once the quota expiry passed, requests may go again
    pacer.acquire()


class RecordingPacer(Pacer):
    """A Pacer that remembers the clock reading of every grant (taken under its lock)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.granted: list[float] = []

    def _record(self, now: float) -> None:
        self.granted.append(now)
        super()._record(now)


def test_threads_sharing_a_pacer_stay_within_the_limits() -> None:
    lock = threading.Lock()
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.sleep(seconds)

    pacer = RecordingPacer(RateLimits(per_second=10, per_minute=10_000), clock=clock.time, sleep=sleep)

    def worker() -> None:
        for _ in range(20):
            pacer.acquire()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pacer.day_count == 80 and len(pacer.granted) == 80
    assert pacer.granted == sorted(pacer.granted)
    assert sent_per_window(pacer.granted, 1.0) <= 10


def test_clients_of_one_key_share_one_pacer_keyed_by_a_hash() -> None:
    a = KeapClient("http://127.0.0.1:1/crm/rest/v2", ApiKeyAuth(API_KEY))
    b = KeapClient("http://127.0.0.1:1/crm/rest/v2", ApiKeyAuth(API_KEY))
    c = KeapClient("http://127.0.0.1:1/crm/rest/v2", ApiKeyAuth(API_KEY + "-other"))
    try:
        assert a.pacer is b.pacer and a.pacer is not c.pacer
        assert a.pacer.limits == RateLimits.personal_key()
        keys = list(Pacer._registry)
        assert all(API_KEY not in k for k in keys)
        assert ApiKeyAuth(API_KEY).fingerprint in keys
    finally:
        for client in (a, b, c):
            client.close()


def test_a_settled_request_counts_from_its_answer_not_from_when_it_was_let_go() -> None:
    """Keap counts a request when it arrives: a request the pacer let go at 0.99 s that reached Keap
    (and was answered) at 1.04 s must keep the window after it from taking a full second's worth."""
    clock = FakeClock()
    pacer = Pacer(RateLimits(2, 1000, 10_000), clock=clock.time, sleep=clock.sleep)
    start = clock.t
    pacer.acquire()
    clock.t = start + 0.99
    pacer.acquire()  # let go at 0.99 ...
    clock.t = start + 1.04
    pacer.settle()  # ... answered at 1.04: Keap counted it in the second [1, 2)
    pacer.acquire()  # one more fits: the window holds the settled one only
    waited = pacer.acquire()  # a third in the same second would make three in Keap's [1, 2): it waits
    assert waited > 0 and clock.t >= start + 2.04 - 1e-9


def test_an_answer_to_an_earlier_request_does_not_overwrite_newer_figures() -> None:
    # two threads send (the pusher's reader and sender): A's request goes first, B's second, and B's answer
    # arrives first; A's, written by Keap before B's request was counted, must not undo it
    clock = FakeClock()
    pacer = Pacer(RateLimits(per_second=1000, per_minute=100_000), clock=clock.time, sleep=clock.sleep)
    a_sent, b_done = threading.Event(), threading.Event()

    def thread_a() -> None:
        pacer.acquire()
        a_sent.set()
        assert b_done.wait(5)
        pacer.settle()
        pacer.observe(headers(6))  # Keap's figure when A arrived

    worker = threading.Thread(target=thread_a)
    worker.start()
    assert a_sent.wait(5)
    clock.t += 0.5
    pacer.acquire()  # B
    pacer.settle()
    pacer.observe(headers(5))  # Keap's figure when B arrived: A and B counted
    b_done.set()
    worker.join(5)
    assert pacer.quota is not None and pacer.quota.throttle_available == 5
    # the next answer, to a later request, is taken as usual
    pacer.acquire()
    pacer.settle()
    pacer.observe(headers(4))
    assert pacer.quota.throttle_available == 4
