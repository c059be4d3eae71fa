"""Create, update (update_mask) and delete contacts through the API and through SandboxHandle.state."""

from __future__ import annotations

from tests.sandbox.conftest import api, list_all

WINDOW_FROM_NOW = "start_update_time=={}"


def test_create_update_delete_round_trip(start_sandbox) -> None:
    handle = start_sandbox(contacts=50)
    with api(handle) as client:
        created = client.post("/contacts", json={"given_name": "Zoë", "family_name": "Ñúñez",
                                                 "email_addresses": [{"email": "zoe@example.com", "field": "EMAIL1"}]})
        assert created.status_code == 201
        new = created.json()
        assert new["id"] == "51" and new["create_time"] == new["update_time"]
        assert client.get("/contacts/51").json()["given_name"] == "Zoë"

        before = client.get("/contacts/7").json()
        patched = client.patch("/contacts/7", params={"update_mask": "given_name"},
                               json={"given_name": "Łukasz", "family_name": "ignored"})
        assert patched.status_code == 200
        after = patched.json()
        assert after["given_name"] == "Łukasz" and after["family_name"] == before["family_name"]
        assert after["update_time"] > before["update_time"]

        assert client.delete("/contacts/8").status_code == 204
        assert client.get("/contacts/8").status_code == 404
        assert client.delete("/contacts/8").status_code == 404
        ids = [c["id"] for c in list_all(client, "/contacts", "contacts", page_size=7)]
    assert "8" not in ids and "51" in ids and len(ids) == len(set(ids)) == 50


def test_an_updated_contact_moves_into_the_later_window(start_sandbox) -> None:
    handle = start_sandbox(contacts=200)
    with api(handle) as client:
        stamp = client.get("/contacts/10").json()["update_time"]
        handle.state.update_contact(10, {"job_title": "Changed"})
        handle.state.delete_contact(11)
        later = list_all(client, "/contacts", "contacts", order_by="update_time asc",
                         filter="start_update_time==2026-01-01T00:00:00.000Z", fields="id,job_title,update_time")
        old = list_all(client, "/contacts", "contacts", filter=f"start_update_time=={stamp};end_update_time=={stamp}")
    assert [c["id"] for c in later] == ["10"] and later[0]["job_title"] == "Changed"
    assert "10" not in {c["id"] for c in old}


def test_paging_stays_exact_while_contacts_change_underneath(start_sandbox) -> None:
    handle = start_sandbox(contacts=300)
    seen: list[str] = []
    with api(handle) as client:
        query: dict[str, object] = {"page_size": 25}
        step = 0
        while True:
            body = client.get("/contacts", params=query).json()
            seen += [c["id"] for c in body["contacts"]]
            step += 1
            # change records behind and ahead of the cursor, and add new ones
            handle.state.update_contact(step, {"given_name": f"Step {step}"})
            handle.state.update_contact(300 - step, {"given_name": f"Ahead {step}"})
            if step == 3:
                handle.state.delete_contact(250)
            if not body["next_page_token"]:
                break
            query["page_token"] = body["next_page_token"]
    assert len(seen) == len(set(seen))
    assert set(seen) == {str(i) for i in range(1, 301)} - {"250"}


def test_bad_bodies_are_400(start_sandbox) -> None:
    handle = start_sandbox(contacts=5)
    with api(handle) as client:
        nothing = client.post("/contacts", json={"given_name": "No way to reach me"})
        too_long = client.post("/contacts", json={"given_name": "x" * 41, "phone_numbers": [{"number": "1"}]})
        not_json = client.post("/contacts", content=b"{", headers={"Content-Type": "application/json"})
        bad_mask = client.patch("/contacts/1", params={"update_mask": "shoe_size"}, json={})
        missing = client.patch("/contacts/99", json={"given_name": "x"})
    assert [r.status_code for r in (nothing, too_long, not_json, bad_mask, missing)] == [400, 400, 400, 400, 404]
    assert "given_name" in too_long.json()["message"]


def test_a_prefetched_page_is_never_served_after_a_change(start_sandbox) -> None:
    handle = start_sandbox(contacts=100)
    with api(handle) as client:
        first = client.get("/contacts", params={"page_size": 10, "fields": "id,given_name"}).json()
        second = client.get("/contacts", params={"page_size": 10, "fields": "id,given_name",
                                                 "page_token": first["next_page_token"]}).json()
        assert handle.state.prefetcher.hits == 1  # page 2 was rendered while page 1 was read
        handle.state.update_contact(25, {"given_name": "Changed after prefetch"})
        third = client.get("/contacts", params={"page_size": 10, "fields": "id,given_name",
                                                "page_token": second["next_page_token"]}).json()
    assert [c["id"] for c in second["contacts"]] == [str(i) for i in range(11, 21)]
    assert {c["id"]: c["given_name"] for c in third["contacts"]}["25"] == "Changed after prefetch"
