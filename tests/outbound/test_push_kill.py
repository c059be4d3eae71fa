"""A pusher killed (SIGKILL, a real subprocess) at each step: nothing is lost, nothing is created twice, Keap ends as the rows say.

Kill points: while the claimed items are checked against Keap (a listing held), in flight before Keap
acted on the request (the write held before it is applied, then refused), and after Keap acted but
before its answer arrived (held after it is applied); then a second pusher recovers. The write
back itself is one transaction: a kill before its commit is the last case, after it there is
nothing left to do.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import ALICE, app, one, push_now, rows, sync_now
from tests.outbound.gates import Hold, pusher


def _kill_at(handle: SandboxHandle, url: str, hold: Hold) -> dict[str, Any]:
    """Start a pusher, kill it when the sandbox holds its request, let the request go; the queue item then."""
    assert handle.state is not None
    handle.state.write_gate = hold
    proc = pusher(handle, url)
    try:
        assert hold.reached.wait(60), proc.communicate(timeout=5)
        item = rows(url, "select status, claim_key is not null as claimed, sent_at is not null as in_flight"
                    " from public.sync_queue where status in ('pending', 'processing')")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        hold.refuse = hold.where == "before" and hold.op != "listContacts"
        hold.release.set()
        time.sleep(0.2)  # the held request finishes (into a closed socket)
        handle.state.write_gate = None
    assert len(item) == 1
    return item[0]


_POINTS = [
    pytest.param("listContacts", "before", {"status": "pending", "claimed": True, "in_flight": False}, id="checking"),
    pytest.param("write", "before", {"status": "processing", "claimed": True, "in_flight": True}, id="in-flight-unapplied"),
    pytest.param("write", "after", {"status": "processing", "claimed": True, "in_flight": True}, id="applied-unanswered"),
]


@pytest.mark.parametrize(("op", "where", "expected"), _POINTS)
def test_killed_update_is_sent_once_and_written_back(
    synced: tuple[SandboxHandle, str], op: str, where: str, expected: dict[str, bool]
) -> None:
    handle, url = synced
    assert handle.state is not None
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Survivor' where keap_id = '12'")
    assert _kill_at(handle, url, Hold("updateContact" if op == "write" else op, where)) == expected
    report = push_now(handle, url)
    assert report.failed == 0 and report.recovered == (1 if expected["in_flight"] else 0), report.summary()
    assert handle.state.contact(12)["given_name"] == "Survivor"  # type: ignore[index]
    applied = [w for w in handle.state.writes if w == ("updateContact", 12)]
    assert len(applied) == 1  # applied exactly once: after an applied-unanswered PATCH nothing is sent again
    assert one(url, "select status from public.sync_queue") == "completed"
    assert sync_now(handle, url).counts.updated == 0


@pytest.mark.parametrize(("where",), [pytest.param("before", id="in-flight-unapplied"), pytest.param("after", id="applied-unanswered")])
def test_killed_create_makes_one_keap_contact(synced: tuple[SandboxHandle, str], where: str) -> None:
    handle, url = synced
    assert handle.state is not None
    with app(url, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name, tags) values ('killed@example.com', 'Kay', '[\"3\"]')")
    assert _kill_at(handle, url, Hold("createContact", where)) == {"status": "processing", "claimed": True, "in_flight": True}
    report = push_now(handle, url)
    assert report.failed == 0 and report.recovered == 1, report.summary()
    assert report.adopted == (1 if where == "after" else 0) and report.created == (0 if where == "after" else 1)
    made = [i for i in range(1, handle.state.max_contact_id() + 1)
            if ((handle.state.contact(i) or {}).get("email_addresses") or [{}])[0].get("email") == "killed@example.com"]
    assert len(made) == 1, "exactly one Keap contact"
    assert one(url, "select keap_id from public.sync_contacts where email = 'killed@example.com'") == str(made[0])
    assert handle.state.contact(made[0])["tag_ids"] == ["3"]  # type: ignore[index]
    assert one(url, "select string_agg(status, ',') from public.sync_queue") == "completed"
    assert sync_now(handle, url).counts.inserted == 0


@pytest.mark.parametrize(("where",), [pytest.param("before", id="in-flight-unapplied"), pytest.param("after", id="applied-unanswered")])
def test_killed_delete_deletes_once(synced: tuple[SandboxHandle, str], where: str) -> None:
    handle, url = synced
    assert handle.state is not None
    with app(url) as conn:
        conn.execute("update public.sync_contacts set deleted_at = now() where keap_id = '13'")
    _kill_at(handle, url, Hold("deleteContact", where))
    report = push_now(handle, url)
    assert report.failed == 0, report.summary()
    assert handle.state.contact(13) is None
    assert handle.state.writes.count(("deleteContact", 13)) == 1
    assert one(url, "select status from public.sync_queue") == "completed"
