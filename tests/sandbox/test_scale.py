"""At 2M contacts a time-window page costs what it returns, not the size of the account."""

from __future__ import annotations

import time

import pytest

from tests.sandbox.conftest import api


@pytest.mark.parametrize("order_by", ["update_time asc", "update_time desc", None, "id desc"])
def test_window_pages_stay_cheap_on_a_big_account(start_sandbox, order_by: str | None) -> None:
    handle = start_sandbox(contacts=2_000_000)
    timeline = handle.state.data.timelines["contacts"]
    t = timeline.time_ms(1_234_567)
    lo, hi = t - 50 * timeline.step_ms, t + 50 * timeline.step_ms
    from keap_pipeline.sandbox.timefmt import iso_ms

    params = {"filter": f"start_update_time=={iso_ms(lo)};end_update_time=={iso_ms(hi)}", "page_size": 50,
              "fields": "id,update_time"}
    if order_by:
        params["order_by"] = order_by
    with api(handle) as client:
        started = time.perf_counter()
        ids: list[str] = []
        while True:
            body = client.get("/contacts", params=params).json()
            ids += [c["id"] for c in body["contacts"]]
            if not body["next_page_token"]:
                break
            params["page_token"] = body["next_page_token"]
        elapsed = time.perf_counter() - started
    assert "1234567" in ids and len(ids) == len(set(ids)) == timeline.count_window(lo, hi)
    assert elapsed < 0.6  # walking 2M ids checking their times takes over a second
