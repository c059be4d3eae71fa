"""Tags out: a sync_tags row as Keap requests (createTag, updateTag with update_mask, deleteTag).

- name, description -> name, description (a cleared description is named in update_mask and left
  out of the body).
- category (the category's NAME, sync_tags.category) -> category {id}: the id of the Keap tag
  category of that name in keap_pipeline.tag_categories (a tags sync loads them). A name no
  category has, or that several have, cannot be sent (the item fails, naming the rule).
- color is the app's own: Keap tags have no colour, it is not sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keap_pipeline.entities import TAGS
from keap_pipeline.keap.endpoints import format_time
from keap_pipeline.outbound.plan import Plan, Step, Unsendable
from keap_pipeline.outbound.spec import OutboundSpec

if TYPE_CHECKING:
    import psycopg

    from keap_pipeline.keap import KeapClient

_FILTERABLE = re.compile(r"[^*;,]{1,255}")
LOOKUP_PAGES = 20


class TagCategories:
    """Keap's tag categories as the last tags sync loaded them: names by id and ids by name."""

    def __init__(self, rows: Sequence[tuple[str, str]]) -> None:
        self.names = dict(rows)
        self.ids: dict[str, list[str]] = {}
        for ident, name in rows:
            self.ids.setdefault(name, []).append(ident)

    def id_of(self, name: str | None) -> str | None:
        """The id of the category of this name (None: no category).

        Raises:
            Unsendable: no category, or more than one, has this name.
        """
        if name is None:
            return None
        ids = self.ids.get(name, [])
        if len(ids) != 1:
            raise Unsendable(
                "category must name exactly one Keap tag category (keap_pipeline.tag_categories, loaded by a tags "
                f"sync); {'none' if not ids else 'several'} has this name"
            )
        return ids[0]


class TagsOutbound(OutboundSpec):
    """sync_tags -> Keap tags."""

    entity = TAGS
    path = "/tags"
    id_filter = "tag_ids"
    fields = ()
    compared = ("name", "description", "category")
    created_compared = ("name", "description", "category")

    def context(self, conn: psycopg.Connection, rows: Sequence[dict[str, Any]]) -> TagCategories:
        """The tag categories (a small table, read once per batch)."""
        return TagCategories(conn.execute("select keap_id, name from keap_pipeline.tag_categories").fetchall())

    def keap_value(self, keap: dict[str, Any], column: str, context: Any) -> Any:
        """Keap's category as its name (the row holds names)."""
        if column == "category":
            ident = keap.get("keap_category_id")
            return None if ident is None else context.names.get(ident, f"#{ident}")
        return keap.get(column)

    def _body(self, row: dict[str, Any], columns: Sequence[str], context: TagCategories) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for column in columns:
            value = row.get(column)
            if column == "category":
                ident = context.id_of(value)
                if ident is not None:
                    body["category"] = {"id": ident}
            elif value is not None:
                body[column] = value
        return body

    def create_plan(self, row: dict[str, Any], context: Any) -> Plan:
        """POST /tags with name, description and category."""
        body = self._body(row, self.created_compared, context)
        step = Step("POST /tags", "POST", self.path, body=body, idempotent=False, returns_record=True, creates=True)
        return Plan(steps=(step,), sent=self.created_compared)

    def change_plan(self, row: dict[str, Any], current: dict[str, Any], changed: Sequence[str], context: Any) -> Plan:
        """One PATCH /tags/{id} naming only the changed properties."""
        if not changed:
            return Plan()
        step = Step(
            "PATCH /tags/{id}", "PATCH", self.record_path(str(current.get("id"))),
            params={"update_mask": list(changed)}, body=self._body(row, changed, context), returns_record=True,
        )
        return Plan(steps=(step,), sent=tuple(changed))

    def lookup(self, client: KeapClient, row: dict[str, Any], since: datetime) -> list[Any]:
        """Tags created since the unconfirmed send (with the row's name, when it can be filtered on)."""
        terms = [f"since_create_time=={format_time(since - self.clock_skew)}"]
        name = row.get("name")
        if isinstance(name, str) and _FILTERABLE.fullmatch(name):
            terms.insert(0, f"name=={name}")
        found: list[Any] = []
        for n, page in enumerate(client.iter_pages(self.entity.endpoint, filters=tuple(terms), page_size=1000), start=1):
            found.extend(page.records)
            if n >= LOOKUP_PAGES:
                raise Unsendable(
                    f"more than {LOOKUP_PAGES * 1000} tags created since the unconfirmed create; link the row by hand"
                )
        return found
