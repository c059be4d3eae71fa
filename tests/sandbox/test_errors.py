"""Auth, errors and quota: status codes, Keap's error bodies, x-keap-* headers, 429 with Retry-After."""

from __future__ import annotations

import time

import httpx
import pytest

from keap_pipeline.sandbox import RateLimits
from tests.sandbox.conftest import API_KEY, api


def _is_error_body(response: httpx.Response, status: int) -> None:
    body = response.json()
    assert response.status_code == status
    assert set(body) == {"code", "message", "status", "details"}
    assert body["code"] == status and isinstance(body["message"], str) and body["message"]
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_401_with_keap_body(sandbox, key: str | None) -> None:
    with api(sandbox, key=key) as client:
        response = client.get("/contacts")
    _is_error_body(response, 401)
    assert API_KEY not in response.text


def test_bearer_works_with_the_key_and_fails_with_anything_else(sandbox) -> None:
    ok = httpx.get(sandbox.base_url + "/tags", headers={"Authorization": f"Bearer {API_KEY}"})
    bad = httpx.get(sandbox.base_url + "/tags", headers={"Authorization": "Bearer nope"})
    assert ok.status_code == 200
    _is_error_body(bad, 401)


@pytest.mark.parametrize(("method", "path", "params", "status"), [
    ("GET", "/contacts/999999", None, 404),
    ("GET", "/orders/0", None, 404),
    ("GET", "/contacts/abc", None, 400),
    ("GET", "/nothing-here", None, 404),
    ("PUT", "/contacts/1", None, 405),
    # the spec has deleteOrder (the sandbox serves it, issue 13) but no delete of a subscription
    ("DELETE", "/subscriptions/1", None, 405),
    ("DELETE", "/orders/999999", None, 404),
    ("GET", "/contacts:merge", None, 405),
    ("GET", "/contacts", {"filter": "nonsense"}, 400),
    ("GET", "/contacts", {"filter": "shoe_size==9"}, 400),
    ("GET", "/contacts", {"filter": "start_update_time==2020-01-01"}, 400),
    ("GET", "/contacts", {"filter": "city==Chandler"}, 501),
    ("GET", "/contacts", {"order_by": "given_name"}, 400),
    ("GET", "/contacts", {"order_by": "id sideways"}, 400),
    ("GET", "/contacts", {"fields": "id,shoe_size"}, 400),
    ("GET", "/contacts", {"page_size": "ten"}, 400),
])
def test_error_status_and_body(sandbox, method: str, path: str, params: dict | None, status: int) -> None:
    with api(sandbox) as client:
        _is_error_body(client.request(method, path, params=params), status)


def test_quota_headers_on_every_answer(start_sandbox) -> None:
    handle = start_sandbox(limits=RateLimits(per_second=None, per_minute=1000, per_day=5000))
    with api(handle) as client:
        ok = client.get("/tags")
        missing = client.get("/tags/99999")
    for response in (ok, missing):
        for scope in ("product", "tenant"):
            for name in ("throttle-limit", "throttle-available", "throttle-used", "throttle-time-unit",
                         "throttle-interval", "quota-limit", "quota-available", "quota-used", "quota-time-unit",
                         "quota-interval", "quota-expiry-time"):
                assert f"x-keap-{scope}-{name}" in response.headers
    assert int(missing.headers["x-keap-product-quota-used"]) == int(ok.headers["x-keap-product-quota-used"]) + 1
    assert ok.headers["x-keap-product-quota-limit"] == "5000" and ok.headers["x-keap-tenant-throttle-limit"] == "1000"


def test_a_limit_switched_off_sends_no_headers_for_it(sandbox, start_sandbox) -> None:
    with api(sandbox) as client:  # every limit off: no made-up figures (they showed as quota_left 99999999)
        assert not [h for h in client.get("/tags").headers if h.startswith("x-keap-")]
    with api(start_sandbox(limits=RateLimits(per_second=None, per_minute=None, per_day=700))) as client:
        headers = client.get("/tags").headers
    assert headers["x-keap-product-quota-available"] == "699" and "x-keap-product-throttle-limit" not in headers


def test_past_the_per_second_limit_is_429_with_retry_after(start_sandbox) -> None:
    handle = start_sandbox(limits=RateLimits(per_second=3, per_minute=100, per_day=1000))
    with api(handle) as client:
        while time.time() % 1 > 0.7:  # stay inside one second window
            time.sleep(0.05)
        statuses = [client.get("/tags/categories").status_code for _ in range(4)]
        throttled = client.get("/tags/categories")
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    _is_error_body(throttled, 429)
    assert throttled.json()["message"] == "Quota Exceeded" and throttled.json()["status"] == "Request Throttled"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_past_the_daily_quota_says_when_it_resets(start_sandbox) -> None:
    handle = start_sandbox(limits=RateLimits(per_second=None, per_minute=None, per_day=2))
    with api(handle) as client:
        first = client.get("/tags")
        client.get("/tags")
        spent = client.get("/tags")
    assert first.headers["x-keap-product-quota-limit"] == "2"
    assert spent.status_code == 429 and spent.headers["x-keap-product-quota-available"] == "0"
    assert 1 <= int(spent.headers["Retry-After"]) <= 86_400
    assert spent.headers["x-keap-product-quota-expiry-time"].endswith("T00:00:00.000Z")
