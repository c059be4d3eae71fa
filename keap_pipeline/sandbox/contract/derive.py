"""Derive the project's Keap v2 contract (operations + the closure of their schemas) from the official spec."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from keap_pipeline.sandbox.errors import ContractError

# (path, method) of every operation the pipeline and the sandbox use; the contract holds these only.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("/rest/v2/contacts", "get"),
    ("/rest/v2/contacts", "post"),
    ("/rest/v2/contacts/{contact_id}", "get"),
    ("/rest/v2/contacts/{contact_id}", "patch"),
    ("/rest/v2/contacts/{contact_id}", "delete"),
    ("/rest/v2/contacts/model", "get"),
    ("/rest/v2/contacts:merge", "post"),
    ("/rest/v2/tags", "get"),
    ("/rest/v2/tags", "post"),
    ("/rest/v2/tags/{tag_id}", "get"),
    ("/rest/v2/tags/{tag_id}", "patch"),
    ("/rest/v2/tags/{tag_id}", "delete"),
    ("/rest/v2/tags/{tag_id}/contacts:applyTags", "post"),
    ("/rest/v2/tags/{tag_id}/contacts:removeTags", "post"),
    ("/rest/v2/tags/categories", "get"),
    ("/rest/v2/tags/categories/{tag_category_id}", "get"),
    ("/rest/v2/products", "get"),
    ("/rest/v2/products/{product_id}", "get"),
    ("/rest/v2/products/{product_id}", "delete"),
    ("/rest/v2/orders", "get"),
    ("/rest/v2/orders/{order_id}", "get"),
    ("/rest/v2/orders/{order_id}", "delete"),
    ("/rest/v2/subscriptions", "get"),
    ("/rest/v2/subscriptions/{subscription_id}", "get"),
    ("/rest/v2/companies", "get"),
    ("/rest/v2/companies/{company_id}", "get"),
)

_REF_PREFIX = "#/components/schemas/"


def load_spec(path: Path) -> tuple[dict[str, Any], str]:
    """Parse the OpenAPI YAML.

    Args:
        path: the spec file (keap-rest-v2.openapi.yml).

    Returns:
        The parsed document and the sha256 of its bytes.

    Raises:
        ContractError: the file is missing or is not an OpenAPI 3.1 document.
    """
    import yaml  # PyYAML comes with dagster; only the deriving step needs it

    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ContractError(f"cannot read the Keap spec at {path}: {err.strerror}") from err
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader parses 1.3 MB in ~0.5 s
    doc = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1"):
        raise ContractError(f"{path} is not an OpenAPI 3.1 document")
    return doc, hashlib.sha256(raw).hexdigest()


def _refs(node: Any, found: set[str]) -> None:
    """Collect the component-schema names referenced anywhere under node."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith(_REF_PREFIX):
                raise ContractError(f"unsupported $ref {ref!r}: only {_REF_PREFIX}* is handled")
            found.add(ref[len(_REF_PREFIX) :])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def derive(spec: dict[str, Any], spec_sha256: str, spec_name: str) -> dict[str, Any]:
    """Cut the project's contract out of the spec.

    Args:
        spec: the parsed OpenAPI document.
        spec_sha256: hash of the spec's bytes, recorded so drift is visible.
        spec_name: file name recorded as the source.

    Returns:
        {"source": ..., "operations": {operationId: {method, path, parameters, requestBody,
        responses}}, "components": {"schemas": closure}} with every $ref left as in the spec.

    Raises:
        ContractError: an operation or a referenced schema is missing from the spec.
    """
    operations: dict[str, Any] = {}
    for path, method in OPERATIONS:
        try:
            op = spec["paths"][path][method]
        except KeyError as err:
            raise ContractError(f"the spec has no {method.upper()} {path}") from err
        operations[op["operationId"]] = {
            "method": method,
            "path": path,
            "parameters": op.get("parameters", []),
            "requestBody": op.get("requestBody"),
            "responses": op.get("responses", {}),
        }
    schemas = spec.get("components", {}).get("schemas", {})
    wanted: set[str] = set()
    _refs(operations, wanted)
    closure: dict[str, Any] = {}
    pending = sorted(wanted)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        if name not in schemas:
            raise ContractError(f"schema {name!r} is referenced but not defined in the spec")
        closure[name] = schemas[name]
        more: set[str] = set()
        _refs(schemas[name], more)
        pending.extend(sorted(more - closure.keys()))
    return {
        "source": {
            "file": spec_name,
            "sha256": spec_sha256,
            "openapi": spec["openapi"],
            "title": spec.get("info", {}).get("title"),
            "version": spec.get("info", {}).get("version"),
            "servers": spec.get("servers", []),
            "securitySchemes": spec.get("components", {}).get("securitySchemes", {}),
        },
        "operations": operations,
        "components": {"schemas": dict(sorted(closure.items()))},
    }


def dumps(contract: dict[str, Any]) -> str:
    """The canonical text of a contract (stable key order, so a fresh derivation compares byte for byte).

    Args:
        contract: a contract document.

    Returns:
        The JSON text (ends with a newline).
    """
    return json.dumps(contract, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
