"""429, 5xx, timeouts, dropped connections and 4xx: waits within the budget, clear errors past it."""

from __future__ import annotations

import random
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from keap_pipeline.keap import (
    KeapAuthError,
    KeapConnectionRefused,
    KeapNotFound,
    KeapQuotaExhausted,
    KeapRateLimited,
    KeapRequestError,
    KeapServerError,
    KeapTransportError,
    RetryPolicy,
)
from tests.keap.fakes import FakeClock, Scripted, error_body, keap_json, make_client

OK = {"contacts": [{"id": "1"}], "next_page_token": ""}
THROTTLED = error_body(429, "Quota Exceeded")


def run(answers: list[object], clock: FakeClock, retry: RetryPolicy | None = None) -> tuple[Scripted, object]:
    handler = Scripted(answers)  # type: ignore[arg-type]
    with make_client(handler, clock, retry=retry) as client:
        list(client.iter_pages("contacts"))
        return handler, client.stats


def test_429_waits_retry_after_seconds() -> None:
    clock = FakeClock()
    handler, stats = run([keap_json(429, THROTTLED, {"Retry-After": "7"}), keap_json(200, OK)], clock)
    assert len(handler.requests) == 2
    assert 7.0 in clock.sleeps
    assert (stats.throttled, stats.retries, stats.requests) == (1, 1, 2)


def test_429_waits_until_retry_after_http_date() -> None:
    clock = FakeClock()
    when = format_datetime(clock.now() + timedelta(seconds=42), usegmt=True)
    handler, _ = run([keap_json(429, THROTTLED, {"Retry-After": when}), keap_json(200, OK)], clock)
    assert len(handler.requests) == 2
    assert 42.0 in clock.sleeps


def test_429_without_retry_after_uses_the_throttle_expiry_header() -> None:
    clock = FakeClock()
    expiry = str(int((clock.time() + 13) * 1000))  # epoch milliseconds, as Keap sends expiry times
    headers = {"x-keap-product-throttle-available": "0", "x-keap-product-throttle-limit": "240",
               "x-keap-product-throttle-expiry-time": expiry}
    handler, _ = run([keap_json(429, THROTTLED, headers), keap_json(200, OK)], clock)
    assert len(handler.requests) == 2
    assert sum(clock.sleeps) >= 13.0


def test_429_without_any_hint_backs_off_at_least_a_second() -> None:
    clock = FakeClock()
    handler, _ = run([keap_json(429, THROTTLED), keap_json(429, THROTTLED), keap_json(200, OK)], clock)
    assert len(handler.requests) == 3
    assert len(clock.sleeps) == 2 and all(s >= 1.0 for s in clock.sleeps)


def test_429_past_the_budget_is_keap_rate_limited() -> None:
    clock = FakeClock()
    retry = RetryPolicy(max_retries=5, max_wait=60.0, rng=random.Random(1))
    handler = Scripted([keap_json(429, THROTTLED, {"Retry-After": "3600"})])
    with make_client(handler, clock, retry=retry) as client, pytest.raises(KeapRateLimited) as info:
        list(client.iter_pages("contacts"))
    assert info.value.status == 429 and "Quota Exceeded" in str(info.value)
    assert clock.sleeps == []  # never slept an hour it could not afford


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (lambda: keap_json(503, error_body(503, "Service Unavailable")), KeapServerError),
        (lambda: keap_json(500, error_body(500, "boom")), KeapServerError),
        (lambda: httpx.ReadTimeout("timed out"), KeapTransportError),
        (lambda: httpx.ConnectTimeout("timed out"), KeapTransportError),
        (lambda: httpx.RemoteProtocolError("peer closed connection"), KeapTransportError),
        (lambda: httpx.ConnectError("[Errno 101] Network is unreachable"), KeapTransportError),
    ],
)
@pytest.mark.parametrize("budget_spent", [False, True])
def test_5xx_timeouts_and_dropped_connections(failure, error, budget_spent: bool) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    retry = RetryPolicy(max_retries=3, max_wait=100.0, base_delay=0.5, max_delay=8.0, rng=random.Random(3))
    failures = 4 if budget_spent else 3
    answers = [failure() for _ in range(failures)] + ([] if budget_spent else [keap_json(200, OK)])
    handler = Scripted(answers)
    with make_client(handler, clock, retry=retry) as client:
        if budget_spent:
            with pytest.raises(error) as info:
                list(client.iter_pages("contacts"))
            assert "budget" in str(info.value) or "attempt" in str(info.value)
        else:
            assert [p.records for p in client.iter_pages("contacts")] == [[{"id": "1"}]]
        assert client.stats.retries == 3
    assert len(handler.requests) == 4
    # full jitter: each wait within [0, min(cap, base * 2**n)]
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps):
        assert 0.0 <= slept <= min(8.0, 0.5 * 2**n)


