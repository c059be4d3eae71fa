"""Refusals fail with Keap's rule (no values) and are not retried; throttling and 5xx retry with backoff; unsupported items are kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from keap_pipeline.keap import RetryPolicy
from keap_pipeline.outbound.push import PushSettings, push
from keap_pipeline.sandbox import RateLimits
from keap_pipeline.sandbox.errors import ApiError
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import ADMIN, ALICE, app, client_for, execute, one, push_now, rows


class FailWrites:
    """A sandbox write gate: the first `times` writes of `op` fail with `status`, before or after they are applied."""

    def __init__(self, op: str, status: int, times: int = 1, *, after: bool = False) -> None:
        self.op, self.status, self.left, self.at_after = op, status, times, after
        self.lock = threading.Lock()

    def _maybe(self, op: str) -> None:
        with self.lock:
            if op != self.op or self.left == 0:
                return
            self.left -= 1
        raise ApiError(self.status, f"injected {self.status}")

    def before(self, op: str, ident: int | None) -> None:
        if not self.at_after:
            self._maybe(op)

    def after(self, op: str, ident: int | None) -> None:
        if self.at_after:
            self._maybe(op)


def _queue(url: str, keap_id: str) -> list[dict[str, object]]:
    return rows(url, "select q.status, q.attempts, q.error_message, q.sent_at is not null as unconfirmed"
                " from public.sync_queue q join public.sync_contacts c on c.id = q.entity_id"
                " where c.keap_id = %s order by q.created_at", (keap_id,))


def test_a_validation_error_fails_the_item_with_keaps_rule_and_no_value(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    secret = "Bartholomew-Maximilian-Alexander-Fitzgerald"  # 43 characters: Keap takes 40 in given_name
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = %s where keap_id = '6'", (secret,))
    report = push_now(handle, url)
    assert report.failed == 1 and report.sent == 0, report.summary()
    # the strict sandbox saw the one request the spec does not allow: the app's value, sent as the app wrote it
    assert handle.state is not None and len(handle.state.violations) == 1 and "given_name" in handle.state.violations[0]
    handle.state.violations.clear()
    [item] = _queue(url, "6")
    assert item["status"] == "error" and item["attempts"] == 1 and not item["unconfirmed"]
    message = str(item["error_message"])
    assert "given_name" in message and "maxLength 40" in message and "HTTP 400" in message
    assert secret not in message and "Bartholomew" not in message
    row = rows(url, "select sync_status, sync_error from public.sync_contacts where keap_id = '6'")[0]
    assert row["sync_status"] == "error" and secret not in str(row["sync_error"])
    # not retried
    assert push_now(handle, url).claimed == 0
    # fixed in the app: the new edit is sent, and the failed item is settled by it
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Bart' where keap_id = '6'")
    assert push_now(handle, url).updated == 1
    assert [i["status"] for i in _queue(url, "6")] == ["cancelled", "completed"]
    assert handle.state is not None and handle.state.contact(6)["given_name"] == "Bart"  # type: ignore[index]


def test_retry_failed_sends_a_failed_item_again_after_the_cause_is_fixed(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    with app(url) as conn:
        conn.execute("update public.sync_contacts set email = 'not-an-email' where keap_id = '8'")
    assert push_now(handle, url).failed == 1
    assert "must be an email address" in str(_queue(url, "8")[0]["error_message"])
    # the cause is fixed where it is (here: by the operator, without a new app edit) and retried from the CLI path
    execute(url, "update public.sync_contacts set email = 'fixed@example.com' where keap_id = '8'", as_ingestion=True)
    report = push_now(handle, url, retry_failed=True)
    assert report.retried_failed == 1 and report.updated == 1, report.summary()
    assert _queue(url, "8")[0]["status"] == "completed"


def test_5xx_is_retried_with_backoff_then_fails_after_max_attempts(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    handle.state.write_gate = FailWrites("updateContact", 503, times=10)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set last_name = 'Later' where keap_id = '10'")
    first = push_now(handle, url, retry_base_seconds=3600.0)
    assert first.retried == 1 and first.failed == 0
    [item] = _queue(url, "10")
    assert item["status"] == "pending" and item["attempts"] == 1 and "HTTP 503" in str(item["error_message"])
    due = one(url, "select scheduled_at > now() + interval '20 minutes' from public.sync_queue where status = 'pending'")
    assert due, "the next attempt waits (backoff)"
    assert push_now(handle, url).claimed == 0  # not due yet
    execute(url, "update public.sync_queue set scheduled_at = now() where status = 'pending'")
    assert push_now(handle, url, retry_base_seconds=3600.0).retried == 1
    execute(url, "update public.sync_queue set scheduled_at = now() where status = 'pending'")
    last = push_now(handle, url, retry_base_seconds=3600.0)
    assert last.failed == 1
    [item] = _queue(url, "10")
    assert item["status"] == "error" and item["attempts"] == 3
    assert str(item["error_message"]).startswith("gave up after 3 attempt(s)")
    sync_status = rows(url, "select last_sync_status, retry_count from public.sync_status s"
                       " join public.sync_contacts c on c.id = s.entity_id where c.keap_id = '10'")[0]
    assert sync_status == {"last_sync_status": "error", "retry_count": 3}


def test_throttling_retries_later_and_each_change_is_sent_once(
    migrated_database: str, sandbox: Callable[..., SandboxHandle]
) -> None:
    from tests.db.identities import create_users
    from tests.outbound.conftest import sync_now

    handle = sandbox(contacts=20, limits=RateLimits(per_second=3, per_minute=None, per_day=None))
    url = migrated_database
    with psycopg.connect(url) as conn:
        create_users(conn)
    time.sleep(1.1)
    sync_now(handle, url)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'T ' || keap_id where keap_id::int <= 10")
    time.sleep(1.1)
    # an unpaced client that does not retry a 429 itself: the queue retries it, with backoff
    with client_for(handle, retry=RetryPolicy(max_retries=0)) as client:
        first = push(client, url, settings=PushSettings(retry_base_seconds=3600.0))
        assert client.stats.throttled == 1  # the sender stops at the first 429; the rest go back unsent
    assert first.retried == 1 and first.released >= 1 and first.failed == 0, first.summary()
    throttled = rows(url, "select attempts, error_message, sent_at from public.sync_queue where status = 'pending'"
                     " and error_message is not null")
    assert [(t["attempts"], t["sent_at"]) for t in throttled] == [(1, None)]
    assert "throttled by Keap (HTTP 429)" in str(throttled[0]["error_message"])
    execute(url, "update public.sync_queue set scheduled_at = now() where status = 'pending'")
    # a client that waits as Retry-After says gets through the rest
    for _ in range(5):
        time.sleep(1.1)
        with client_for(handle, retry=RetryPolicy(max_retries=5, max_wait=10.0)) as client:
            push(client, url, settings=PushSettings(retry_base_seconds=0.0))
        if one(url, "select count(*) from public.sync_queue where status <> 'completed'") == 0:
            break
    assert one(url, "select count(*) from public.sync_queue where status <> 'completed'") == 0
    assert handle.state is not None
    updates = [ident for op, ident in handle.state.writes if op == "updateContact"]
    assert sorted(updates) == list(range(1, 11))  # each change sent exactly once


def test_items_of_unsupported_entities_are_kept_with_a_reason(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    with app(url, ADMIN) as conn:
        conn.execute("insert into public.sync_orders (order_date, total_amount, currency, status, line_items)"
                     " values (now(), 10, 'USD', 'DRAFT', '[]')")
    with app(url, ALICE) as conn:
        conn.execute("insert into public.sync_products (name, price) values ('Widget', 5)")
    report = push_now(handle, url)
    assert report.unsupported == 2 and report.sent == 0
    items = rows(url, "select entity_type, status, error_message, payload is not null as kept from public.sync_queue"
                 " order by entity_type")
    assert [(i["entity_type"], i["status"], i["kept"]) for i in items] == [
        ("sync_orders", "unsupported", True), ("sync_products", "unsupported", True)
    ]
    assert all("no Keap write path for sync_" in str(i["error_message"]) for i in items)
    # a later edit of the same order: its item is kept as unsupported, superseding the older one (never dropped)
    with app(url, ADMIN) as conn:
        conn.execute("update public.sync_orders set status = 'PAID'")
    push_now(handle, url)
    assert rows(url, "select status from public.sync_queue where entity_type = 'sync_orders' order by created_at") == [
        {"status": "cancelled"}, {"status": "unsupported"}
    ]


def test_a_create_answered_5xx_after_keap_made_it_is_adopted_not_made_twice(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    handle.state.write_gate = FailWrites("createContact", 500, after=True)
    with app(url, ALICE) as conn:
        conn.execute("insert into public.sync_contacts (email, first_name) values ('once@example.com', 'Once')")
    first = push_now(handle, url, retry_base_seconds=3600.0)
    assert first.retried == 1 and first.created == 0
    assert rows(url, "select status, sent_at is not null as unconfirmed from public.sync_queue") == [
        {"status": "pending", "unconfirmed": True}
    ]
    execute(url, "update public.sync_queue set scheduled_at = now() where status = 'pending'")
    second = push_now(handle, url)
    assert second.adopted == 1 and second.failed == 0, second.summary()
    made = [i for i in range(1, handle.state.max_contact_id() + 1)
            if (handle.state.contact(i) or {}).get("email_addresses", [{}])[0].get("email") == "once@example.com"]
    assert made == [51]
    assert one(url, "select keap_id from public.sync_contacts where email = 'once@example.com'") == "51"
    assert [op for op, _ in handle.state.writes] == ["createContact"]
