"""Every entity can be changed through SandboxHandle.state (update, create, delete, raw bytes) and is listed as changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from keap_pipeline.cli import build_parser
from keap_pipeline.sandbox import config_from_args
from keap_pipeline.sandbox.contacts import js
from keap_pipeline.sandbox.entities import ENTITIES
from keap_pipeline.sandbox.errors import SandboxConfigError
from keap_pipeline.sandbox.runner import config_from_json, config_to_json
from keap_pipeline.sandbox.state import SandboxState
from keap_pipeline.sandbox.timefmt import iso_ms
from tests.sandbox.conftest import api, list_all, small_config


@dataclass(frozen=True)
class Case:
    """How a test reaches one entity: its path, list key, time property and filters, and a change."""

    entity: str
    path: str
    time_prop: str
    change: dict[str, Any]
    since: str | None  # the filter field of the entity's update-time window ("since" form), if any
    time_order: str | None  # the order_by field that sorts by update time, if any
    match: str  # a filter the change makes the record match (and that no untouched record matches)

    @property
    def timeline(self) -> bool:
        """Whether the entity's update time is indexed (raw records are placed at their time_ms)."""
        return ENTITIES[self.entity].time_field is not None


CASES = [
    Case("tags", "/tags", "update_time", {"name": "Zz changed tag", "category": {"id": "2"}},
         "since_update_time", "update_time", "name==Zz changed tag"),
    Case("tag_categories", "/tags/categories", "update_time", {"name": "Zz changed category"},
         "since_update_time", "update_time", "name==Zz changed category"),
    Case("products", "/products", "update_time",
         {"name": "Zz changed product", "price": {"amount": 4200, "currency_code": "KWD", "formatted_amount": "KWD 4.200"}},
         None, "last_updated_time", "name==Zz changed*"),
    Case("orders", "/orders", "modification_time",
         {"total": {"amount": 123456, "currency_code": "JPY", "formatted_amount": "¥123,456"}, "contact": {"id": "599"},
          "title": "Zz changed order"},
         "modified_since_time", "modification_time", "title==Zz changed order"),
    Case("subscriptions", "/subscriptions", "modification_time", {"active": False, "subscription_plan_id": "999001"},
         None, "modification_time", "subscription_plan_id==999001"),
]
IDS = [c.entity for c in CASES]
IDENT = 3  # the record each test changes (every entity has at least 8)