def test_the_time_budget_stops_retries_before_the_count_does() -> None:
    clock = FakeClock()
    retry = RetryPolicy(max_retries=100, max_wait=1.0, base_delay=10.0, max_delay=10.0, rng=random.Random(5))
    handler = Scripted([keap_json(502, error_body(502, "Bad Gateway"))] * 100)
    with make_client(handler, clock, retry=retry) as client, pytest.raises(KeapServerError):
        list(client.iter_pages("contacts"))
    assert sum(clock.sleeps) <= 1.0
    assert len(handler.requests) < 100


def test_a_create_is_not_retried_after_a_5xx_or_timeout() -> None:
    for failure, error in [(keap_json(503, error_body(503, "x")), KeapServerError),
                           (httpx.ReadTimeout("timed out"), KeapTransportError)]:
        handler = Scripted([failure])
        with make_client(handler, FakeClock()) as client, pytest.raises(error) as info:
            client.create_contact({"given_name": "A"})
        assert len(handler.requests) == 1
        if error is KeapServerError:
            assert "may have happened" in str(info.value)


def test_a_create_is_retried_after_a_429() -> None:
    handler = Scripted([keap_json(429, THROTTLED, {"Retry-After": "1"}), keap_json(201, {"id": "9"})])
    with make_client(handler, FakeClock()) as client:
        assert client.create_contact({"given_name": "A"}) == {"id": "9"}


@pytest.mark.parametrize(
    ("status", "error", "says"),
    [
        (400, KeapRequestError, "fix its parameters"),
        (401, KeapAuthError, "check the API key"),
        (403, KeapAuthError, "permission or scope"),
        (404, KeapNotFound, "base URL ends in /crm/rest/v2"),
        (405, KeapRequestError, "Keap rejected"),
        (409, KeapRequestError, "Keap rejected"),
    ],
)
def test_other_4xx_are_clear_errors_without_retries(status: int, error: type, says: str) -> None:
    clock = FakeClock()
    handler = Scripted([keap_json(status, error_body(status, f"Invalid filter value ({status})"))])
    with make_client(handler, clock) as client, pytest.raises(error) as info:
        list(client.iter_pages("contacts"))
    text = str(info.value)
    assert f"HTTP {status}" in text and says in text
    assert f"Invalid filter value ({status})" in text and info.value.keap_message
    assert info.value.code == str(status) and info.value.status == status
    assert "GET /contacts" in text
    assert len(handler.requests) == 1 and clock.sleeps == []


def test_a_4xx_without_a_json_body_still_says_what_happened() -> None:
    handler = Scripted([httpx.Response(404, text="<html>nope</html>")])
    with make_client(handler, FakeClock()) as client, pytest.raises(KeapNotFound, match="HTTP 404"):
        client.get("/contacts/1")


def test_429_with_the_daily_quota_spent_raises_quota_exhausted_at_once() -> None:
    clock = FakeClock()
    reset = clock.now().replace(hour=0, minute=0, second=0) + timedelta(days=1)
    headers = {"x-keap-product-quota-available": "0", "x-keap-product-quota-limit": "30000",
               "x-keap-product-quota-expiry-time": str(int(reset.timestamp() * 1000)),
               "Retry-After": "30"}
    handler = Scripted([keap_json(429, THROTTLED, headers)])
    with make_client(handler, clock) as client, pytest.raises(KeapQuotaExhausted) as info:
        list(client.iter_pages("contacts"))
    assert info.value.resets_at == reset
    assert reset.isoformat() in str(info.value)
    assert clock.sleeps == [] and len(handler.requests) == 1  # no retries burnt on a spent day


def test_a_spent_quota_in_the_headers_stops_before_the_next_request() -> None:
    clock = FakeClock()
    reset = clock.now() + timedelta(hours=14)
    last = {"x-keap-product-quota-available": "0", "x-keap-product-quota-limit": "30000",
            "x-keap-product-quota-expiry-time": str(int(reset.timestamp() * 1000))}
    handler = Scripted([keap_json(200, {"contacts": [{"id": "1"}], "next_page_token": "t"}, last)])
    with make_client(handler, clock) as client:
        pages = client.iter_pages("contacts")
        first = next(pages)
        assert first.quota is not None and first.quota.quota_available == 0
        with pytest.raises(KeapQuotaExhausted) as info:
            next(pages)
        assert client.stats.quota_available == 0 and client.stats.quota_resets_at == info.value.resets_at
    assert len(handler.requests) == 1
    assert abs((info.value.resets_at - reset).total_seconds()) < 0.001


