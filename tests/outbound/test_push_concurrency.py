"""Two pushers at once send each item once; a push yields to a running sync of the entity."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import psycopg

from keap_pipeline.db.locks import run_lock
from keap_pipeline.outbound.push import PushReport, PushSettings, push
from keap_pipeline.sandbox import Faults
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.db.identities import create_users
from tests.outbound.conftest import app, client_for, one, push_now, sync_now


def test_two_pushers_at_once_send_each_item_once(migrated_database: str, sandbox: Callable[..., SandboxHandle]) -> None:
    handle = sandbox(contacts=300, faults=Faults(latency_ms=3))
    url = migrated_database
    with psycopg.connect(url) as conn:
        create_users(conn)
    sync_now(handle, url)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set last_name = 'Twice?' where keap_id::int <= 240")
    # a few edited again after the first edit: still one item (and one request) per record
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Again' where keap_id::int <= 20")
    reports: list[PushReport] = []
    barrier = threading.Barrier(2)

    def pusher() -> None:
        with client_for(handle) as client:
            barrier.wait()
            reports.append(push(client, url, settings=PushSettings(batch_size=10)))

    threads = [threading.Thread(target=pusher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(reports) == 2 and all(r.failed == 0 for r in reports), [r.summary() for r in reports]
    assert all(r.claimed > 0 for r in reports), "both pushers worked side by side"
    assert sum(r.claimed for r in reports) == 240
    assert handle.state is not None
    sent = Counter(ident for op, ident in handle.state.writes if op == "updateContact")
    assert sorted(sent) == list(range(1, 241)) and set(sent.values()) == {1}
    assert one(url, "select count(*) from public.sync_queue where status <> 'completed'") == 0


def test_a_push_yields_to_a_running_sync(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Waits' where keap_id = '2'")
    with run_lock(url, "contacts", wait_seconds=0, holder="keap-pipeline contacts test-run"):
        report = push_now(handle, url)
    assert report.claimed == 0 and report.yielded and "contacts" in report.yielded[0]
    assert handle.state is not None and handle.state.writes == []
    # the sync is over: the item goes
    assert push_now(handle, url).updated == 1
