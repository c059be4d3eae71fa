"""Query parameters per endpoint, as keap-rest-v2.openapi.yml defines them, and how they reach the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keap_pipeline.keap import ENDPOINTS, KeapArgumentError, build_list_params, format_time
from tests.keap.fakes import FakeClock, Scripted, keap_json, make_client

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("entity", "path", "list_key", "window_filter"),
    [
        ("contacts", "/contacts", "contacts",
         "start_update_time==2026-01-01T00:00:00.000Z;end_update_time==2026-01-02T12:30:00.000Z"),
        ("companies", "/companies", "companies",
         "since_time==2026-01-01T00:00:00.000Z;until_time==2026-01-02T12:30:00.000Z"),
        ("tags", "/tags", "tags",
         "since_update_time==2026-01-01T00:00:00.000Z;until_update_time==2026-01-02T12:30:00.000Z"),
        ("tag_categories", "/tags/categories", "tag_categories",
         "since_update_time==2026-01-01T00:00:00.000Z;until_update_time==2026-01-02T12:30:00.000Z"),
        ("orders", "/orders", "orders",
         "modified_since_time==2026-01-01T00:00:00.000Z;modified_until_time==2026-01-02T12:30:00.000Z"),
        ("products", "/products", "products", None),
        ("subscriptions", "/subscriptions", "subscriptions", None),
    ],
)
def test_endpoint_table_and_window_filter(entity: str, path: str, list_key: str, window_filter: str | None) -> None:
    spec = ENDPOINTS[entity]
    assert (spec.path, spec.list_key) == (path, list_key)
    if window_filter is None:
        assert not spec.has_time_window
        with pytest.raises(KeapArgumentError, match="no time-window filter"):
            build_list_params(spec, since=SINCE)
        return
    params = build_list_params(spec, since=SINCE, until=UNTIL, page_size=500)
    assert params == {"page_size": "500", "filter": window_filter}


def test_the_contact_model_is_fetched_not_paged() -> None:
    spec = ENDPOINTS["contact_model"]
    assert (spec.path, spec.list_key, spec.paged) == ("/contacts/model", "custom_fields", False)
    with pytest.raises(KeapArgumentError, match="client.get"):
        build_list_params(spec)
    model = {"custom_fields": [{"id": "7", "field_type": "TEXT"}], "optional_properties": ["notes"]}
    handler = Scripted([keap_json(200, model)])
    with make_client(handler, FakeClock()) as client:
        assert client.get(spec.path) == model
    assert handler.requests[0].url.path == "/crm/rest/v2/contacts/model"


@pytest.mark.parametrize(
    ("entity", "order_by", "ok"),
    [
        ("contacts", "update_time asc", True),
        ("contacts", "id", True),
        ("contacts", "modification_time asc", False),
        ("orders", "modification_time desc", True),
        ("orders", "update_time asc", False),
        ("tags", "update_time sideways", False),
        ("products", "last_updated_time asc", True),
        ("subscriptions", "modification_time asc", True),
        ("companies", "create_time desc", True),
    ],
)
def test_order_by_is_checked_against_the_spec(entity: str, order_by: str, ok: bool) -> None:
    spec = ENDPOINTS[entity]
    if ok:
        assert build_list_params(spec, order_by=order_by)["order_by"] == order_by
    else:
        with pytest.raises(KeapArgumentError, match="order_by"):
            build_list_params(spec, order_by=order_by)


@pytest.mark.parametrize("page_size", [0, -1, 1001, 10_000, True, 2.5, "100"])
def test_page_size_outside_1_to_1000_is_rejected(page_size: object) -> None:
    with pytest.raises(KeapArgumentError, match="page_size"):
        build_list_params(ENDPOINTS["contacts"], page_size=page_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("page_size", [1, 1000])
def test_page_size_bounds_are_accepted(page_size: int) -> None:
    assert build_list_params(ENDPOINTS["contacts"], page_size=page_size)["page_size"] == str(page_size)


def test_fields_only_where_the_spec_allows_them() -> None:
    assert build_list_params(ENDPOINTS["companies"], fields=["id", "update_time"])["fields"] == "id,update_time"
    with pytest.raises(KeapArgumentError, match="does not take `fields`"):
        build_list_params(ENDPOINTS["orders"], fields=["id"])
    with pytest.raises(KeapArgumentError, match="commas"):
        build_list_params(ENDPOINTS["contacts"], fields=["id,given_name"])


def test_extra_filter_terms_are_joined_and_checked() -> None:
    params = build_list_params(ENDPOINTS["contacts"], since=SINCE, filters=["contact_id>5"])
    assert params["filter"] == "start_update_time==2026-01-01T00:00:00.000Z;contact_id>5"
    with pytest.raises(KeapArgumentError, match="no ';'"):
        build_list_params(ENDPOINTS["contacts"], filters=["a==1;b==2"])
    with pytest.raises(KeapArgumentError, match="later"):
        build_list_params(ENDPOINTS["contacts"], since=UNTIL, until=SINCE)


@pytest.mark.parametrize(
    ("moment", "round_up", "expected"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), False, "2026-01-01T00:00:00.000Z"),
        (datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), False, "2026-01-01T00:00:00.000Z"),
        (datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), False, "2026-01-01T00:00:00.123Z"),
        # window ends round up, so a window never shrinks by the sub-millisecond part
        (datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), True, "2026-01-01T00:00:00.124Z"),
        (datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), True, "2026-01-01T00:00:00.123Z"),
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), True, "2027-01-01T00:00:00.000Z"),
    ],
)
def test_format_time(moment: datetime, round_up: bool, expected: str) -> None:
    assert format_time(moment, round_up=round_up) == expected


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(KeapArgumentError, match="aware"):
        format_time(datetime(2026, 1, 1))
    with pytest.raises(KeapArgumentError, match="aware"):
        build_list_params(ENDPOINTS["contacts"], since=datetime(2026, 1, 1), until=UNTIL)


def test_wire_encoding_of_filter_fields_and_order_by() -> None:
    clock = FakeClock()
    handler = Scripted([keap_json(200, {"contacts": [], "next_page_token": ""})])
    with make_client(handler, clock) as client:
        pages = list(client.iter_pages(
            "contacts", fields=["id", "email_addresses"], since=SINCE, until=UNTIL,
            order_by="update_time asc", page_size=1000,
        ))
    assert len(pages) == 1
    url = handler.requests[0].url
    assert url.path == "/crm/rest/v2/contacts"
    raw = url.query.decode()
    # `==` travels as %3D%3D, `;` as %3B, as the spec's examples show
    assert "filter=start_update_time%3D%3D2026-01-01T00%3A00%3A00.000Z%3Bend_update_time%3D%3D" in raw
    query = parse_qs(urlsplit(str(url)).query)
    assert query == {
        "page_size": ["1000"],
        "fields": ["id,email_addresses"],
        "filter": ["start_update_time==2026-01-01T00:00:00.000Z;end_update_time==2026-01-02T12:30:00.000Z"],
        "order_by": ["update_time asc"],
    }
    assert handler.requests[0].headers["x-keap-api-key"]


def test_arguments_are_checked_before_any_request() -> None:
    handler = Scripted([])
    with make_client(handler, FakeClock()) as client:
        with pytest.raises(KeapArgumentError):
            client.iter_pages("orders", fields=["id"])
        with pytest.raises(KeapArgumentError, match="unknown endpoint"):
            client.iter_pages("invoices")
    assert handler.requests == []


def test_update_contact_sends_update_mask_as_repeated_params() -> None:
    handler = Scripted([keap_json(200, {"id": "1001"})])
    with make_client(handler, FakeClock()) as client:
        client.update_contact("1001", {"given_name": "Zoë"}, update_mask=["given_name", "family_name"])
        with pytest.raises(KeapArgumentError, match="update_mask"):
            client.update_contact("1001", {}, update_mask=["favourite_colour"])
        with pytest.raises(KeapArgumentError, match="digits"):
            client.update_contact("../tags", {})
    request = handler.requests[0]
    assert request.method == "PATCH" and request.url.path == "/crm/rest/v2/contacts/1001"
    assert parse_qs(urlsplit(str(request.url)).query)["update_mask"] == ["given_name", "family_name"]
    assert json.loads(request.content) == {"given_name": "Zoë"}


def test_create_and_delete_contact() -> None:
    handler = Scripted([keap_json(201, {"id": "7"}), httpx.Response(204)])
    with make_client(handler, FakeClock()) as client:
        assert client.create_contact({"given_name": "A", "email_addresses": [{"email": "a@x.io", "field": "EMAIL1"}]},
                                      duplicate_option="Email") == {"id": "7"}
        client.delete_contact(7)
    assert [(r.method, r.url.path) for r in handler.requests] == [
        ("POST", "/crm/rest/v2/contacts"), ("DELETE", "/crm/rest/v2/contacts/7")
    ]
    assert parse_qs(urlsplit(str(handler.requests[0].url)).query) == {"duplicate_option": ["Email"]}


def test_call_writes_the_body_exactly_and_tag_writes_check_their_ids_and_masks() -> None:
    from decimal import Decimal

    handler = Scripted([keap_json(200, {"id": "5"}), keap_json(200, {"results": {"9": "SUCCESS"}}), httpx.Response(204),
                        keap_json(201, {"id": "12"}), httpx.Response(204)])
    with make_client(handler, FakeClock()) as client:
        assert client.update_tag("5", {"name": "Ünï", "x": Decimal("12.50")}, update_mask=["name"]) == {"id": "5"}
        assert client.apply_tag(5, ["9"]) == {"results": {"9": "SUCCESS"}}
        client.remove_tag("5", [9])
        assert client.create_tag({"name": "New"}) == {"id": "12"}
        client.delete_tag("12")
        with pytest.raises(KeapArgumentError, match="update_mask"):
            client.update_tag("5", {}, update_mask=["color"])
        with pytest.raises(KeapArgumentError, match="digits"):
            client.apply_tag("5", ["1/../2"])
    first = handler.requests[0]
    assert first.method == "PATCH" and first.url.path == "/crm/rest/v2/tags/5"
    assert first.content == '{"name":"Ünï","x":12.50}'.encode()  # the digits as given, UTF-8 as is
    assert first.headers["content-type"] == "application/json"
    assert parse_qs(urlsplit(str(first.url)).query)["update_mask"] == ["name"]
    assert [(r.method, r.url.path) for r in handler.requests[1:]] == [
        ("POST", "/crm/rest/v2/tags/5/contacts:applyTags"), ("POST", "/crm/rest/v2/tags/5/contacts:removeTags"),
        ("POST", "/crm/rest/v2/tags"), ("DELETE", "/crm/rest/v2/tags/12"),
    ]
    assert json.loads(handler.requests[2].content) == {"contact_ids": ["9"]}
