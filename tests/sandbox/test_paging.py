"""Filters, order_by, page_size and page_token paging: every record exactly once, in order."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import api, list_all

LISTS = [("/contacts", "contacts"), ("/tags", "tags"), ("/tags/categories", "tag_categories"),
         ("/companies", "companies"), ("/products", "products"), ("/orders", "orders"),
         ("/subscriptions", "subscriptions")]
ORDERS = [("/contacts", "contacts", "update_time", "update_time"), ("/contacts", "contacts", "id", "id"),
          ("/contacts", "contacts", "create_time", "create_time"),
          ("/orders", "orders", "modification_time", "modification_time"), ("/orders", "orders", "order_time", "order_time"),
          ("/tags", "tags", "name", "name"), ("/tags", "tags", "update_time", "update_time"),
          ("/products", "products", "last_updated_time", "update_time"), ("/products", "products", "sku", "sku"),
          ("/subscriptions", "subscriptions", "modification_time", "modification_time"),
          ("/companies", "companies", "name", "company_name")]
WINDOWS = [("/contacts", "contacts", "start_update_time", "end_update_time", "update_time"),
           ("/orders", "orders", "modified_since_time", "modified_until_time", "modification_time"),
           ("/tags", "tags", "since_update_time", "until_update_time", "update_time"),
           ("/companies", "companies", "since_time", "until_time", "update_time")]


@pytest.mark.parametrize(("path", "key"), LISTS, ids=[k for _, k in LISTS])
@pytest.mark.parametrize("page_size", [7, 1000])
def test_full_listing_returns_every_record_once(sandbox, path: str, key: str, page_size: int) -> None:
    with api(sandbox) as client:
        records = list_all(client, path, key, page_size=page_size)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == sandbox.state.data.count(key)
    assert ids == sorted(ids, key=int)  # default order: id ascending


@pytest.mark.parametrize(("path", "key", "order", "prop"), ORDERS, ids=[f"{k}-{o}" for _, k, o, _ in ORDERS])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_order_by(sandbox, path: str, key: str, order: str, prop: str, direction: str) -> None:
    fields = "id,update_time,create_time" if key == "companies" else None
    with api(sandbox) as client:
        records = list_all(client, path, key, page_size=50, order_by=f"{order} {direction}", fields=fields)
    assert len({r["id"] for r in records}) == len(records) == sandbox.state.data.count(key)
    values = [(r.get(prop) if prop != "id" else int(r["id"])) for r in records]
    present = [v for v in values if v not in (None, "")]
    assert present == sorted(present, reverse=direction == "desc")


@pytest.mark.parametrize(("path", "key", "lo", "hi", "prop"), WINDOWS, ids=[w[1] for w in WINDOWS])
def test_time_window_is_inclusive_and_complete(sandbox, path: str, key: str, lo: str, hi: str, prop: str) -> None:
    fields = f"id,{prop}" if key in ("contacts", "companies") else None
    with api(sandbox) as client:
        everything = list_all(client, path, key, fields=fields)
        times = sorted(r[prop] for r in everything)
        start, end = times[len(times) // 4], times[len(times) // 2]
        window = list_all(client, path, key, page_size=9, fields=fields, order_by=None,
                          filter=f"{lo}=={start};{hi}=={end}")
    expected = {r["id"] for r in everything if start <= r[prop] <= end}
    got = [r["id"] for r in window]
    assert len(got) == len(set(got)) and set(got) == expected and expected


def test_contacts_window_in_update_time_order_pages_by_time_and_id(sandbox) -> None:
    with api(sandbox) as client:
        records = list_all(client, "/contacts", "contacts", page_size=4, order_by="update_time asc",
                           filter="start_update_time==2019-01-01T00:00:00.000Z;end_update_time==2030-01-01T00:00:00.000Z",
                           fields="id,update_time")
    keys = [(r["update_time"], int(r["id"])) for r in records]
    assert keys == sorted(keys) and len(keys) == 600
    assert len({t for t, _ in keys}) < len(keys)  # ties on update_time exist and still page exactly once


@pytest.mark.parametrize(("path", "key", "flt", "check"), [
    ("/contacts", "contacts", "ids==3,5,700,9", lambda r: r["id"] in {"3", "5", "9"}),
    ("/contacts", "contacts", "contact_id>590", lambda r: int(r["id"]) > 590),
    ("/contacts", "contacts", "given_name==Zo*", lambda r: r["given_name"].startswith("Zo")),
    ("/orders", "orders", "paid==true", lambda r: r["status"] == "PAID"),
    ("/orders", "orders", "contact_id==17", lambda r: r["contact"]["id"] == "17"),
    ("/orders", "orders", "id!=3;id<10", lambda r: int(r["id"]) < 10 and r["id"] != "3"),
    ("/products", "products", "product_id>=3", lambda r: int(r["id"]) >= 3),
    ("/subscriptions", "subscriptions", "status==Active", lambda r: r["active"]),
    ("/tags", "tags", "category_id==NONE", lambda r: "category" not in r),
])
def test_filters_match_brute_force(sandbox, path: str, key: str, flt: str, check) -> None:
    with api(sandbox) as client:
        everything = list_all(client, path, key)
        got = list_all(client, path, key, filter=flt, page_size=5)
    expected = [r["id"] for r in everything if check(r)]
    assert [r["id"] for r in got] == expected and expected


def test_fields_selects_properties_and_companies_leave_out_the_non_default_ones(sandbox) -> None:
    with api(sandbox) as client:
        contacts = client.get("/contacts", params={"fields": "given_name,update_time", "page_size": 3}).json()["contacts"]
        default = client.get("/contacts", params={"page_size": 3}).json()["contacts"]
        companies = client.get("/companies", params={"page_size": 3}).json()["companies"]
        asked = client.get("/companies", params={"page_size": 3, "fields": "update_time,address"}).json()["companies"]
    assert all(set(c) == {"id", "given_name", "update_time"} for c in contacts)
    assert all("custom_fields" not in c for c in default)
    assert all("update_time" not in c and "address" not in c for c in companies)
    assert all("update_time" in c and "address" in c for c in asked)


def test_page_size_default_and_max(sandbox) -> None:
    with api(sandbox) as client:
        assert len(client.get("/contacts").json()["contacts"]) == 600  # default = 1000 > 600
        assert len(client.get("/contacts", params={"page_size": 0}).json()["contacts"]) == 600
        assert client.get("/contacts", params={"page_size": 1001}).status_code == 400
        assert client.get("/contacts", params={"page_size": -1}).status_code == 400


def test_a_token_only_continues_its_own_query(sandbox) -> None:
    with api(sandbox) as client:
        token = client.get("/contacts", params={"page_size": 2}).json()["next_page_token"]
        assert client.get("/contacts", params={"page_size": 2, "page_token": token}).status_code == 200
        other = client.get("/contacts", params={"page_token": token, "order_by": "update_time desc"})
        garbage = client.get("/contacts", params={"page_token": "not-a-token"})
    assert other.status_code == 400 and "page_token" in other.json()["message"]
    assert garbage.status_code == 400
