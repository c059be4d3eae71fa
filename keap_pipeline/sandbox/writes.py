"""The sandbox's write operations: contact and tag bodies checked as Keap checks them, and their effects kept.

Every body is checked against the spec's request schema (the derived contract) and against the
limits the spec states in words (an EMAIL1 address holds at most 75 characters, PHONE1-3 numbers
40, PHONE4-5 20). A refusal is a 400 whose message names the field and the rule it breaks, never
the value: the pusher keeps Keap's message as the reason of a failed item, and reasons never hold
customer data. What is accepted is kept in the state's overlay, so later listings and gets show it.

Tests reach two things here through ``SandboxState``: ``writes`` (every write applied, as
(operationId, record id)) and ``write_gate`` (a hook called before a write is applied and again
after it is applied but before it is answered, to hold a request at either point; listings call
its ``before`` too, so a test can hold a reader).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from keap_pipeline.sandbox.errors import ApiError

if TYPE_CHECKING:
    from keap_pipeline.sandbox.state import SandboxState

# the limits the spec gives in descriptions (EmailAddressRequest.email, PhoneNumber.number)
_EMAIL_LIMITS = {"EMAIL1": 75, "EMAIL2": 100, "EMAIL3": 100}
_PHONE_LIMITS = {"PHONE1": 40, "PHONE2": 40, "PHONE3": 40, "PHONE4": 20, "PHONE5": 20}
WRITE_OPERATIONS = frozenset(
    {"createContact", "updateContact", "deleteContact", "createTag", "updateTag", "deleteTag", "applyTags", "removeTags"}
)


class WriteGate(Protocol):
    """A test's hook around one write (``before`` it is applied, ``after`` it is applied, unanswered) or listing."""

    def before(self, op: str, ident: int | None) -> None:
        """Called before the write is applied (block here to hold a request Keap has not acted on)."""

    def after(self, op: str, ident: int | None) -> None:
        """Called after the write is applied (block here to hold an answer the client has not received)."""


