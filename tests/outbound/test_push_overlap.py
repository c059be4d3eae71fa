"""A batch sent while the next one is claimed, read and marked (reads on a client of their own, as the CLI and Dagster push).

What overlapping must not change: each item is sent once, a batch that stops the run or meets
Keap's throttling leaves the prepared next batch unsent and unpunished, and a kill with two batches
out (one sending, one marked in flight) loses nothing and applies nothing twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from keap_pipeline.keap import RetryPolicy
from keap_pipeline.outbound.push import PushSettings, push
from keap_pipeline.sandbox.errors import ApiError
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import app, client_for, execute, one, push_now, rows, sync_now
from tests.outbound.gates import Hold, pusher

# the longest a gate holds a request; the clients of a gated push wait longer for an answer, so that
# a held request is answered as the gate says (a 429, an update) and never becomes the client's timeout
GATE_WAIT = 20.0
GATED_TIMEOUT = GATE_WAIT + 40.0


class ListWhileWriting:
    """Holds the first contact update until the push's second listing (the next batch's conflict check) has come.

    The next batch is claimed and read while the first is out, so its listing may reach the sandbox before
    the first update does (the sender thread had not sent it yet) or while that update is held: either way
    it came before the first update was answered, which a push that reads and sends one after the other
    cannot do. (Waiting only for a listing that arrives during the hold raced with the first kind and held
    the update for the whole wait: CI, twice.)
    """

    def __init__(self, wait: float = GATE_WAIT) -> None:
        self.wait = wait
        self.writing = threading.Event()  # the first update came
        self.listed_meanwhile = threading.Event()  # ... and was let go after the second listing had come
        self._listings = 0
        self._second_listing = threading.Event()
        self._lock = threading.Lock()

    def before(self, op: str, ident: int | None) -> None:
        if op == "listContacts":
            with self._lock:
                self._listings += 1
                if self._listings >= 2:
                    self._second_listing.set()
        elif op == "updateContact" and not self.writing.is_set():
            self.writing.set()
            if self._second_listing.wait(self.wait):
                self.listed_meanwhile.set()

    def after(self, op: str, ident: int | None) -> None:
        pass


def _edit(url: str, n: int) -> None:
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Overlap ' || keap_id where keap_id::int <= %s", (n,))


def test_a_batch_is_sent_while_the_next_is_checked_and_each_item_is_sent_once(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    _edit(url, 30)
    gate = ListWhileWriting()
    handle.state.write_gate = gate
    with client_for(handle, timeout=GATED_TIMEOUT) as reader, client_for(handle, timeout=GATED_TIMEOUT) as sender:
        report = push(reader, url, settings=PushSettings(batch_size=5, retry_base_seconds=0.0), senders=[sender])
    handle.state.write_gate = None
    assert gate.listed_meanwhile.is_set(), "the next batch's listing came before the first batch's first update was answered"
    assert report.updated == 30 and report.failed == 0 and report.released == 0, report.summary()
    updates = sorted(ident or 0 for op, ident in handle.state.writes if op == "updateContact")
    assert updates == list(range(1, 31))  # each once
    assert all(handle.state.contact(i)["given_name"] == f"Overlap {i}" for i in range(1, 31))  # type: ignore[index]
    assert one(url, "select count(*) from public.sync_queue where status <> 'completed'") == 0
    assert sync_now(handle, url).counts.updated == 0  # written back: the next sync sees them unchanged


def test_one_client_for_reads_and_sends_does_one_step_after_the_other(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    _edit(url, 10)
    gate = ListWhileWriting(wait=2.0)
    handle.state.write_gate = gate
    # a KeapClient is not shared between threads: with the reader among the senders nothing overlaps
    with client_for(handle) as client:
        started = time.monotonic()
        report = push(client, url, settings=PushSettings(batch_size=5, retry_base_seconds=0.0))
    handle.state.write_gate = None
    assert not gate.listed_meanwhile.is_set() and time.monotonic() - started >= 2
    assert report.updated == 10 and report.failed == 0, report.summary()


class ThrottleFirstUpdate(ListWhileWriting):
    """Answers the first contact update 429, once the next batch's listing came meanwhile (it is prepared)."""

    def before(self, op: str, ident: int | None) -> None:
        first = op == "updateContact" and not self.writing.is_set()
        super().before(op, ident)
        if first:
            raise ApiError(429, "Request Throttled")


