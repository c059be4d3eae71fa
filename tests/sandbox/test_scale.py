"""Scale: a time-window page costs what it returns, and memory does not grow with records served."""

from __future__ import annotations

import gc
import json
import os

import pytest

from keap_pipeline.sandbox import RateLimits, SandboxConfig
from keap_pipeline.sandbox.entities import CONTACTS, ORDERS
from keap_pipeline.sandbox.listing import list_page
from keap_pipeline.sandbox.state import SandboxState
from keap_pipeline.sandbox.timefmt import iso_ms
from tests.sandbox.conftest import api


@pytest.mark.parametrize("order_by", ["update_time asc", "update_time desc", None, "id desc"])
def test_window_pages_stay_cheap_on_a_big_account(start_sandbox, order_by: str | None) -> None:
    handle = start_sandbox(contacts=2_000_000)
    timeline = handle.state.data.timelines["contacts"]
    t = timeline.time_ms(1_234_567)
    lo, hi = t - 50 * timeline.step_ms, t + 50 * timeline.step_ms
    params = {"filter": f"start_update_time=={iso_ms(lo)};end_update_time=={iso_ms(hi)}", "page_size": 50,
              "fields": "id,update_time"}
    if order_by:
        params["order_by"] = order_by
    # count the id <-> time computations instead of timing (speed belongs to bench/): a scan of
    # the account would make 2M of them, enumerating the window a few per record returned
    calls = {"n": 0}
    for name in ("rank", "ident", "time_ms"):
        original = getattr(timeline, name)

        def counted(*args: object, _original=original) -> object:
            calls["n"] += 1
            return _original(*args)

        object.__setattr__(timeline, name, counted)
    with api(handle) as client:
        ids: list[str] = []
        while True:
            body = client.get("/contacts", params=params).json()
            ids += [c["id"] for c in body["contacts"]]
            if not body["next_page_token"]:
                break
            params["page_token"] = body["next_page_token"]
    assert "1234567" in ids and len(ids) == len(set(ids)) == timeline.count_window(lo, hi)
    assert 0 < calls["n"] < 50 * len(ids), f"{calls['n']} id/time computations for {len(ids)} records"


def _rss_bytes() -> int:
    from pathlib import Path

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_does_not_grow_with_records_served() -> None:
    state = SandboxState(SandboxConfig(contacts=200_000, limits=RateLimits.off()))
    fields = "id,given_name,family_name,email_addresses,phone_numbers,company,tag_ids,custom_fields,create_time,update_time"
    queries = [(CONTACTS, {"fields": fields, "order_by": "update_time asc", "page_size": "1000",
                           "filter": "start_update_time==2000-01-01T00:00:00.000Z"}),
               (ORDERS, {"page_size": "300"})]
    sizes = []
    try:
        for spec, params in queries:
            query = dict(params)
            for page in range(60):
                body = json.loads(list_page(state, spec, query))
                query["page_token"] = body["next_page_token"]
                if page in (9, 59):
                    gc.collect()
                    sizes.append(_rss_bytes())
    finally:
        state.prefetcher.close()
    # once the bounded caches are warm (10 pages), 50 more pages of each kind add next to nothing
    assert sizes[1] - sizes[0] < 8_000_000 and sizes[3] - sizes[2] < 8_000_000, sizes