def _body_items(content: bytes, list_key: str) -> list[dict[str, Any]]:
    return json.loads(content)[list_key]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_update_moves_the_record_to_a_later_window_and_changes_what_is_served(start_sandbox, case: Case) -> None:
    handle = start_sandbox()
    state = handle.state
    before = state.record(case.entity, IDENT)
    with api(handle) as client:
        assert client.get(f"{case.path}/{IDENT}").json() == before
        updated = state.update_record(case.entity, IDENT, case.change)
        assert updated is not None and updated[case.time_prop] > before[case.time_prop]
        assert {k: updated[k] for k in case.change} == case.change
        assert {k: v for k, v in updated.items() if k not in case.change and k != case.time_prop} == {
            k: v for k, v in before.items() if k not in case.change and k != case.time_prop}
        assert state.record(case.entity, IDENT) == updated == client.get(f"{case.path}/{IDENT}").json()
        assert state.record_time(case.entity, IDENT) > (state.record_time(case.entity, IDENT + 1) or 0)

        everything = list_all(client, case.path, case.entity, page_size=4)
        assert [r["id"] for r in everything] == [str(i) for i in range(1, state.data.count(case.entity) + 1)]
        assert everything[IDENT - 1] == updated
        assert list_all(client, case.path, case.entity, filter=case.match) == [updated]
        if case.since is not None:  # the later window holds the updated record alone; the old one lost it
            since = updated[case.time_prop]
            for order in (None, f"{case.time_order} asc"):
                later = list_all(client, case.path, case.entity, filter=f"{case.since}=={since}", order_by=order)
                assert later == [updated]
            until = case.since.replace("since", "until")
            old = list_all(client, case.path, case.entity,
                           filter=f"{case.since}=={before[case.time_prop]};{until}=={before[case.time_prop]}")
            assert str(IDENT) not in {r["id"] for r in old}
        if case.time_order is not None:  # newest first: the updated record now leads
            newest = list_all(client, case.path, case.entity, order_by=f"{case.time_order} desc", page_size=3)
            assert newest[0] == updated and len(newest) == len(everything)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_create_and_delete(start_sandbox, case: Case) -> None:
    handle = start_sandbox()
    state = handle.state
    count = state.data.count(case.entity)
    with api(handle) as client:
        created = state.create_record(case.entity, {**case.change, "id": "1", case.time_prop: "2000-01-01T00:00:00.000Z"})
        assert created["id"] == str(count + 1) and state.max_id(case.entity) == count + 1
        assert created[case.time_prop] > "2026"  # the sandbox's times, not the caller's
        second = state.create_record(case.entity, {"name": "second"})
        assert second["id"] == str(count + 2)
        assert state.delete_record(case.entity, IDENT) and not state.delete_record(case.entity, IDENT)
        assert state.delete_record(case.entity, count + 2)
        assert state.record(case.entity, IDENT) is None and state.record_time(case.entity, IDENT) is None
        assert state.update_record(case.entity, IDENT, {"name": "x"}) is None
        assert client.get(f"{case.path}/{IDENT}").status_code == 404
        assert client.get(f"{case.path}/{count + 1}").json() == created
        ids = [r["id"] for r in list_all(client, case.path, case.entity, page_size=5)]
        assert ids == [str(i) for i in range(1, count + 2) if i != IDENT]
        if case.time_order is not None:
            by_time = list_all(client, case.path, case.entity, order_by=f"{case.time_order} asc", page_size=5)
            assert by_time[-1] == created and len(by_time) == count
        if case.since is not None:
            assert list_all(client, case.path, case.entity, filter=f"{case.since}=={created[case.time_prop]}") == [created]
        assert list_all(client, case.path, case.entity, filter=case.match) == [created]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_raw_bytes_are_served_verbatim(start_sandbox, case: Case) -> None:
    handle = start_sandbox()
    state = handle.state
    with api(handle) as client:
        first = _body_items(client.get(case.path, params={"page_size": 3}).content, case.entity)
        hostile = b'{"id":"' + str(IDENT - 1).encode() + b'","name":"\\ud83d","weird":"\xff"}'
        assert state.put_raw_record(case.entity, hostile, ident=IDENT - 1, time_ms=1_000) == IDENT - 1
        page = client.get(case.path, params={"page_size": 3}).content
        head = f'{{"{case.entity}":['.encode()
        assert page.startswith(head + js(first[0]).encode() + b"," + hostile + b"," + js(first[2]).encode() + b'],"next_page_token":"')
        broken = b'{"not json'
        slot = state.put_raw_record(case.entity, broken, time_ms=2_000)
        assert slot == state.data.count(case.entity) + 1
        if case.timeline:  # placed at the times given: oldest first
            oldest = client.get(case.path, params={"page_size": 2, "order_by": f"{case.time_order} asc"}).content
            assert oldest.startswith(head + hostile + b"," + broken + b'],"next_page_token":"')
        if case.since is not None and case.timeline:
            window = client.get(case.path, params={"filter": f"{case.since}==1970-01-01T00:00:01.500Z",
                                                   "order_by": f"{case.time_order} asc", "page_size": 1}).content
            assert window.startswith(head + broken + b'],"next_page_token":"')
        # the filters see what the bytes decode to ({} for broken JSON) and never fail on them
        assert client.get(case.path, params={"filter": case.match}).json()[case.entity] == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_put_raw_records_serves_only_those_in_new_slots(start_sandbox, case: Case) -> None:
    handle = start_sandbox(tags=0, products=0, orders=0, subscriptions=0)
    state = handle.state
    if state.data.count(case.entity):
        state.update_record(case.entity, 1, {"name": "dropped"})
    raws = [b'{"id":"1","name":"a"}', b"null", b"\x00\xff not json"]
    slots = state.put_raw_records(case.entity, [(r, 1_700_000_000_000 - i) for i, r in enumerate(raws)])
    count = state.data.count(case.entity)
    assert slots == [count + 1, count + 2, count + 3]
    with api(handle) as client:
        body = client.get(case.path, params={"page_size": 1000}).content
        if count == 0:
            assert body == f'{{"{case.entity}":['.encode() + b",".join(raws) + b'],"next_page_token":""}'
        else:  # tag categories: their 8 generated ones stay, none of them changed any more
            assert body.endswith(b"," + b",".join(raws) + b'],"next_page_token":""}') and b"dropped" not in body
        if case.timeline:
            by_time = client.get(case.path, params={"order_by": f"{case.time_order} asc", "page_size": 3}).content
            assert by_time.startswith(f'{{"{case.entity}":['.encode() + b",".join(reversed(raws)))