def test_throttling_in_one_batch_releases_the_prepared_next_one_unsent(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    _edit(url, 12)
    gate = ThrottleFirstUpdate()
    handle.state.write_gate = gate
    # clients that do not retry a 429 themselves: the queue retries it, with backoff
    with client_for(handle, retry=RetryPolicy(max_retries=0), timeout=GATED_TIMEOUT) as reader, \
            client_for(handle, retry=RetryPolicy(max_retries=0), timeout=GATED_TIMEOUT) as sender:
        first = push(reader, url, settings=PushSettings(batch_size=4, retry_base_seconds=3600.0), senders=[sender])
    handle.state.write_gate = None
    assert gate.listed_meanwhile.is_set()
    # batch 1: its throttled item retries later, its other three go back unsent; batch 2 (marked, never
    # sent) goes back unsent too; nothing more is claimed
    assert (first.claimed, first.updated, first.retried, first.released, first.failed) == (8, 0, 1, 7, 0), first.summary()
    assert "contacts: throttled by Keap (HTTP 429); the rest waits" in first.yielded
    waiting = rows(url, "select attempts, sent_at, error_message from public.sync_queue where status = 'pending'"
                   " order by attempts desc")
    assert len(waiting) == 12 and all(w["sent_at"] is None for w in waiting)
    assert [w["attempts"] for w in waiting] == [1] + [0] * 11  # an item sent back unsent spent no attempt
    assert "throttled by Keap (HTTP 429)" in str(waiting[0]["error_message"])
    execute(url, "update public.sync_queue set scheduled_at = now() where status = 'pending'")
    report = push_now(handle, url)
    assert report.updated == 12 and report.failed == 0, report.summary()
    updates = sorted(ident or 0 for op, ident in handle.state.writes if op == "updateContact")
    assert updates == list(range(1, 13))  # each change sent exactly once


def test_a_kill_with_one_batch_sending_and_the_next_marked_loses_nothing(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    _edit(url, 3)
    hold = Hold("updateContact", "after")  # applied in Keap, unanswered
    handle.state.write_gate = hold
    proc = pusher(handle, url, "--batch-size", "1")
    try:
        assert hold.reached.wait(60), proc.communicate(timeout=5)
        # the first update is applied in Keap and unanswered; the second batch gets marked in flight meanwhile
        deadline = time.monotonic() + 30
        while one(url, "select count(*) from public.sync_queue where sent_at is not null") < 2:
            assert time.monotonic() < deadline, "the next batch was not marked while the first was out"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        hold.release.set()
        time.sleep(0.2)
        handle.state.write_gate = None
    assert one(url, "select count(*) from public.sync_queue where status = 'processing' and sent_at is not null") == 2
    report = push_now(handle, url)
    assert report.failed == 0 and report.recovered == 2, report.summary()
    assert all(handle.state.contact(i)["given_name"] == f"Overlap {i}" for i in (1, 2, 3))  # type: ignore[index]
    updates = sorted(ident or 0 for op, ident in handle.state.writes if op == "updateContact")
    assert updates == [1, 2, 3]  # the applied-unanswered one is not sent again, the marked-unsent one is sent once
    assert one(url, "select count(*) from public.sync_queue where status <> 'completed'") == 0
    assert sync_now(handle, url).counts.updated == 0


def test_a_failure_while_a_batch_is_out_lands_what_it_sent(
    synced: tuple[SandboxHandle, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from keap_pipeline.outbound import push as push_module

    handle, url = synced
    assert handle.state is not None
    _edit(url, 10)
    real = push_module._prepare
    calls: list[int] = []

    def failing(run: Any, items: Any) -> Any:
        calls.append(len(items))
        if len(calls) == 2:  # the next batch's preparation fails while the first one sends
            raise RuntimeError("the database went away")
        return real(run, items)

    monkeypatch.setattr(push_module, "_prepare", failing)
    with client_for(handle) as reader, client_for(handle) as sender, pytest.raises(RuntimeError, match="went away"):
        push(reader, url, settings=PushSettings(batch_size=5, retry_base_seconds=0.0), senders=[sender])
    # the first batch was landed: what it sent completed, the rest released; nothing left in flight
    assert one(url, "select count(*) from public.sync_queue where sent_at is not null") == 0
    done = one(url, "select count(*) from public.sync_queue where status = 'completed'")
    sent = sorted(ident or 0 for op, ident in handle.state.writes if op == "updateContact")
    assert done == len(sent) and 1 <= done <= 5
    monkeypatch.setattr(push_module, "_prepare", real)
    report = push_now(handle, url)
    assert report.failed == 0 and report.updated == 10 - done, report.summary()
    assert sorted(ident or 0 for op, ident in handle.state.writes if op == "updateContact") == list(range(1, 11))
    assert one(url, "select count(*) from public.sync_queue where status <> 'completed'") == 0
