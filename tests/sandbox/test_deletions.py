"""What a reconcile pass meets in the sandbox: the spec's delete endpoints, contacts:merge, listings that leave records out."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import api, list_all

# entity -> (path, list key) of the entities the spec can delete a record of
DELETABLE = {"tags": ("/tags", "tags"), "orders": ("/orders", "orders"), "products": ("/products", "products"),
             "contacts": ("/contacts", "contacts")}


@pytest.mark.parametrize("entity", list(DELETABLE))
def test_the_specs_delete_endpoints_delete_from_listings_and_gets(start_sandbox, entity: str) -> None:
    handle = start_sandbox(contacts=60, strict=True)
    path, key = DELETABLE[entity]
    with api(handle) as client:
        before = {r["id"] for r in list_all(client, path, key, page_size=25)}
        assert client.delete(f"{path}/2").status_code == 204
        assert client.get(f"{path}/2").status_code == 404
        assert client.delete(f"{path}/2").status_code == 404
        after = {r["id"] for r in list_all(client, path, key, page_size=25)}
    assert before - after == {"2"}
    assert handle.state.violations == [], "the answers are the spec's"


def test_subscriptions_have_no_delete_endpoint_but_the_state_deletes_them(start_sandbox) -> None:
    handle = start_sandbox(contacts=60)
    with api(handle) as client:
        assert client.delete("/subscriptions/1").status_code == 405
        assert handle.state.delete_record("subscriptions", 1)
        assert client.get("/subscriptions/1").status_code == 404


def test_merging_contacts_moves_orders_and_subscriptions_and_deletes_the_duplicate(start_sandbox) -> None:
    handle = start_sandbox(contacts=40, orders=200, subscriptions=80, strict=True)
    state = handle.state
    with api(handle) as client:
        orders = list_all(client, "/orders", "orders", page_size=100)
        duplicate = next(o["contact"]["id"] for o in orders)
        primary = "1" if duplicate != "1" else "2"
        theirs = {o["id"] for o in orders if o["contact"]["id"] == duplicate}
        subs = {s["id"] for s in list_all(client, "/subscriptions", "subscriptions") if s["contact_id"] == duplicate}
        before = client.get(f"/contacts/{primary}").json()
        merged = client.post("/contacts:merge", json={"contact_id": primary, "duplicate_contact_id": duplicate})
        assert merged.status_code == 200 and merged.json()["id"] == primary
        assert client.get(f"/contacts/{duplicate}").status_code == 404
        assert client.get(f"/contacts/{primary}").json()["update_time"] > before["update_time"]
        for ident in theirs:
            moved = client.get(f"/orders/{ident}").json()
            assert moved["contact"]["id"] == primary
        for ident in subs:
            assert client.get(f"/subscriptions/{ident}").json()["contact_id"] == primary
        assert state.violations == [], "the answers are the spec's"
        # merging a contact into itself, or one that is gone, is refused
        assert client.post("/contacts:merge", json={"contact_id": primary, "duplicate_contact_id": primary}).status_code == 400
        assert client.post("/contacts:merge", json={"contact_id": primary, "duplicate_contact_id": duplicate}).status_code == 404
        assert client.post("/contacts:merge", json={"contact_id": primary}).status_code == 400
    assert theirs, "the duplicate had orders"
    # strict mode saw the request without duplicate_contact_id for what it is
    assert state.violations == ["mergeContacts: body (root): 'duplicate_contact_id' is a required property"]


def test_a_listing_can_silently_leave_records_out(start_sandbox) -> None:
    handle = start_sandbox(contacts=400)
    state = handle.state
    with api(handle) as client:
        full = [r["id"] for r in list_all(client, "/contacts", "contacts", page_size=50, fields="id")]
        state.set_hide_share(0.25)
        short = [r["id"] for r in list_all(client, "/contacts", "contacts", page_size=50, fields="id")]
        again = [r["id"] for r in list_all(client, "/contacts", "contacts", page_size=33, fields="id")]
        hidden = sorted(set(full) - set(short), key=int)
        assert client.get(f"/contacts/{hidden[0]}").status_code == 200, "gets still find a hidden record"
        state.show_in_listings()
        state.hide_from_listings("orders", [3, 4])
        orders = {r["id"] for r in list_all(client, "/orders", "orders", page_size=100)}
        state.show_in_listings()
        restored = [r["id"] for r in list_all(client, "/contacts", "contacts", page_size=50, fields="id")]
    assert len(full) == 400 and short == again, "the same records are left out on every page and request"
    assert 60 < len(full) - len(short) < 140
    assert "3" not in orders and "4" not in orders and "5" in orders
    assert restored == full
