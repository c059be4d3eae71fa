"""Keap v2 routes of the sandbox: which operation a request is, and its answer (status, JSON body)."""

from __future__ import annotations

import json
from typing import Any

from keap_pipeline.sandbox.contacts import js, wire_json
from keap_pipeline.sandbox.entities import ENTITIES, ROUTES
from keap_pipeline.sandbox.errors import ApiError
from keap_pipeline.sandbox.listing import list_page, select
from keap_pipeline.sandbox.state import SandboxState

API_ROOT = "/crm/rest/v2"
# Status strings of error bodies: the spec's own response descriptions for each code; 429 uses
# the text Keap publishes for its throttle.
STATUS_TEXT = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 429: "Request Throttled", 500: "Internal Server Error", 501: "Method Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable",
}
_ROUTES_LONGEST_FIRST = sorted(ROUTES, key=len, reverse=True)


def error_body(status: int, message: str, resource: str | None = None) -> bytes:
    """Keap's error body: {"code", "message", "status", "details"} (code is an integer in the spec).

    Args:
        status: HTTP status code.
        message: what went wrong and what to fix.
        resource: the resource concerned, if any.

    Returns:
        The UTF-8 JSON body.
    """
    details = [{"domain": "keap-sandbox", "resource": resource}] if resource else []
    return js({"code": status, "message": message, "status": STATUS_TEXT.get(status, "Error"), "details": details}).encode()


def route(method: str, rest: str) -> tuple[str, str, str | None]:
    """Find the operation for a path below the API root.

    Args:
        method: HTTP method.
        rest: the path after /crm/rest/v2/ (no leading slash).

    Returns:
        (operationId, entity, record id or None).

    Raises:
        ApiError: 404 unknown path, 405 method not allowed there.
    """
    rest = rest.strip("/")
    if rest == "contacts:merge":
        if method != "POST":
            raise ApiError(405, f"{method} is not allowed on /v2/contacts:merge")
        return "mergeContacts", "contacts", None
    if rest == "contacts/model":
        if method != "GET":
            raise ApiError(405, f"{method} is not allowed on /v2/contacts/model")
        return "retrieveContactModel", "contacts", None
    for prefix in _ROUTES_LONGEST_FIRST:
        entity = ENTITIES[ROUTES[prefix]]
        if rest == prefix:
            if method == "GET":
                return entity.list_op, entity.name, None
            if method == "POST" and entity.name == "contacts":
                return "createContact", entity.name, None
            raise ApiError(405, f"{method} is not allowed on /v2/{prefix}")
        if rest.startswith(prefix + "/"):
            ident = rest[len(prefix) + 1 :]
            if "/" in ident:
                continue  # e.g. tags/categories/3 is not tags/{id}
            if method == "GET":
                return entity.get_op, entity.name, ident
            if entity.name == "contacts" and method == "PATCH":
                return "updateContact", entity.name, ident
            if method == "DELETE" and entity.delete_op:
                return entity.delete_op, entity.name, ident
            raise ApiError(405, f"{method} is not allowed on /v2/{prefix}/{{id}}")
    raise ApiError(404, f"no such resource: /v2/{rest}")


def _ident(raw: str, entity: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, f"{entity} id {raw!r} is not an id (ids are strings of digits)")
    return int(raw)


def handle(state: SandboxState, op: str, entity: str, ident: str | None, params: dict[str, str], body: bytes) -> tuple[int, bytes | None]:
    """Answer one API request.

    Args:
        state: the sandbox state.
        op: operationId from route().
        entity: entity name.
        ident: the record id in the path, if any.
        params: decoded query parameters (last value wins).
        body: the raw request body.

    Returns:
        (status, JSON body or None for 204).

    Raises:
        ApiError: the request is answered with an error body.
    """
    spec = ENTITIES[entity]
    if op == "retrieveContactModel":
        return 200, state.data.model_json
    if op == spec.list_op:
        return 200, list_page(state, spec, params)
    if op == "mergeContacts":
        primary, duplicate = _merge_body(body)
        merged = state.merge_contacts(primary, duplicate)
        if merged is None:
            raise ApiError(404, f"contact {primary} or {duplicate} not found")
        return 200, wire_json(_fields(merged, params.get("fields"))).encode()
    if op == "createContact":
        fields = _contact_body(body, create=True)
        # duplicate_option is accepted but not acted on: the sandbox always creates a new contact
        return 201, wire_json(_fields(state.create_contact(fields), params.get("fields"))).encode()
    assert ident is not None
    number = _ident(ident, entity)
    if op == "updateContact":
        fields = _contact_body(body, create=False)
        mask = _update_mask(params.get("update_mask"))
        record = state.update_contact(number, fields, mask)
        if record is None:
            raise ApiError(404, f"contact {number} not found")
        return 200, wire_json(_fields(record, params.get("fields"))).encode()
    if op == spec.delete_op:
        if not state.delete_record(entity, number):
            raise ApiError(404, f"{entity.rstrip('s')} {number} not found")
        return 204, None
    # the get operations: the record as it is now (changed, created or generated)
    record = state.current(entity, number)
    if record is None:
        raise ApiError(404, f"{entity.rstrip('s').replace('_', ' ')} {number} not found")
    if entity == "contacts":
        return 200, wire_json(_fields(record, params.get("fields"))).encode()
    if entity == "companies":
        record = select(spec, record, tuple(params["fields"].split(",")) if params.get("fields") else None)
    return 200, wire_json(record).encode()


def _fields(record: dict[str, Any], raw: str | None) -> dict[str, Any]:
    if not raw:
        return record
    wanted = set(raw.split(",")) | {"id"}
    return {k: v for k, v in record.items() if k in wanted}


def _merge_body(body: bytes) -> tuple[int, int]:
    """The two contact ids of a MergeContactRequest {contact_id, duplicate_contact_id}."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("contact_id", "duplicate_contact_id")):
        raise ApiError(400, "a MergeContactRequest needs contact_id and duplicate_contact_id (strings of digits)")
    primary, duplicate = _ident(data["contact_id"], "contacts"), _ident(data["duplicate_contact_id"], "contacts")
    if primary == duplicate:
        raise ApiError(400, "a contact cannot be merged into itself")
    return primary, duplicate


def _update_mask(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    from keap_pipeline.sandbox.contract import load_contract

    allowed = load_contract()["operations"]["updateContact"]["parameters"][1]["schema"]["items"]["enum"]
    names = [n for n in raw.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ApiError(400, f"update_mask: unknown properties {', '.join(unknown)}")
    return names


def _contact_body(body: bytes, create: bool) -> dict[str, Any]:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object (CreateUpdateContactRequest)")
    problems = _schema_problems(data)
    if problems:
        raise ApiError(400, "invalid contact: " + "; ".join(problems[:5]))
    if create and not any(data.get(k) for k in ("email_addresses", "phone_numbers", "addresses")):
        raise ApiError(400, "a contact needs at least one of email_addresses, phone_numbers or addresses")
    for address in data.get("addresses") or []:
        if address.get("region") and not address.get("country_code"):
            raise ApiError(400, "country_code is required when region is given")
    return {k: v for k, v in data.items() if k != "id"}


def _schema_problems(data: dict[str, Any]) -> list[str]:
    """The body checked against the spec's CreateUpdateContactRequest (when jsonschema is installed)."""
    try:
        from keap_pipeline.sandbox.contract.validate import body_problems
    except ImportError:  # jsonschema is a dev dependency; without it bodies get the checks above only
        return []
    return body_problems("CreateUpdateContactRequest", data)
