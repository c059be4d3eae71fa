"""Listings in update-time order over changed, created, deleted and raw records, against a brute-force order.

The changed records are merged in from keys the state sorts once per version (SandboxState.changed_by_time),
sliced per page by the window and the page token; this holds every page of every listing to the order a
plain sort of all existing records gives, ascending and descending, with and without a window, and after
a change between two pages' requests.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from keap_pipeline.sandbox import RateLimits, SandboxConfig
from keap_pipeline.sandbox.entities import ENTITIES
from keap_pipeline.sandbox.listing import Lister
from keap_pipeline.sandbox.state import SandboxState
from keap_pipeline.sandbox.timefmt import iso_ms

# entity -> (its time ordering, its window filter fields)
TIMED = {
    "orders": ("modification_time", "modified_since_time", "modified_until_time"),
    "contacts": ("update_time", "start_update_time", "end_update_time"),
    "tags": ("update_time", "since_update_time", "until_update_time"),
}


def _state(entity: str, seed: int) -> SandboxState:
    state = SandboxState(SandboxConfig(port=0, contacts=300, orders=400, tags=300, seed=seed, limits=RateLimits.off()))
    rng = random.Random(seed)
    lister = Lister(state, ENTITIES[entity], {})
    times = [t for t in (lister._time(i) for i in range(1, state.max_id(entity) + 1)) if t is not None]
    lo, hi = min(times), max(times)
    ids = rng.sample(range(1, state.max_id(entity) + 1), 90)
    for ident in ids[:60]:  # changed, at times anywhere in the timeline and beyond it, some on an existing time
        when = rng.choice([rng.randint(lo - 10_000, hi + 10_000), rng.choice(times)])
        changed = state.update_record(entity, ident, {}, time_ms=when) if entity != "contacts" else None
        if entity == "contacts":
            state.update_contact(ident, {"given_name": f"Changed {ident}"}, None, copied=False)
        assert changed is not None or entity == "contacts"
    for ident in ids[60:75]:
        assert state.delete_record(entity, ident)
    for k in range(5):  # raw records in new slots
        state.put_raw_record(entity, f'{{"id":"{state.max_id(entity) + 1}","x":{k}}}', time_ms=rng.choice(times))
    return state


def _listing(state: SandboxState, entity: str, params: dict[str, str]) -> list[int]:
    """Every page of one listing, followed by its tokens: the ids in the order served (read from the bodies)."""
    spec, out = ENTITIES[entity], []
    page: dict[str, str] = dict(params)
    while True:
        body, token = Lister(state, spec, page).page_and_token()
        out += [int(record["id"]) for record in json.loads(body)[spec.list_key]]
        if not token:
            return out
        page = {**params, "page_token": token}


def _expected(state: SandboxState, entity: str, lo: int | None, hi: int | None, desc: bool) -> list[int]:
    lister = Lister(state, ENTITIES[entity], {})
    keys = []
    for ident in range(1, state.max_id(entity) + 1):
        if state.current(entity, ident) is None:
            continue
        t = lister._time(ident)
        assert t is not None
        if (lo is None or t >= lo) and (hi is None or t <= hi):
            keys.append((t, ident))
    return [i for _, i in sorted(keys, reverse=desc)]


@pytest.mark.parametrize("entity", list(TIMED))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_time_ordered_listings_over_changed_records_match_a_plain_sort(entity: str, seed: int) -> None:
    state = _state(entity, seed)
    order, since, until = TIMED[entity]
    all_times = sorted(t for t in (Lister(state, ENTITIES[entity], {})._time(i) for i in range(1, state.max_id(entity) + 1))
                       if t is not None)
    windows: list[tuple[int | None, int | None]] = [
        (None, None), (all_times[len(all_times) // 3], all_times[2 * len(all_times) // 3]),
        (all_times[0], all_times[5]), (all_times[-3], None),
    ]
    for lo, hi in windows:
        clauses = [f"{since}=={iso_ms(lo)}"] if lo is not None else []
        clauses += [f"{until}=={iso_ms(hi)}"] if hi is not None else []
        for direction in ("asc", "desc"):
            for size in ("7", "50"):
                params: dict[str, Any] = {"order_by": f"{order} {direction}", "page_size": size}
                if clauses:
                    params["filter"] = ";".join(clauses)
                got = _listing(state, entity, params)
                assert got == _expected(state, entity, lo, hi, direction == "desc"), (lo, hi, direction, size)


def test_a_change_between_two_pages_is_seen_by_the_next_page() -> None:
    state = _state("orders", 4)
    spec = ENTITIES["orders"]
    first = Lister(state, spec, {"order_by": "modification_time asc", "page_size": "20"})
    _, token = first.page_and_token()
    keys_before = state.changed_by_time("orders")
    # a record moves to the end of the timeline after the first page: the next page (same token) ends with it
    lister = Lister(state, spec, {})
    latest = max(t for t in (lister._time(i) for i in range(1, state.max_id("orders") + 1)) if t is not None) + 1000
    state.update_record("orders", 1, {}, time_ms=latest)
    assert state.changed_by_time("orders") is not keys_before  # a new version, new keys
    rest = _listing(state, "orders", {"order_by": "modification_time asc", "page_size": "20", "page_token": token})
    assert rest[-1] == 1 and rest.count(1) == 1
