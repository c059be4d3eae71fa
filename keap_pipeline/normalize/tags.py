"""Keap tags (listTags) -> the stage_tags frame, plus the records that cannot be loaded and why.

- keap_id: ``id`` (digits, see normalize.fields.id_digits).
- name: ``name``, required (sync_tags.name is NOT NULL), at most 255 characters.
- description: ``description`` as-is (text, no limit); absent is NULL.
- keap_category_id: ``category.id`` (the spec's CategoryReference, whose id is required); no
  ``category`` (absent or null) is a tag without a category, NULL. The category's NAME
  (sync_tags.category) is not staged: the SQL fills it from keap_pipeline.tag_categories
  (pipeline.tag_categories loads them before the tags).
- keap_updated_at: ``update_time``, required (the sync cursor needs it). ``create_time`` is not
  stored.

docs/schema.md ("How Keap's fields become staging columns") lists the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from keap_pipeline.entities import TAGS
from keap_pipeline.normalize.fields import Reject, id_text, instant_us, obj, required_text, text
from keap_pipeline.normalize.frame import RowNormalizer, record_id
from keap_pipeline.normalize.result import NormalizeResult

_LIMITS = TAGS.column_limits


def _category_id(record: dict[str, Any]) -> str | None:
    category = obj(record.get("category"), "category")
    if category is None:
        return None
    if category.get("id") is None:
        raise Reject("category.id", "category.id is missing; a category reference needs its id")
    return id_text(category["id"], "category.id", "keap_category_id", _LIMITS["keap_category_id"])


def _row(ordinal: int, record: Any) -> tuple[Any, ...]:
    keap_id = record_id(record, _LIMITS["keap_id"])
    get = record.get
    return (
        ordinal,
        keap_id,
        required_text(get("name"), "name", "name", _LIMITS["name"]),
        text(get("description"), "description", "description", None),
        _category_id(record),
        instant_us(get("update_time"), "update_time", required=True),
    )


_NORMALIZER = RowNormalizer(
    TAGS,
    _row,
    {"keap_id": "id", "name": "name", "description": "description", "keap_category_id": "category.id"},
)


def normalize_tags(records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
    """Turn one batch of Keap tags into stage_tags rows and rejections (one of either per record).

    Args:
        records: the tags as decoded from Keap's JSON, in the order Keap returned them.
        fetched_at: when the batch was fetched; must carry a time zone.

    Returns:
        The frame (exactly TAGS' staging columns) and the rejected records in input order.

    Raises:
        NaiveFetchedAtError: fetched_at has no time zone.
        BatchTooLargeError: more records than an Int32 ordinal can number.
    """
    return _NORMALIZER(records, fetched_at=fetched_at)
