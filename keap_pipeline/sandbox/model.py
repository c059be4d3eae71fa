"""The contact custom-field model (GET /v2/contacts/model): one field of every Keap field type."""

from __future__ import annotations

import json
import random
from typing import Any

from keap_pipeline.sandbox.errors import SandboxError
from keap_pipeline.sandbox.timefmt import iso_ms

# Every field_type the spec's CustomFieldMetaData enum lists, in that order.
FIELD_TYPES: tuple[str, ...] = (
    "CURRENCY", "DATE", "DATE_TIME", "DAY_OF_WEEK", "DECIMAL_NUMBER", "DRILLDOWN", "DROPDOWN", "EMAIL",
    "LIST_BOX", "MONTH", "NAME", "PERCENT", "PHONE_NUMBER", "RADIO", "SOCIAL_SECURITY_NUMBER", "STATE",
    "TEXT", "TEXT_AREA", "USER", "USER_LIST_BOX", "WEBSITE", "WHOLE_NUMBER", "YEAR", "YES_NO",
)
_OPTIONS = {
    "DROPDOWN": ("Red", "Green", "Blue", "Grün"),
    "RADIO": ("Yes please", "No thanks", "Peut-être"),
    "LIST_BOX": ("Email", "SMS", "Post", "電話"),
    "DRILLDOWN": ("Europe > Germany", "Europe > Poland", "Asia > Japan", "Americas > USA"),
}
OPTIONAL_PROPERTIES: tuple[str, ...] = (
    "custom_fields", "tag_ids", "addresses", "company", "create_time", "update_time", "job_title",
    "website", "birth_date", "contact_type", "source_type", "owner_id", "score_value", "time_zone",
    "preferred_locale", "middle_name", "preferred_name",
)
USER_IDS: tuple[str, ...] = ("1", "3", "7", "12")


def model() -> dict[str, Any]:
    """The ObjectModel document: custom field ids 1..24, one per field type."""
    fields = []
    for index, kind in enumerate(FIELD_TYPES, start=1):
        field: dict[str, Any] = {
            "id": str(index),
            "label": f"{kind.replace('_', ' ').title()} field",
            "field_type": kind,
            "record_type": "CONTACT",
            "field_name": f"{kind.title().replace('_', '')}{index}",
            "group_id": "1" if index <= 12 else "2",
            "group_name": "Profile" if index <= 12 else "Marketing",
        }
        if kind in _OPTIONS:
            field["options"] = [
                {"id": f"{index}{n}", "label": label} for n, label in enumerate(_OPTIONS[kind], start=1)
            ]
        fields.append(field)
    return {"custom_fields": fields, "optional_properties": list(OPTIONAL_PROPERTIES)}


def sample_content(kind: str, rng: random.Random) -> Any:
    """A value of a custom field of this type, as Keap returns it in `content`.

    Args:
        kind: a custom field_type.
        rng: the random generator to draw from.

    Returns:
        The value (str, number, bool or list).

    Raises:
        SandboxError: the type is not one of FIELD_TYPES.
    """
    if kind in ("CURRENCY", "DECIMAL_NUMBER", "PERCENT"):
        return round(rng.uniform(-50, 100_000), 2) if kind == "CURRENCY" else round(rng.uniform(0, 100), 3)
    if kind == "WHOLE_NUMBER":
        return rng.choice((0, 1, 42, -7, 2_147_483_647, 9_007_199_254_740_991))
    if kind == "YEAR":
        return rng.randint(1950, 2030)
    if kind == "YES_NO":
        return rng.random() < 0.5
    if kind == "DATE":
        return iso_ms(rng.randint(0, 1_767_225_600_000))[:10]
    if kind == "DATE_TIME":
        return iso_ms(rng.randint(946_684_800_000, 1_767_225_600_000))
    if kind == "DAY_OF_WEEK":
        return rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))
    if kind == "MONTH":
        return rng.choice(("January", "March", "July", "December"))
    if kind in ("DROPDOWN", "RADIO", "DRILLDOWN"):
        return rng.choice(_OPTIONS[kind])
    if kind == "LIST_BOX":
        return rng.sample(_OPTIONS[kind], rng.randint(1, 3))
    if kind == "USER":
        return rng.choice(USER_IDS)
    if kind == "USER_LIST_BOX":
        return rng.sample(USER_IDS, rng.randint(1, 2))
    if kind == "EMAIL":
        return rng.choice(("billing@example.com", "Zoë@exämple.de", "ops+keap@example.org"))
    if kind == "PHONE_NUMBER":
        return rng.choice(("+44 20 7946 0958", "(480) 555-0142", "+81 3-1234-5678"))
    if kind == "SOCIAL_SECURITY_NUMBER":
        return rng.choice(("078-05-1120", "219-09-9999"))
    if kind == "STATE":
        return rng.choice(("AZ", "NY", "Bayern", "東京都"))
    if kind == "WEBSITE":
        return rng.choice(("https://example.com", "http://exämple.de/über?x=1&y=2", "www.example.jp"))
    if kind == "NAME":
        return rng.choice(("Zoë Ñúñez", "山田 太郎", "O'Brien"))
    if kind == "TEXT":
        return rng.choice(("plain", 'has "quotes" and \\ backslash', "tab\there", "emoji 🎉", ""))
    if kind == "TEXT_AREA":
        return rng.choice(("line one\nline two", "Grüße,\r\nŁukasz", "<b>not html</b>"))
    raise SandboxError(f"unknown custom field type {kind!r}")


def content_json(kind: str, rng: random.Random) -> str:
    """sample_content, rendered as compact JSON.

    Args:
        kind: a custom field_type.
        rng: the random generator to draw from.

    Returns:
        The value as JSON text.
    """
    return json.dumps(sample_content(kind, rng), ensure_ascii=False, separators=(",", ":"))