@pytest.mark.parametrize("entity", ["orders", "subscriptions"])
def test_id_filter_sees_the_overlay(start_sandbox, entity: str) -> None:
    handle = start_sandbox()
    state = handle.state
    count = state.data.count(entity)
    created = state.create_record(entity, {"active": True})
    state.delete_record(entity, count)
    changed = state.update_record(entity, count - 1, {"quantity": 7})
    raw = b'{"id":"raw"}'
    raw_id = state.put_raw_record(entity, raw)
    with api(handle) as client:
        page = client.get(f"/{entity}", params={"filter": f"id>{count - 3}", "page_size": 2})
        assert page.status_code == 200
        body = page.json()
        assert [r["id"] for r in body[entity]] == [str(count - 2), str(count - 1)]
        assert body[entity][1] == changed
        rest = client.get(f"/{entity}", params={"filter": f"id>{count - 3}", "page_size": 2,
                                                "page_token": body["next_page_token"]}).content
        assert rest == f'{{"{entity}":['.encode() + js(created).encode() + b"," + raw + b'],"next_page_token":""}'
        assert raw_id == count + 2
        below = list_all(client, f"/{entity}", entity, filter=f"id<={count + 1};id>={count - 1}", order_by="id desc")
        assert [r["id"] for r in below] == [str(count + 1), str(count - 1)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_page_token_across_a_change(start_sandbox, case: Case) -> None:
    handle = start_sandbox()
    state = handle.state
    count = state.data.count(case.entity)
    with api(handle) as client:
        first = client.get(case.path, params={"page_size": 3}).json()
        second = client.get(case.path, params={"page_size": 3, "page_token": first["next_page_token"]}).json()
        assert state.prefetcher.hits == 1  # page 2 was rendered while page 1 was read, and so is page 3 now
        # page 3 was prefetched while page 2 was read; change a record on it, one behind, add one
        state.update_record(case.entity, 8, {"name": "Changed after prefetch"})
        state.update_record(case.entity, 1, {"name": "Changed behind the cursor"})
        added = state.create_record(case.entity, {"name": "Added while paging"})
        rest = list_all(client, case.path, case.entity, page_size=3, page_token=second["next_page_token"])
        ids = [r["id"] for r in first[case.entity] + second[case.entity] + rest]
        assert ids == [str(i) for i in range(1, count + 2)]
        assert {r["id"]: r for r in rest}["8"]["name"] == "Changed after prefetch"
        assert rest[-1] == added
        if case.time_order is not None:  # by update time, a record changed behind the cursor comes again
            order = {"order_by": f"{case.time_order} asc", "page_size": 4}
            start = client.get(case.path, params=order).json()
            moved = start[case.entity][0]["id"]
            state.update_record(case.entity, int(moved), {"name": "Moved"})
            later = list_all(client, case.path, case.entity, **order, page_token=start["next_page_token"])
            seen = [r["id"] for r in start[case.entity] + later]
            assert seen.count(moved) == 2 and len(set(seen)) == count + 1
            assert later[-1]["id"] == moved and later[-1]["name"] == "Moved"


def test_hostile_records_never_break_value_ordering_or_filters(start_sandbox) -> None:
    handle = start_sandbox()
    state = handle.state
    state.put_raw_record("subscriptions", b'{"contact_id":"not a number","subscription_plan_id":[1]}')
    state.put_raw_record("subscriptions", b"[]")
    state.update_record("subscriptions", 2, {"contact_id": {"nested": True}})
    state.put_raw_record("tags", b'{"create_time":"not a time","name":7}')
    state.put_raw_record("tag_categories", b'{"update_time":12,"name":"\\ud83d"}')
    with api(handle) as client:
        for path, params in (
            ("/subscriptions", {"order_by": "contact_id"}),
            ("/subscriptions", {"order_by": "subscription_plan_id desc"}),
            ("/subscriptions", {"filter": "billing_amount>1"}),
            ("/tags", {"filter": "since_create_time==2000-01-01T00:00:00.000Z"}),
            ("/tags", {"order_by": "name"}),
            ("/tags/categories", {"order_by": "update_time desc"}),
            ("/tags/categories", {"order_by": "name"}),
        ):
            response = client.get(path, params={**params, "page_size": 2})
            assert response.status_code == 200, (path, params, response.text)
            while token := json.loads(response.content)["next_page_token"]:
                response = client.get(path, params={**params, "page_size": 2, "page_token": token})
                assert response.status_code == 200, (path, params, response.text)


def test_update_record_keeps_the_sandboxs_fields_and_checks_values(start_sandbox) -> None:
    handle = start_sandbox()
    state = handle.state
    before = state.record("orders", 4)
    after = state.update_record("orders", 4, {"id": "77", "creation_time": "x", "total_due": None},
                                drop=["shipping_information", "order_time"], time_ms=1_800_000_000_000)
    assert after is not None and after["id"] == "4" and after["creation_time"] == before["creation_time"]
    assert after["total_due"] is None and "shipping_information" not in after
    assert after["order_time"] == before["order_time"]  # a creation time: the sandbox's
    assert after["modification_time"] == iso_ms(1_800_000_000_000) and state.record_time("orders", 4) == 1_800_000_000_000
    after["title"] = "a copy"
    after["total"]["amount"] = -1
    assert state.record("orders", 4)["title"] == before["title"]
    assert state.record("orders", 4)["total"] == before["total"]
    version = state.version
    with pytest.raises(ValueError, match="JSON values"):
        state.update_record("orders", 4, {"total": object()})
    with pytest.raises(KeyError, match="invoices"):
        state.update_record("invoices", 1, {})
    assert state.version == version
    assert state.record("orders", 4)["modification_time"] == iso_ms(1_800_000_000_000)


def test_raw_records_file_option_and_subprocess_config(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    orders = tmp_path / "orders.jsonl"
    orders.write_bytes(b'{"id":"2","modification_time":"2024-01-02T03:04:05.678Z","x":"\\ud83d"}\n\n{"id":"2","x":"\xff"}\r\n')
    tags = tmp_path / "tags.jsonl"
    tags.write_bytes(b'{"id":"1","update_time":"2023-05-06T07:08:09.010Z"}\n')
    args = build_parser().parse_args(["sandbox", "--contacts", "10", "--raw-records", f"orders={orders}",
                                      "--raw-records", f"tags={tags}"])
    config = config_from_args(args)
    assert [(entity, len(lines)) for entity, lines in config.raw_records] == [("orders", 2), ("tags", 1)]
    assert config_from_json(config_to_json(config)).raw_records == config.raw_records
    state = SandboxState(config.with_(port=0))
    assert state.overlays["orders"][2].raw == b'{"id":"2","modification_time":"2024-01-02T03:04:05.678Z","x":"\\ud83d"}'
    assert state.record_time("orders", 2) == 1_704_164_645_678
    # not UTF-8, so its "id" cannot be read: added after the others
    assert state.overlays["orders"][6].raw == b'{"id":"2","x":"\xff"}' and state.max_id("orders") == 6
    assert state.record_time("tags", 1) == 1_683_356_889_010
    for bad in ("invoices=" + str(tags), "orders", f"orders={tmp_path / 'missing.jsonl'}"):
        with pytest.raises(SandboxConfigError):
            config_from_args(build_parser().parse_args(["sandbox", "--raw-records", bad]))
    with pytest.raises(SandboxConfigError, match="invoices"):
        small_config(raw_records=(("invoices", ()),))


def test_an_empty_overlay_of_one_entity_leaves_the_others_generated(start_sandbox) -> None:
    handle = start_sandbox()
    state = handle.state
    state.update_record("orders", 1, {"title": "changed"})
    assert state.overlays["orders"] and not state.overlays["contacts"] and not state.overlays["tags"]
    assert state.overlay is state.overlays["contacts"]
    assert state.record("tags", 1) == state.data.record("tags", 1)
    assert state.record("contacts", 1) == state.contact(1) == state.data.record("contacts", 1)
