"""App changes of contacts reach Keap through the sandbox over a real socket, and come back as unchanged."""

from __future__ import annotations

from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import ALICE, app, one, push_now, rows, sync_now


def _state(handle: SandboxHandle):  # noqa: ANN202 - the in-process sandbox's state
    assert handle.state is not None
    return handle.state


def test_an_app_edit_reaches_keap_and_comes_back_unchanged(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    state = _state(handle)
    before = state.contact(7)
    assert before is not None
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Renamed' where keap_id = '7'")
    report = push_now(handle, url)
    assert report.updated == 1 and report.failed == 0, report.summary()
    after = state.contact(7)
    assert after is not None and after["given_name"] == "Renamed"
    assert after["family_name"] == before.get("family_name")  # only the masked property changed
    assert state.writes == [("updateContact", 7)]
    item = rows(url, "select status, sent_at, claim_key from public.sync_queue where entity_id ="
                " (select id from public.sync_contacts where keap_id = '7')")
    assert [(i["status"], i["sent_at"], i["claim_key"]) for i in item] == [("completed", None, None)]
    audit = rows(url, "select sync_source, operation, changed_fields from public.sync_audit_log a"
                 " join public.sync_contacts c on c.id = a.entity_id where c.keap_id = '7' order by a.created_at")
    assert [a["sync_source"] for a in audit] == ["keap", "supabase", "push"]

    # the next sync sees Keap's record as the row already holds it: no version, no audit row, no queue row
    counts = "select (select count(*) from public.sync_audit_log), (select count(*) from public.sync_queue),"
    counts += " (select version from public.sync_contacts where keap_id = '7')"
    snapshot = rows(url, counts)
    report_sync = sync_now(handle, url)
    assert report_sync.counts.updated == 0 and report_sync.counts.conflicts == 0
    assert rows(url, counts) == snapshot
    assert one(url, "select first_name from public.sync_contacts where keap_id = '7'") == "Renamed"


def _contact_id(url: str, keap_id: str) -> object:
    return one(url, "select id from public.sync_contacts where keap_id = %s", (keap_id,))


def test_an_app_created_contact_gets_its_keap_id(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    state = _state(handle)
    with app(url, ALICE) as conn:
        conn.execute(
            "insert into public.sync_contacts (email, first_name, last_name, phone, custom_fields, tags)"
            " values ('new@example.com', 'Nova', 'Newman', '+1 555 0100;ext=7', '{\"3\": \"yes\", \"12\": 12.50}', '[\"2\"]')"
        )
    report = push_now(handle, url)
    assert report.created == 1 and report.failed == 0, report.summary()
    row = rows(url, "select * from public.sync_contacts where email = 'new@example.com'")[0]
    assert row["keap_id"] == "51" and row["created_by"] == ALICE and row["sync_status"] == "completed"
    keap = state.contact(51)
    assert keap is not None
    assert keap["given_name"] == "Nova" and keap["email_addresses"][0]["email"] == "new@example.com"
    assert keap["phone_numbers"][0]["number"] == "+1 555 0100" and keap["phone_numbers"][0]["extension"] == "7"
    assert keap["tag_ids"] == ["2"]
    assert [w[0] for w in state.writes] == ["createContact", "applyTags"]
    # written back in the completing transaction, audited as a push; the next sync finds nothing to do
    assert row["keap_updated_at"] is not None and row["keap_hash"] is not None
    snapshot = rows(url, "select (select count(*) from public.sync_audit_log) a, (select count(*) from public.sync_queue) q,"
                    " (select version from public.sync_contacts where keap_id = '51') v")
    report_sync = sync_now(handle, url)
    assert report_sync.counts.inserted == 0 and report_sync.counts.updated == 0
    assert rows(url, "select (select count(*) from public.sync_audit_log) a, (select count(*) from public.sync_queue) q,"
                " (select version from public.sync_contacts where keap_id = '51') v") == snapshot


def test_an_app_delete_deletes_in_keap(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    state = _state(handle)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set deleted_at = now() where keap_id = '9'")
    report = push_now(handle, url)
    assert report.deleted == 1, report.summary()
    assert state.contact(9) is None and state.writes == [("deleteContact", 9)]
    assert one(url, "select status from public.sync_queue where entity_id = %s", (_contact_id(url, "9"),)) == "completed"
    # a second delete of a contact Keap no longer has is done, not an error
    assert push_now(handle, url).claimed == 0


def test_ten_queued_edits_of_one_contact_make_one_request(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    state = _state(handle)
    for n in range(10):
        with app(url) as conn:
            conn.execute("update public.sync_contacts set first_name = %s where keap_id = '3'", (f"Edit {n}",))
    assert one(url, "select count(*) from public.sync_queue where status = 'pending'") == 1
    requests_before = state.requests
    report = push_now(handle, url)
    assert report.updated == 1 and state.writes == [("updateContact", 3)]
    assert state.contact(3)["given_name"] == "Edit 9"  # type: ignore[index]
    # one write; the conflict check read Keap's record once (one listing for the whole batch)
    assert state.requests - requests_before == 2 == report.requests


def test_update_mask_names_only_the_fields_the_app_changed(synced: tuple[SandboxHandle, str]) -> None:
    handle, url = synced
    state = _state(handle)
    before = state.contact(4)
    assert before is not None
    with app(url) as conn:
        conn.execute("update public.sync_contacts set last_name = 'Other', email = 'changed@example.com' where keap_id = '4'")
    push_now(handle, url)
    assert [(op, ident, sorted(mask or ())) for op, ident, mask in state.write_masks] == [
        ("updateContact", 4, ["email_addresses", "family_name"])
    ]
    after = state.contact(4)
    assert after is not None
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == ["email_addresses", "family_name", "update_time"]
    # the other email slots Keap holds stay as they were (PATCH replaces the list: the pusher sends them all)
    assert [e["field"] for e in after["email_addresses"]] == [e["field"] for e in before["email_addresses"]]