def test_every_request_carries_the_configured_timeout() -> None:
    handler = Scripted([keap_json(200, OK)])
    with make_client(handler, FakeClock()) as client:
        list(client.iter_pages("contacts"))
    assert handler.requests[0].extensions["timeout"] == httpx.Timeout(5.0).as_dict()


def _refused() -> httpx.ConnectError:
    # what httpx raises for ECONNREFUSED: a ConnectError caused (through httpcore) by the OSError
    error = httpx.ConnectError("[Errno 111] Connection refused")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_refused_connection_is_not_retried_and_names_host_and_port(idempotent: bool) -> None:
    clock = FakeClock()
    handler = Scripted([_refused()])
    with make_client(handler, clock) as client, pytest.raises(KeapConnectionRefused) as info:
        client.request("GET" if idempotent else "POST", "/contacts", idempotent=idempotent)
    assert len(handler.requests) == 1 and clock.sleeps == [] and client.stats.retries == 0
    assert "connection refused by 127.0.0.1:8765" in str(info.value)
    assert "KEAP_BASE_URL" in str(info.value) and "timeout" not in str(info.value)
    assert isinstance(info.value, KeapTransportError)  # callers catching the wider class still do


def test_transport_errors_past_the_budget_name_the_address_and_fitting_advice() -> None:
    for failure, advice in [(httpx.ReadTimeout("timed out"), "raise the timeout"),
                            (httpx.ConnectError("[Errno -3] Temporary failure in name resolution"),
                             "check the network and KEAP_BASE_URL")]:
        retry = RetryPolicy(max_retries=1, rng=random.Random(2))
        handler = Scripted([failure, failure])
        with make_client(handler, FakeClock(), retry=retry) as client, pytest.raises(KeapTransportError) as info:
            client.get("/contacts/1")
        assert not isinstance(info.value, KeapConnectionRefused)
        assert "to 127.0.0.1:8765" in str(info.value) and advice in str(info.value), str(info.value)
        assert len(handler.requests) == 2


def test_a_refused_connection_on_a_real_socket_fails_at_once_naming_host_and_port() -> None:
    import socket
    import time

    from keap_pipeline.keap import ApiKeyAuth, KeapClient

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock()
    started = time.monotonic()
    with KeapClient(f"http://127.0.0.1:{port}/crm/rest/v2", ApiKeyAuth("k"), pacing=False,
                    sleep=clock.sleep, timeout=2.0) as client:
        with pytest.raises(KeapConnectionRefused, match=f"connection refused by 127.0.0.1:{port}"):
            client.get("/contacts/1")
        assert client.stats.transport_errors == 1 and client.stats.retries == 0
    assert clock.sleeps == [] and time.monotonic() - started < 2.0


def test_a_503_with_retry_after_waits_at_least_that_long() -> None:
    clock = FakeClock()
    handler, stats = run([keap_json(503, error_body(503, "Service Unavailable"), {"Retry-After": "4"}),
                          keap_json(200, OK)], clock)
    assert clock.sleeps == [4.0] and stats.server_errors == 1 and len(handler.requests) == 2


def test_a_redirect_is_an_error_and_is_not_followed() -> None:
    handler = Scripted([httpx.Response(301, headers={"location": "https://elsewhere.example/steal"})])
    with make_client(handler, FakeClock()) as client, pytest.raises(KeapRequestError, match="HTTP 301.*KEAP_BASE_URL"):
        client.delete_contact("5")
    assert len(handler.requests) == 1


@pytest.mark.parametrize("base_url", ["notaurl", "ftp://127.0.0.1:8765/crm/rest/v2", "https://", "/crm/rest/v2", "http://u:secret@/x"])
def test_a_base_url_no_request_could_reach_is_refused_before_any_request(base_url: str) -> None:
    # it failed every request after the whole retry budget (about 15 s of backoff) with UnsupportedProtocol
    from keap_pipeline.keap import ApiKeyAuth, KeapArgumentError, KeapClient

    with pytest.raises(KeapArgumentError, match="not an http\\(s\\) URL with a host") as refused:
        KeapClient(base_url, ApiKeyAuth("k"), pacing=False)
    assert "secret" not in str(refused.value)


def test_http_and_https_base_urls_are_taken() -> None:
    from keap_pipeline.keap import ApiKeyAuth, KeapClient

    for base_url in ("https://api.infusionsoft.com/crm/rest/v2", "http://127.0.0.1:8765/crm/rest/v2/", "HTTPS://API.KEAP.COM/crm/rest/v2"):
        with KeapClient(base_url, ApiKeyAuth("k"), pacing=False) as client:
            assert client.base_url == base_url.rstrip("/")
