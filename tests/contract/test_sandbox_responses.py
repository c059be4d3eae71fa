"""Every sandbox answer, each operation and each status it produces, conforms to the contract."""

from __future__ import annotations

import httpx
import pytest

from keap_pipeline.sandbox import Faults, RateLimits
from keap_pipeline.sandbox.contract.validate import find_operation, validate_response
from tests.contract.conftest import API_KEY

ALL = "id,given_name,family_name,email_addresses,phone_numbers,addresses,company,tag_ids,custom_fields,create_time,update_time"
CASES = [
    ("GET", "/contacts", {"page_size": 100, "fields": ALL}, None, 200),
    ("GET", "/contacts", {"filter": "start_update_time==2020-01-01T00:00:00.000Z", "order_by": "update_time desc"}, None, 200),
    ("GET", "/contacts/5", None, None, 200),
    ("GET", "/contacts/5", {"fields": "id,custom_fields"}, None, 200),
    ("GET", "/contacts/model", None, None, 200),
    ("POST", "/contacts", None, {"given_name": "Zoë", "phone_numbers": [{"number": "+44 20 7946 0958", "field": "PHONE1"}]}, 201),
    ("PATCH", "/contacts/6", [("update_mask", "family_name"), ("update_mask", "given_name")], {"family_name": "Ñúñez"}, 200),
    ("DELETE", "/contacts/7", None, None, 204),
    ("GET", "/tags", {"page_size": 1000}, None, 200),
    ("GET", "/tags/3", None, None, 200),
    ("GET", "/tags/categories", None, None, 200),
    ("GET", "/tags/categories/2", None, None, 200),
    ("GET", "/companies", {"fields": "address,email_address,phone_number,notes,custom_fields,update_time,create_time"}, None, 200),
    ("GET", "/companies/3", None, None, 200),
    ("GET", "/products", None, None, 200),
    ("GET", "/products/3", None, None, 200),
    ("GET", "/orders", None, None, 200),
    ("GET", "/orders/4", None, None, 200),
    ("GET", "/subscriptions", None, None, 200),
    ("GET", "/subscriptions/2", None, None, 200),
    ("GET", "/contacts/999999", None, None, 404),
    ("DELETE", "/contacts/999999", None, None, 404),
    ("GET", "/orders", {"page_size": 5000}, None, 400),
    ("GET", "/tags", {"filter": "colour==red"}, None, 400),
    ("GET", "/contacts", {"filter": "city==Chandler"}, None, 501),
    ("POST", "/contacts", None, {"given_name": "nobody"}, 400),
]


@pytest.mark.parametrize(("method", "path", "params", "body", "status"), CASES,
                         ids=[f"{m} {p} {s}" for m, p, _, _, s in CASES])
def test_answer_conforms(strict_sandbox, method: str, path: str, params, body, status: int) -> None:
    handle = strict_sandbox()
    with httpx.Client(base_url=handle.base_url, headers={"X-Keap-API-Key": API_KEY}) as client:
        response = client.request(method, path, params=params, json=body)
    assert response.status_code == status, response.text
    op = find_operation(method, "/rest/v2" + path)
    assert op is not None
    parsed = response.json() if response.content else None
    assert validate_response(op.operation_id, status, parsed, bool(response.content)) == []
    if params and dict(params).get("page_size") == 5000:
        # strict mode saw the bad request itself (page_size maximum 1000)
        assert any("page_size" in v for v in handle.state.violations), handle.state.violations
    else:  # semantic errors (unknown filter field, no e-mail or phone) are not schema violations
        assert handle.state.violations == []


def test_401_429_and_injected_5xx_use_the_error_schema(strict_sandbox) -> None:
    handle = strict_sandbox(limits=RateLimits(per_second=None, per_minute=None, per_day=1),
                            faults=Faults(error_share=0.9))
    with httpx.Client(base_url=handle.base_url) as client:
        unauthorized = client.get("/contacts")
        first = client.get("/contacts", headers={"X-Keap-API-Key": API_KEY})
        throttled = client.get("/contacts", headers={"X-Keap-API-Key": API_KEY})
    assert unauthorized.status_code == 401 and throttled.status_code == 429 and first.status_code in (500, 502, 503)
    for response in (unauthorized, first, throttled):
        assert validate_response("listContacts", response.status_code, response.json()) == []


def test_the_validator_catches_a_wrong_answer() -> None:
    # guards against a validator that accepts everything
    assert validate_response("listContacts", 200, {"contacts": [{"id": 5}]})
    assert validate_response("getContact", 200, {"email_addresses": [{"field": "EMAIL9"}]})
    assert validate_response("listContacts", 401, {"code": "401"})
    assert validate_response("deleteContact", 204, {"x": 1})
    assert validate_response("listTags", 418, {})


def test_strict_mode_reports_requests_outside_the_contract(strict_sandbox) -> None:
    handle = strict_sandbox()
    with httpx.Client(base_url=handle.base_url, headers={"X-Keap-API-Key": API_KEY}) as client:
        assert client.get("/contacts", params={"limit": 10}).status_code == 200  # Keap ignores it; the contract has no such name
        assert client.get("/nothing-here").status_code == 404
        assert client.put("/contacts/1", json={}).status_code == 405
    joined = "\n".join(handle.state.violations)
    assert "unknown query parameter 'limit'" in joined
    assert "GET /rest/v2/nothing-here: no such operation" in joined
    assert "PUT /rest/v2/contacts/1: no such operation" in joined
