"""A Keap edit made while an app edit waits is a conflict, resolved by the strategy exactly as a sync resolves it."""

from __future__ import annotations

import pytest

from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import ADMIN, app, one, push_now, rows


def _edit_both(handle: SandboxHandle, url: str, *, keap: dict[str, object]) -> dict[str, object]:
    """The app renames contact 5 (first_name); meanwhile Keap changes it too. Returns Keap's record before."""
    assert handle.state is not None
    before = handle.state.contact(5)
    assert before is not None
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'AppSide' where keap_id = '5'")
    handle.state.update_contact(5, keap)
    return before


def _conflicts(url: str) -> list[dict[str, object]]:
    return rows(url, "select resolution_strategy, resolved_at is not null as resolved, conflict_fields"
                " from public.sync_conflicts order by detected_at")


def _item(url: str) -> str:
    return one(url, "select string_agg(q.status, ',' order by q.created_at) from public.sync_queue q"
               " join public.sync_contacts c on c.id = q.entity_id where c.keap_id = '5'")


def test_keap_wins_drops_the_app_change_and_records_the_conflict(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    _edit_both(handle, url, keap={"given_name": "KeapSide"})
    report = push_now(handle, url, strategy="keap_wins")
    assert report.conflicts_keap_wins == 1 and report.sent == 0
    assert handle.state is not None and handle.state.writes == []
    assert one(url, "select first_name from public.sync_contacts where keap_id = '5'") == "KeapSide"
    assert _item(url) == "cancelled"
    assert _conflicts(url) == [{"resolution_strategy": "keap_wins", "resolved": True, "conflict_fields": ["first_name"]}]


def test_supabase_wins_sends_the_local_row(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    before = _edit_both(handle, url, keap={"family_name": "KeapFamily"})
    report = push_now(handle, url, strategy="supabase_wins")
    assert report.updated == 1, report.summary()
    assert handle.state is not None
    keap = handle.state.contact(5)
    assert keap is not None and keap["given_name"] == "AppSide"
    assert keap.get("family_name") == before.get("family_name")  # the local row won whole, as a sync keeps it
    assert [(op, sorted(m or ())) for op, _, m in handle.state.write_masks] == [("updateContact", ["family_name", "given_name"])]
    assert _item(url) == "completed"
    assert _conflicts(url) == [
        {"resolution_strategy": "supabase_wins", "resolved": True, "conflict_fields": ["first_name", "last_name"]}
    ]


def test_manual_parks_and_the_resolution_releases_the_item(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    _edit_both(handle, url, keap={"given_name": "KeapSide"})
    report = push_now(handle, url, strategy="manual")
    assert report.held == 1 and report.sent == 0
    assert handle.state is not None and handle.state.writes == []
    assert _item(url) == "held"
    assert one(url, "select sync_status from public.sync_contacts where keap_id = '5'") == "conflict"
    assert _conflicts(url) == [{"resolution_strategy": "manual", "resolved": False, "conflict_fields": ["first_name"]}]
    # still parked: another push sends nothing
    assert push_now(handle, url, strategy="manual").claimed == 0
    # an admin resolves it leaving the row as it is: the local side stands and is sent
    with app(url, ADMIN) as conn:
        conn.execute("update public.sync_conflicts set resolved_at = now(), resolution_strategy = 'manual'")
    report = push_now(handle, url, strategy="manual")
    assert report.updated == 1, report.summary()
    keap = handle.state.contact(5)
    assert keap is not None and keap["given_name"] == "AppSide"


def test_merge_takes_fields_changed_on_one_side_only(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    _edit_both(handle, url, keap={"family_name": "KeapFamily"})
    report = push_now(handle, url, strategy="merge")
    assert report.updated == 1, report.summary()
    assert handle.state is not None
    keap = handle.state.contact(5)
    assert keap is not None and keap["given_name"] == "AppSide" and keap["family_name"] == "KeapFamily"
    assert [(op, m) for op, _, m in handle.state.write_masks] == [("updateContact", ("given_name",))]
    row = rows(url, "select first_name, last_name, sync_status from public.sync_contacts where keap_id = '5'")[0]
    assert row == {"first_name": "AppSide", "last_name": "KeapFamily", "sync_status": "completed"}


@pytest.mark.parametrize(("rule", "held", "keap_name"), [("manual", 1, "KeapSide"), ("keap_wins", 0, "KeapSide"),
                                                          ("supabase_wins", 0, "AppSide")])
def test_merge_of_a_field_changed_on_both_sides_follows_the_merge_rule(
    synced: tuple[SandboxHandle, str], rule: str, held: int, keap_name: str
) -> None:
    handle, url = synced
    _edit_both(handle, url, keap={"given_name": "KeapSide"})
    report = push_now(handle, url, strategy="merge", merge_rule=rule)
    assert report.held == held, report.summary()
    assert handle.state is not None
    keap = handle.state.contact(5)
    assert keap is not None and keap["given_name"] == keap_name
