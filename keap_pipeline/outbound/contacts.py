"""Contacts out: a sync_contacts row as Keap requests (create, PATCH with update_mask, delete, tags on and off).

The row's columns are the normalizer's (normalize/contacts.py) read backwards:

- first_name, last_name -> given_name, family_name; company -> company.company_name.
- email -> the PRIMARY entry of email_addresses (EMAIL1, else the first), the other entries as
  Keap holds them (PATCH replaces the whole list: "any item not listed here will be removed").
- phone -> the primary entry of phone_numbers (PHONE1, else the first); ``number;ext=E`` is the
  number and its extension.
- custom_fields {id: content} -> custom_fields [{id, content}], every one (the list is replaced
  whole too); contents are sent exactly (numbers with their digits).
- tags -> applyTags / removeTags of the tags added / removed (tag_ids is no property of
  CreateUpdateContactRequest), compared as a set: Keap keeps its own order.
- a column the row has cleared is named in update_mask and left out of the body.

A PATCH names in update_mask only the properties whose columns differ from Keap's record as the
pusher just read it, i.e. what the app changed (or, after a conflict resolved for the local side,
what differs). Creates never send ``duplicate_option``: Keap would then update an existing contact
with the same email, a record the row's owner may not own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keap_pipeline.entities import CONTACT_FIELDS, CONTACTS
from keap_pipeline.keap.endpoints import format_time
from keap_pipeline.outbound.plan import Plan, Step, Unsendable
from keap_pipeline.outbound.spec import OutboundSpec, digits

if TYPE_CHECKING:
    from keap_pipeline.keap import KeapClient

_FIELDS = ",".join(CONTACT_FIELDS)
_EMAIL_KEYS = ("email", "field", "opt_in_reason")  # EmailAddressRequest
_PHONE_KEYS = ("number", "extension", "type", "field")  # PhoneNumber, without the derived number_e164
# a value that can be put in a listing filter as it is (no wildcard, no term or list separator)
_FILTERABLE = re.compile(r"[^*;,\s]{1,254}")
LOOKUP_PAGES = 20


def _primary(entries: Any, slot: str) -> tuple[list[dict[str, Any]], int | None]:
    """The entries (objects only) and the index of the primary one, as the normalizer picks it."""
    kept = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    for i, entry in enumerate(kept):
        if entry.get("field") == slot:
            return kept, i
    return kept, (0 if kept else None)


def _request_entries(entries: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: e[k] for k in keys if k in e and e[k] is not None} for e in entries]


def _emails(current: dict[str, Any], email: str | None) -> list[dict[str, Any]]:
    entries, at = _primary(current.get("email_addresses"), "EMAIL1")
    entries = _request_entries(entries, _EMAIL_KEYS)
    if at is None:
        return entries + ([{"email": email, "field": "EMAIL1"}] if email is not None else [])
    if email is None:
        return entries[:at] + entries[at + 1 :]
    entries[at] = {**entries[at], "email": email, "field": entries[at].get("field") or "EMAIL1"}
    return entries


def _phone_entry(phone: str, base: dict[str, Any]) -> dict[str, Any]:
    number, sep, extension = phone.rpartition(";ext=")
    entry = {k: v for k, v in base.items() if k not in ("number", "extension")}
    if sep and number:
        entry.update(number=number, extension=extension)
    else:
        entry["number"] = phone
    entry.setdefault("field", "PHONE1")
    return entry


def _phones(current: dict[str, Any], phone: str | None) -> list[dict[str, Any]]:
    entries, at = _primary(current.get("phone_numbers"), "PHONE1")
    entries = _request_entries(entries, _PHONE_KEYS)
    if at is None:
        return entries + ([_phone_entry(phone, {})] if phone is not None else [])
    if phone is None:
        return entries[:at] + entries[at + 1 :]
    entries[at] = _phone_entry(phone, entries[at])
    return entries


def _custom_fields(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise Unsendable("custom_fields must be a JSON object {custom field id: content}")
    return [{"id": digits(k, "custom_fields keys"), "content": value[k]} for k in sorted(value, key=lambda k: (len(k), k))]


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise Unsendable("tags must be a JSON array of Keap tag ids")
    return [digits(t, "tags") for t in value]


class ContactsOutbound(OutboundSpec):
    """sync_contacts -> Keap contacts."""

    entity = CONTACTS
    path = "/contacts"
    id_filter = "ids"
    fields = CONTACT_FIELDS
    compared = ("email", "first_name", "last_name", "phone", "company", "custom_fields", "tags")
    created_compared = ("email", "first_name", "last_name", "phone", "company", "custom_fields")

    def same(self, column: str, local: Any, keap: Any) -> bool:
        """Tags compare as sets of ids (Keap keeps its own order); every other column as it is."""
        if column == "tags" and isinstance(local, list) and isinstance(keap, list):
            return sorted(map(str, local)) == sorted(map(str, keap)) and all(isinstance(t, str) for t in local)
        return bool(local == keap)

    def matches(self, sent: dict[str, Any], keap: dict[str, Any], context: Any) -> bool:
        """A created contact holds what was sent; of its custom fields at least the ones sent (Keap may add defaults)."""
        columns = [c for c in self.created_compared if c != "custom_fields"]
        if self.changed(sent, keap, context, columns=columns):
            return False
        mine = sent.get("custom_fields") or {}
        theirs = keap.get("custom_fields") or {}
        return isinstance(mine, dict) and isinstance(theirs, dict) and all(theirs.get(k) == v and k in theirs for k, v in mine.items())

    def create_plan(self, row: dict[str, Any], context: Any) -> Plan:
        """POST /contacts with every column the row holds (tags follow as applyTags, by change_plan)."""
        body: dict[str, Any] = {}
        if row.get("first_name") is not None:
            body["given_name"] = row["first_name"]
        if row.get("last_name") is not None:
            body["family_name"] = row["last_name"]
        if row.get("email") is not None:
            body["email_addresses"] = [{"email": row["email"], "field": "EMAIL1"}]
        if row.get("phone") is not None:
            body["phone_numbers"] = [_phone_entry(row["phone"], {})]
        if row.get("company") is not None:
            body["company"] = {"company_name": row["company"]}
        if row.get("custom_fields"):
            body["custom_fields"] = _custom_fields(row["custom_fields"])
        _tags(row.get("tags") or [])  # refused before anything is created, not half-way through
        step = Step(
            "POST /contacts", "POST", self.path, params={"fields": _FIELDS}, body=body, idempotent=False,
            returns_record=True, creates=True,
        )
        return Plan(steps=(step,), sent=self.created_compared)

    def change_plan(self, row: dict[str, Any], current: dict[str, Any], changed: Sequence[str], context: Any) -> Plan:
        """Tags on and off, then one PATCH naming only the changed properties (or a GET when only tags changed)."""
        keap_id = str(current.get("id"))
        steps: list[Step] = []
        if "tags" in changed:
            wanted = _tags(row.get("tags") or [])
            held = [t for t in (current.get("tag_ids") or []) if isinstance(t, str)]
            for tag in sorted(set(held) - set(wanted), key=int):
                steps.append(Step(
                    "POST /tags/{id}/contacts:removeTags", "POST", f"/tags/{tag}/contacts:removeTags",
                    body={"contact_ids": [digits(keap_id, "keap_id")]},
                ))
            for tag in [t for t in dict.fromkeys(wanted) if t not in held]:
                steps.append(Step(
                    "POST /tags/{id}/contacts:applyTags", "POST", f"/tags/{tag}/contacts:applyTags",
                    body={"contact_ids": [digits(keap_id, "keap_id")]},
                ))
        mask: list[str] = []
        body: dict[str, Any] = {}
        simple = {"first_name": "given_name", "last_name": "family_name"}
        for column in changed:
            value = row.get(column)
            if column in simple:
                mask.append(simple[column])
                if value is not None:
                    body[simple[column]] = value
            elif column == "company":
                mask.append("company")
                if value is not None:
                    body["company"] = {"company_name": value}
            elif column == "email":
                mask.append("email_addresses")
                body["email_addresses"] = _emails(current, value)
            elif column == "phone":
                mask.append("phone_numbers")
                body["phone_numbers"] = _phones(current, value)
            elif column == "custom_fields":
                mask.append("custom_fields")
                body["custom_fields"] = _custom_fields(value if value is not None else {})
        if mask:
            steps.append(Step(
                "PATCH /contacts/{id}", "PATCH", self.record_path(keap_id),
                params={"update_mask": mask, "fields": _FIELDS}, body=body, returns_record=True,
            ))
        elif steps:
            steps.append(self.read_back(keap_id))
        return Plan(steps=tuple(steps), sent=tuple(changed))

    def lookup(self, client: KeapClient, row: dict[str, Any], since: datetime) -> list[Any]:
        """Contacts with the row's email (when it can be filtered on) updated since the unconfirmed send."""
        terms = [f"start_update_time=={format_time(since - self.clock_skew)}"]
        email = row.get("email")
        if isinstance(email, str) and _FILTERABLE.fullmatch(email):
            terms.insert(0, f"email=={email}")
        found: list[Any] = []
        pages = client.iter_pages(self.entity.endpoint, fields=self.fields, filters=tuple(terms), page_size=1000)
        for n, page in enumerate(pages, start=1):
            found.extend(page.records)
            if n >= LOOKUP_PAGES:
                raise Unsendable(
                    f"more than {LOOKUP_PAGES * 1000} contacts changed since the unconfirmed create; "
                    "link the row by hand (or retry later)"
                )
        return found
