"""The sandbox takes the pusher's writes as Keap checks them: tags and their contacts, refusals naming the rule only."""

from __future__ import annotations

from tests.sandbox.conftest import api


def test_tag_create_update_delete_and_tags_on_contacts(start_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle = start_sandbox(contacts=20, strict=True)
    state = handle.state
    with api(handle) as client:
        category = client.get("/tags/categories").json()["tag_categories"][0]["id"]
        made = client.post("/tags", json={"name": "Gold", "category": {"id": category}})
        assert made.status_code == 201
        tag = made.json()["id"]
        patched = client.patch(f"/tags/{tag}", params={"update_mask": "description"}, json={"description": "best", "name": "ignored"})
        assert patched.status_code == 200 and patched.json()["name"] == "Gold" and patched.json()["description"] == "best"
        applied = client.post(f"/tags/{tag}/contacts:applyTags", json={"contact_ids": ["3", "999"]})
        assert applied.json() == {"results": {"3": "SUCCESS", "999": "NOT_FOUND"}}
        assert tag in client.get("/contacts/3", params={"fields": "tag_ids"}).json()["tag_ids"]
        assert client.post(f"/tags/{tag}/contacts:removeTags", json={"contact_ids": ["3"]}).status_code == 204
        assert tag not in client.get("/contacts/3", params={"fields": "tag_ids"}).json().get("tag_ids", [])
        listed = client.get("/tags", params={"filter": f"tag_ids=={tag}"}).json()["tags"]
        assert [t["id"] for t in listed] == [tag]
        assert client.delete(f"/tags/{tag}").status_code == 204
        assert client.get(f"/tags/{tag}").status_code == 404
        assert client.post("/tags/999/contacts:applyTags", json={"contact_ids": ["3"]}).status_code == 404
    assert [op for op, _ in state.writes] == ["createTag", "updateTag", "applyTags", "removeTags", "deleteTag"]
    assert state.write_masks[1] == ("updateTag", int(tag), ("description",))
    assert state.violations == []


def test_refusals_name_the_field_and_the_rule_never_the_value(start_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle = start_sandbox(contacts=5, strict=True)
    long_name = "Wolfeschlegelsteinhausenbergerdorff-the-Elder"
    with api(handle) as client:
        cases = [
            ("PATCH", "/contacts/1", {"given_name": long_name}, "given_name: maxLength 40"),
            ("PATCH", "/contacts/1", {"email_addresses": [{"email": "not-an-address", "field": "EMAIL1"}]},
             "email_addresses/0/email: must be an email address"),
            ("PATCH", "/contacts/1", {"email_addresses": [{"email": "a" * 70 + "@x.example", "field": "EMAIL1"}]},
             "at most 75 characters in EMAIL1"),
            ("PATCH", "/contacts/1", {"given_name": 5}, "given_name: must be of type string"),
            ("POST", "/tags", {"description": "no name"}, "name: required, not blank"),
            ("POST", "/tags", {"name": "x", "category": {"id": "4242"}}, "category/id: must name an existing tag category"),
            ("POST", "/tags/1/contacts:applyTags", {"contact_ids": []}, "contact_ids"),
        ]
        for method, path, body, rule in cases:
            answer = client.request(method, path, json=body)
            assert answer.status_code == 400, (path, body)
            message = answer.json()["message"]
            assert rule in message, message
            assert long_name not in message and "not-an-address" not in message and "no name" not in message
    assert handle.state.writes == []


def test_the_gate_holds_a_write_before_and_after_it_is_applied(start_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle = start_sandbox(contacts=5)
    state = handle.state
    seen: list[tuple[str, str, int | None]] = []

    class Gate:
        def before(self, op: str, ident: int | None) -> None:
            seen.append(("before", op, ident))
            assert state.contact(2)["given_name"] != "Held"  # not applied yet

        def after(self, op: str, ident: int | None) -> None:
            seen.append(("after", op, ident))
            assert state.contact(2)["given_name"] == "Held"  # applied, not answered yet

    state.write_gate = Gate()
    with api(handle) as client:
        answer = client.patch("/contacts/2", params={"update_mask": "given_name"}, json={"given_name": "Held"})
    assert answer.status_code == 200
    assert seen == [("before", "updateContact", 2), ("after", "updateContact", 2)]