@dataclass(frozen=True)
class Rule:
    """One refusal: the field (a JSON path) and the rule it breaks."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


def _schema_rules(schema_name: str, body: Any) -> list[Rule]:
    """The body against a request schema of the contract: field and rule of each violation, no values."""
    try:
        from keap_pipeline.sandbox.contract.validate import body_rule_problems
    except ImportError:  # jsonschema is a dev dependency; without it bodies get the checks below only
        return []
    return [Rule(field, rule) for field, rule in body_rule_problems(schema_name, body)]


def _json_object(body: bytes, schema_name: str) -> dict[str, Any]:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object ({schema_name})")
    return data


def _refuse(what: str, rules: list[Rule]) -> None:
    if rules:
        raise ApiError(400, f"invalid {what}: " + "; ".join(str(r) for r in rules[:5]))


def contact_body(body: bytes, create: bool) -> dict[str, Any]:
    """A CreateUpdateContactRequest checked as Keap checks it; the properties to store.

    Args:
        body: the raw request body.
        create: POST (a contact needs an email, a phone or an address) rather than PATCH.

    Returns:
        The body's properties but ``id``.

    Raises:
        ApiError: 400 naming the field and the rule (never the value).
    """
    data = _json_object(body, "CreateUpdateContactRequest")
    rules = _schema_rules("CreateUpdateContactRequest", data)
    for i, entry in enumerate(data.get("email_addresses") or []):
        if isinstance(entry, dict) and isinstance(entry.get("email"), str):
            limit = _EMAIL_LIMITS.get(entry.get("field") or "EMAIL1", 75)
            if len(entry["email"]) > limit:
                rules.append(Rule(f"email_addresses/{i}/email", f"at most {limit} characters in {entry.get('field') or 'EMAIL1'}"))
            if "@" not in entry["email"]:
                rules.append(Rule(f"email_addresses/{i}/email", "must be an email address (name@domain)"))
    for i, entry in enumerate(data.get("phone_numbers") or []):
        if isinstance(entry, dict) and isinstance(entry.get("number"), str):
            limit = _PHONE_LIMITS.get(entry.get("field") or "PHONE1", 40)
            if len(entry["number"]) > limit:
                rules.append(Rule(f"phone_numbers/{i}/number", f"at most {limit} characters in {entry.get('field') or 'PHONE1'}"))
    _refuse("contact", rules)
    if create and not any(data.get(k) for k in ("email_addresses", "phone_numbers", "addresses")):
        raise ApiError(400, "a contact needs at least one of email_addresses, phone_numbers or addresses")
    for address in data.get("addresses") or []:
        if address.get("region") and not address.get("country_code"):
            raise ApiError(400, "country_code is required when region is given")
    return {k: v for k, v in data.items() if k != "id"}


def tag_body(state: SandboxState, body: bytes, create: bool) -> dict[str, Any]:
    """A CreateUpdateTagRequest checked as Keap checks it: a tag needs a name, a category must exist.

    Args:
        state: the sandbox state (its tag categories).
        body: the raw request body.
        create: POST rather than PATCH.

    Returns:
        The body's properties but ``id``.

    Raises:
        ApiError: 400 naming the field and the rule.
    """
    data = _json_object(body, "CreateUpdateTagRequest")
    rules = _schema_rules("CreateUpdateTagRequest", data)
    if create and not (isinstance(data.get("name"), str) and data["name"].strip()):
        rules.append(Rule("name", "required, not blank"))
    category = data.get("category")
    if isinstance(category, dict) and isinstance(category.get("id"), str):
        if not category["id"].isdigit() or state.current("tag_categories", int(category["id"])) is None:
            rules.append(Rule("category/id", "must name an existing tag category"))
    _refuse("tag", rules)
    return {k: v for k, v in data.items() if k != "id"}


def contact_ids(body: bytes) -> list[int]:
    """The contact ids of an ApplyRemoveTagRequest.

    Raises:
        ApiError: 400 naming the field and the rule.
    """
    data = _json_object(body, "ApplyRemoveTagRequest")
    _refuse("request", _schema_rules("ApplyRemoveTagRequest", data))
    ids = data.get("contact_ids")
    if not ids:
        raise ApiError(400, "invalid request: contact_ids: required, at least one")
    if not all(isinstance(i, str) and i.isdigit() and len(i) <= 18 for i in ids):
        raise ApiError(400, "invalid request: contact_ids: each an id (a string of digits)")
    return [int(i) for i in ids]


def masked(raw: str | None, allowed: frozenset[str] | list[str]) -> list[str] | None:
    """An update_mask query value (comma-joined as the server joins repeats) checked against the spec's enum.

    Raises:
        ApiError: 400 naming the unknown properties.
    """
    if raw is None:
        return None
    names = [n for n in raw.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ApiError(400, f"update_mask: unknown properties {', '.join(unknown)}")
    return names


def tag_contacts(state: SandboxState, tag: int, ids: list[int], *, apply: bool) -> dict[str, str]:
    """Apply a tag to contacts (or remove it): each contact's tag_ids and update time change.

    Args:
        state: the sandbox state.
        tag: the tag id (it must exist).
        ids: contact ids.
        apply: apply (True) or remove (False).

    Returns:
        ApplyTagsResponse.results: contact id -> SUCCESS, or NOT_FOUND for a contact that does not exist.

    Raises:
        ApiError: 404 when the tag does not exist.
    """
    if state.current("tags", tag) is None:
        raise ApiError(404, f"tag {tag} not found")
    results: dict[str, str] = {}
    with state.lock:
        for ident in ids:
            record = state.current("contacts", ident)
            if record is None:
                results[str(ident)] = "NOT_FOUND"
                continue
            tags = [t for t in (record.get("tag_ids") or []) if isinstance(t, str)]
            wanted = str(tag)
            if apply and wanted not in tags:
                state.update_record("contacts", ident, {"tag_ids": [*tags, wanted]})
            elif not apply and wanted in tags:
                state.update_record("contacts", ident, {"tag_ids": [t for t in tags if t != wanted]})
            results[str(ident)] = "SUCCESS"
    return results
