"""Tags out: create, update (update_mask), delete; a contact's tags on and off with applyTags / removeTags."""

from __future__ import annotations

from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import ADMIN, ALICE, app, one, push_now, rows, sync_now


def _tags_synced(synced: tuple[SandboxHandle, str]) -> tuple[SandboxHandle, str]:
    handle, url = synced
    sync_now(handle, url, entity="tags")
    return handle, url


def test_an_app_created_tag_gets_its_keap_id_and_comes_back_unchanged(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = _tags_synced(synced)
    assert handle.state is not None
    category = rows(url, "select keap_id, name from keap_pipeline.tag_categories order by keap_id::int limit 1")[0]
    before = handle.state.max_id("tags")
    with app(url, ALICE) as conn:
        conn.execute("insert into public.sync_tags (name, description, category, color) values"
                     " ('Gold', 'our best', %s, '#ffcc00')", (category["name"],))
    report = push_now(handle, url, entities=["tags"])
    assert report.created == 1 and report.failed == 0, report.summary()
    made = handle.state.record("tags", before + 1)
    assert made is not None and made["name"] == "Gold" and made["category"] == {"id": category["keap_id"]}
    row = rows(url, "select keap_id, keap_category_id, category, color, sync_status from public.sync_tags where name = 'Gold'")[0]
    assert row == {"keap_id": str(before + 1), "keap_category_id": category["keap_id"], "category": category["name"],
                   "color": "#ffcc00", "sync_status": "completed"}
    versions = one(url, "select sum(version) from public.sync_tags")
    assert sync_now(handle, url, entity="tags").counts.updated == 0
    assert one(url, "select sum(version) from public.sync_tags") == versions


def test_tag_update_and_delete(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = _tags_synced(synced)
    assert handle.state is not None
    # two transactions: the rename is queued (scheduled) before the delete, and is sent first; in one
    # transaction both would be due at the same moment, and their order would be that of their ids,
    # which are time-ordered to the millisecond only
    with app(url, ADMIN) as conn:
        conn.execute("update public.sync_tags set name = 'Renamed tag' where keap_id = '2'")
    with app(url, ADMIN) as conn:
        conn.execute("update public.sync_tags set deleted_at = now() where keap_id = '3'")
    report = push_now(handle, url, entities=["tags"])
    assert report.updated == 1 and report.deleted == 1, report.summary()
    assert handle.state.record("tags", 2)["name"] == "Renamed tag"  # type: ignore[index]
    assert handle.state.record("tags", 3) is None
    assert [(op, ident, m) for op, ident, m in handle.state.write_masks] == [("updateTag", 2, ("name",)), ("deleteTag", 3, None)]


def test_a_tag_category_name_no_keap_category_has_fails_the_item(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = _tags_synced(synced)
    with app(url, ALICE) as conn:
        conn.execute("insert into public.sync_tags (name, category) values ('Orphan', 'No Such Category')")
    report = push_now(handle, url, entities=["tags"])
    assert report.failed == 1 and report.sent == 0
    assert "category must name exactly one Keap tag category" in one(url, "select error_message from public.sync_queue")
    assert handle.state is not None and handle.state.writes == []


def test_a_contacts_tags_go_on_and_off(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    assert handle.state is not None
    held = list(handle.state.contact(20)["tag_ids"] or [])  # type: ignore[index]
    assert held, "the sandbox's contact 20 carries tags"
    dropped, added = held[0], "1" if "1" not in held else "2"
    with app(url) as conn:
        conn.execute("update public.sync_contacts set tags = %s::jsonb where keap_id = '20'",
                     ('["' + '","'.join([*held[1:], added]) + '"]',))
    report = push_now(handle, url)
    assert report.updated == 1, report.summary()
    assert sorted(handle.state.contact(20)["tag_ids"]) == sorted([*held[1:], added])  # type: ignore[index]
    assert [(op, ident) for op, ident in handle.state.writes] == [("removeTags", int(dropped)), ("applyTags", int(added))]
    # the same tags in another order: nothing to send (Keap keeps its own order)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set tags = (select jsonb_agg(t order by t desc) from"
                     " jsonb_array_elements(tags) as t) where keap_id = '20'")
    assert push_now(handle, url).unchanged == 1
    assert len(handle.state.writes) == 2
    assert sync_now(handle, url).counts.updated == 0
