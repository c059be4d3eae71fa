"""Validate Keap requests and responses against the derived contract with jsonschema (2020-12 dialect)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from keap_pipeline.sandbox.contract import load_contract
from keap_pipeline.sandbox.errors import ContractError

_URN = "urn:keap-pipeline:keap-v2-contract"
# Statuses a gateway or the quota layer answers although the spec lists none of them for an
# operation (429 from the throttle, 502/503 from the load balancer): their bodies are held to the
# spec's Error schema, the one error shape the spec defines.
_FALLBACK_ERROR_STATUSES = frozenset({"429", "502", "503"})


@dataclass(frozen=True)
class Operation:
    """One contract operation with its path as a regular expression."""

    operation_id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resource = Resource.from_contents(load_contract(), default_specification=DRAFT202012)
    return Registry().with_resource(_URN, resource)


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    import json

    return Draft202012Validator(_rewrite(json.loads(schema_json)), registry=_registry())


def _rewrite(schema: Any) -> Any:
    """Point the spec's local refs (#/components/...) at the contract document in the registry."""
    if isinstance(schema, dict):
        out = {k: _rewrite(v) for k, v in schema.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            out["$ref"] = _URN + ref
        return out
    if isinstance(schema, list):
        return [_rewrite(v) for v in schema]
    return schema


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    import json

    validator = _validator(json.dumps(schema, sort_keys=True))
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


@lru_cache(maxsize=1)
def operations() -> tuple[Operation, ...]:
    """Every contract operation, literal paths before templated ones (so /contacts/model wins)."""
    ops = []
    for op_id, op in load_contract()["operations"].items():
        regex = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(op["path"]))
        ops.append(Operation(op_id, op["method"], op["path"], re.compile(f"^{regex}$"), op))
    ops.sort(key=lambda o: (o.path.count("{"), o.path))
    return tuple(ops)


def find_operation(method: str, path: str) -> Operation | None:
    """The contract operation for a method and a spec path (/rest/v2/...), or None.

    Args:
        method: HTTP method.
        path: a spec path, /rest/v2/...

    Returns:
        The operation, or None.
    """
    for op in operations():
        if op.method == method.lower() and op.pattern.match(path):
            return op
    return None


def operation(operation_id: str) -> Operation:
    """The contract operation with this operationId.

    Raises:
        ContractError: no such operation in the contract.

    Args:
        operation_id: the contract operationId.

    Returns:
        The operation.
    """
    for op in operations():
        if op.operation_id == operation_id:
            return op
    raise ContractError(f"operation {operation_id!r} is not in the contract")


def _coerce(raw: str, schema: dict[str, Any], explode: bool | None) -> Any:
    """Turn a query-string value into the JSON value its parameter schema describes (OpenAPI form style)."""
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        parts = raw.split(",") if explode is False else [raw]
        return [_coerce(p, items, None) for p in parts]
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw  # left a string so the schema reports the type error
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    return raw


def validate_request(
    method: str, path: str, query: str, body: Any = None, has_body: bool = False
) -> list[str]:
    """Check a request against the contract: the operation exists, query names and values fit the
    parameter schemas, required parameters are present, the body fits the request schema.

    Args:
        method: HTTP method.
        path: the path relative to the API root, as the spec writes it (/rest/v2/contacts/12).
        query: the raw query string (still percent-encoded).
        body: the parsed JSON body, if any.
        has_body: whether the request carried a body at all.

    Returns:
        The violations found (empty when the request conforms).
    """
    op = find_operation(method, path)
    if op is None:
        return [f"{method.upper()} {path}: no such operation in the contract"]
    where = f"{op.operation_id}"
    params = {p["name"]: p for p in op.spec["parameters"] if p["in"] == "query"}
    problems: list[str] = []
    seen: set[str] = set()
    for name, raw in parse_qsl(query, keep_blank_values=True):
        param = params.get(name)
        if param is None:
            problems.append(f"{where}: unknown query parameter {name!r}")
            continue
        if name in seen and param.get("schema", {}).get("type") != "array":
            problems.append(f"{where}: query parameter {name!r} given twice")
        seen.add(name)
        value = _coerce(raw, param.get("schema", {}), param.get("explode"))
        problems += [f"{where}: query {name}: {e}" for e in _errors(param.get("schema", {}), value)]
    for name, param in params.items():
        if param.get("required") and name not in seen:
            problems.append(f"{where}: required query parameter {name!r} missing")
    request_body = op.spec.get("requestBody")
    if request_body is None:
        if has_body:
            problems.append(f"{where}: takes no request body")
    elif not has_body:
        if request_body.get("required"):
            problems.append(f"{where}: request body required")
    else:
        schema = request_body["content"]["application/json"]["schema"]
        problems += [f"{where}: body {e}" for e in _errors(schema, body)]
    return problems


def validate_response(operation_id: str, status: int, body: Any, has_body: bool = True) -> list[str]:
    """Check a response against the contract: the status is one the operation declares (or a
    gateway/quota status, see _FALLBACK_ERROR_STATUSES), and the body fits that status's schema.

    Args:
        operation_id: the contract operation answered.
        status: HTTP status code.
        body: the parsed JSON body (None when there was none).
        has_body: whether the response carried a body.

    Returns:
        The violations found (empty when the response conforms).
    """
    op = operation(operation_id)
    responses = op.spec["responses"]
    key = str(status)
    if key in responses:
        content = responses[key].get("content")
    elif key in _FALLBACK_ERROR_STATUSES:
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    else:
        return [f"{operation_id}: status {status} is not declared by the spec"]
    if not content:
        return [f"{operation_id} {status}: the spec declares no body"] if has_body else []
    if not has_body:
        return [f"{operation_id} {status}: body missing"]
    schema = content["application/json"]["schema"]
    return [f"{operation_id} {status}: {e}" for e in _errors(schema, body)]


def body_problems(schema_name: str, body: Any) -> list[str]:
    """Violations of a body against one of the contract's component schemas.

    Args:
        schema_name: a component schema of the contract.
        body: the parsed JSON body.

    Returns:
        The violations (empty when the body conforms).
    """
    return _errors({"$ref": f"#/components/schemas/{schema_name}"}, body)


def _rule(error: Any) -> str:
    """A schema violation as its rule, never the value that broke it (the value may be customer data)."""
    kind = error.validator
    bound = error.validator_value
    if kind in ("maxLength", "minLength", "maximum", "minimum", "maxItems", "minItems", "pattern", "format"):
        return f"{kind} {bound}"
    if kind == "type":
        return f"must be of type {bound}"
    if kind == "enum":
        return "must be one of the values the spec lists"
    if kind == "required":
        missing = [name for name in bound if isinstance(error.instance, dict) and name not in error.instance]
        return f"required properties missing: {', '.join(missing) or bound}"
    if kind == "uniqueItems":
        return "items must be unique"
    return f"violates {kind}"


def body_rule_problems(schema_name: str, body: Any) -> list[tuple[str, str]]:
    """Violations of a body against a component schema as (field path, rule), with no values in them.

    Args:
        schema_name: a component schema of the contract.
        body: the parsed JSON body.

    Returns:
        (JSON path of the field, the rule it breaks), in path order (empty when the body conforms).
    """
    import json

    validator = _validator(json.dumps({"$ref": f"#/components/schemas/{schema_name}"}, sort_keys=True))
    return [
        ("/".join(str(p) for p in e.absolute_path) or "(root)", _rule(e))
        for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
