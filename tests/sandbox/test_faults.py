"""Faults on a flag: 500/502/503 answers, dropped connections, latency and a slow page."""

from __future__ import annotations

import time
from collections import Counter

import httpx

from keap_pipeline.sandbox import Faults
from tests.sandbox.conftest import api


def test_no_faults_by_default(sandbox) -> None:
    with api(sandbox) as client:
        assert {client.get("/tags").status_code for _ in range(30)} == {200}


def test_error_share_answers_500_502_503_with_keap_bodies(start_sandbox) -> None:
    handle = start_sandbox(faults=Faults(error_share=0.5))
    outcomes: Counter[int] = Counter()
    with api(handle) as client:
        for _ in range(120):
            response = client.get("/tags")
            outcomes[response.status_code] += 1
            if response.status_code != 200:
                assert response.json()["code"] == response.status_code
    assert {500, 502, 503} <= set(outcomes) and outcomes[200] > 20
    assert 30 < outcomes[500] + outcomes[502] + outcomes[503] < 90


def test_drop_share_closes_connections_without_an_answer(start_sandbox) -> None:
    handle = start_sandbox(faults=Faults(drop_share=0.3))
    dropped = ok = 0
    for _ in range(40):
        try:
            with api(handle) as client:
                assert client.get("/tags").status_code == 200
                ok += 1
        except httpx.RemoteProtocolError:
            dropped += 1
    assert dropped >= 4 and ok >= 15


def test_latency_and_slow_pages(start_sandbox) -> None:
    handle = start_sandbox(faults=Faults(latency_ms=40, slow_every=3, slow_ms=300))
    with api(handle) as client:
        times = []
        for _ in range(6):
            started = time.perf_counter()
            assert client.get("/tags", params={"page_size": 1}).status_code == 200
            times.append(time.perf_counter() - started)
        single = time.perf_counter()
        client.get("/tags/1")
        single = time.perf_counter() - single
    slow = [i for i, t in enumerate(times) if t >= 0.3]
    assert slow == [2, 5]
    assert min(times) >= 0.04 and 0.04 <= single < 0.3  # gets are never the slow page
