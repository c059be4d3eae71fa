"""Every kind of request the client sends is valid against the contract derived from Keap's spec."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from keap_pipeline.keap import ENDPOINTS, KeapClient
from keap_pipeline.sandbox.contract.validate import find_operation, validate_request
from tests.keap.fakes import FakeClock, keap_json, make_client

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 2, 1, 0, 0, 0, 250_500, tzinfo=UTC)
API_ROOT = "/crm"  # the spec writes paths as /rest/v2/... under https://api.keap.com/crm


def list_call(entity: str) -> Callable[[KeapClient], object]:
    spec = ENDPOINTS[entity]
    kwargs: dict[str, object] = {"page_size": 1000, "order_by": f"{spec.order_by_fields[0]} asc"}
    if spec.has_time_window:
        kwargs.update(since=SINCE, until=UNTIL)
    if spec.supports_fields:
        kwargs["fields"] = ["id", "create_time"]
    return lambda client: list(client.iter_pages(entity, **kwargs))  # type: ignore[arg-type]


CALLS: list[tuple[str, str, Callable[[KeapClient], object]]] = [
    *[(f"list {name}", spec.list_key, list_call(name)) for name, spec in ENDPOINTS.items() if spec.paged],
    ("contact model", "", lambda c: c.get("/contacts/model")),
    ("get contact", "", lambda c: c.get("/contacts/1001", params={"fields": "id,given_name"})),
    ("create contact", "", lambda c: c.create_contact(
        {"given_name": "Zoë", "email_addresses": [{"email": "zoe@example.com", "field": "EMAIL1"}]},
        duplicate_option="EmailAndName")),
    ("update contact", "", lambda c: c.update_contact(
        "1001", {"family_name": "Ørsted"}, update_mask=["family_name"], fields=["id"])),
    ("delete contact", "", lambda c: c.delete_contact("1001")),
]


@pytest.mark.parametrize(("case", "list_key", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_requests_conform_to_the_contract(case: str, list_key: str, call: Callable[[KeapClient], object]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        body: dict[str, object] = {list_key: [], "next_page_token": ""} if list_key else {"id": "1001"}
        return keap_json(200, body)

    with make_client(handler, FakeClock()) as client:
        call(client)
    assert seen, case
    for request in seen:
        path = request.url.path.removeprefix(API_ROOT)
        assert find_operation(request.method, path) is not None, f"{request.method} {path}"
        body = json.loads(request.content) if request.content else None
        problems = validate_request(
            request.method, path, request.url.query.decode(), body, has_body=bool(request.content)
        )
        assert problems == [], problems
