"""The Keap entities the pipeline syncs, described as data: one row per entity, nothing optional.

An entity is this row, its normalizer (field rules on the normalize toolkit) and one call of
keap_pipeline.define_sync_entity in sql/functions (which generates its typed, set-based upsert,
diff and link functions from the shared template). docs/architecture.md "Adding an entity" walks
through one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from keap_pipeline.keap.endpoints import ENDPOINTS, EndpointSpec

# the columns every staging table starts with and ends with (the row contract of the shared SQL)
KEY_COLUMNS = ("ordinal", "keap_id", "keap_updated_at", "content_hash")
# listing orders an update of a record cannot move it in (its id, its creation time): a reconcile pass
# in such an order sees every record that existed throughout the pass, however it changed meanwhile
STABLE_ORDERS = ("id", "create_time")


@dataclass(frozen=True)
class Column:
    """One staging column: its name, PostgreSQL type, nullability and, for varchar, its limit.

    ``max_length`` is the limit of the target table's ``varchar(n)`` column (characters, as
    PostgreSQL counts them); the normalizer rejects longer values instead of letting the
    database refuse the whole batch or, worse, truncating.
    """

    name: str
    pg_type: str
    nullable: bool = True
    max_length: int | None = None


class CursorKind(StrEnum):
    """How a run knows where it is in an entity's listing.

    TIME: the listing takes a time window (the endpoint's since/until filter) and is ordered by
        update time; the cursor is the highest update time committed. Incremental.
    ID: no time filter; every run is a full pass ordered by id, resumed after a kill from the
        highest id committed (``id_filter>``). Unchanged records cost no writes (key/hash diff).
    FULL: no time filter and no ordering by id: every run is a full pass from the start.
    """

    TIME = "time"
    ID = "id"
    FULL = "full"


@dataclass(frozen=True)
class Link:
    """Target columns filled from another table by a Keap id the record carries.

    E.g. an order's ``contact_id`` is ``sync_contacts.id`` where ``sync_contacts.keap_id`` is the
    order's staged ``keap_contact_id``. A record whose parent is not loaded yet loads with the Keap
    id kept and these columns NULL; keap_pipeline.resolve_<entity>_links fills them when the
    parent arrives (never an FK violation, never a dropped record).

    Attributes:
        keap_column: the staged column holding the parent's Keap id.
        parent_table: the parent table (schema-qualified).
        columns: (target column, parent column) pairs, e.g. (("contact_id", "id"),).
        parent_key: the parent's column the Keap id matches.
        parent: the parent entity's name (lineage), or "" for a lookup table.
    """

    keap_column: str
    parent_table: str
    columns: tuple[tuple[str, str], ...]
    parent_key: str = "keap_id"
    parent: str = ""


@dataclass(frozen=True)
class Entity:
    """Everything the pipeline needs to know about one Keap entity, and nothing it must compute.

    Attributes:
        name: the entity (CLI, cursors, dead letters, Dagster asset ``keap_<name>``).
        endpoint: how Keap lists it (keap.endpoints: path, list key, filters, orderings).
        fields: the properties to ask for (empty: the endpoint takes no ``fields``).
        order_by: the listing's order (``"<field> asc"``), or "" for the endpoint's default.
        cursor: how runs resume (CursorKind).
        id_filter: the filter field that takes ``>`` for ID cursors ("" otherwise).
        target_table: the sync table (schema-qualified).
        staging_table: the COPY target of full rows.
        keys_staging_table: the COPY target of phase one (KEY_COLUMNS only).
        staging_columns: the staging table's columns after batch_id, in COPY order; they start
            with ordinal, keap_id and end with keap_updated_at, content_hash.
        content_columns: the fields a person may change on either side: compared, merged and
            shown in sync_conflicts. The other staged columns are Keap's own (written from Keap).
        links: target columns filled from other tables (Link).
        concurrent_keys: unique constraints whose violation means another batch loaded the same
            record meanwhile (retried), not a bad record (any other violation is a dead letter).
        normalizer: ``"module:function"``: (records, *, fetched_at) -> NormalizeResult.
        depends_on: entities loaded before this one (lineage; the asset graph's edges).
        ids_staging_table: the COPY target of a reconcile pass (deletions in Keap): every id Keap
            lists, as (pass_id, keap_id).
        id_fields: the ``fields`` of a reconcile pass's listing (contacts: only ``id``), or empty
            when the endpoint takes none (it then sends whole records: same requests, more bytes).
        id_order_by: the reconcile listing's order: ``"<field> asc"`` with a field of STABLE_ORDERS,
            or "" (the endpoint's default) when it offers none.
        confirm_missing: whether each id missing from a reconcile listing is confirmed gone with a
            get of the record (404) before it counts: required when id_order_by is not stable (a
            record updated during the pass may move to a page already read).
        before_sync: ``"module:function"`` run with (client, database_url) before a sync pages
            the entity (e.g. the tag categories a tag's category name comes from), or "".
    """

    name: str
    endpoint: EndpointSpec
    fields: tuple[str, ...]
    order_by: str
    cursor: CursorKind
    id_filter: str
    target_table: str
    staging_table: str
    keys_staging_table: str
    staging_columns: tuple[Column, ...]
    content_columns: tuple[str, ...]
    links: tuple[Link, ...]
    concurrent_keys: tuple[str, ...]
    normalizer: str
    depends_on: tuple[str, ...]
    ids_staging_table: str
    id_fields: tuple[str, ...]
    id_order_by: str
    confirm_missing: bool
    before_sync: str = ""

    def __post_init__(self) -> None:
        names = self.staging_column_names
        if names[:2] != KEY_COLUMNS[:2] or names[-2:] != KEY_COLUMNS[2:]:
            raise ValueError(f"{self.name}: staging columns must start with ordinal, keap_id and end with keap_updated_at, content_hash")
        missing = [c for c in self.content_columns if c not in names]
        if missing:
            raise ValueError(f"{self.name}: content columns {missing} are not staging columns")
        if (self.cursor is CursorKind.TIME) != self.endpoint.has_time_window:
            raise ValueError(f"{self.name}: cursor {self.cursor} does not fit the endpoint's filters")
        if (self.cursor is CursorKind.ID) != bool(self.id_filter):
            raise ValueError(f"{self.name}: an ID cursor needs id_filter, and only it")
        if self.id_fields and (not self.endpoint.supports_fields or "id" not in self.id_fields):
            raise ValueError(f"{self.name}: id_fields need an endpoint that takes fields, and must include id")
        order = self.id_order_by.split()[0] if self.id_order_by else ""
        if order and order not in self.endpoint.order_by_fields:
            raise ValueError(f"{self.name}: id_order_by {self.id_order_by!r} is not an order the endpoint offers")
        if order not in STABLE_ORDERS and not self.confirm_missing:
            raise ValueError(
                f"{self.name}: a reconcile listing ordered by {order or 'the default'} can miss a record updated "
                "during the pass; order it by a stable field or confirm missing ids (confirm_missing)"
            )

    @property
    def path(self) -> str:
        """The endpoint's path."""
        return self.endpoint.path

    @property
    def list_key(self) -> str:
        """The key of the records' array in a listing."""
        return self.endpoint.list_key

    @property
    def table_name(self) -> str:
        """The target table's name without its schema (sync_queue.entity_type, sync_status)."""
        return self.target_table.partition(".")[2]

    @property
    def upsert_function(self) -> str:
        """The generated set-based upsert (sql/functions: define_sync_entity)."""
        return f"keap_pipeline.upsert_{self.name}_from_stage"

    @property
    def diff_function(self) -> str:
        """The generated phase-one diff."""
        return f"keap_pipeline.diff_{self.name}_from_stage"

    @property
    def link_function(self) -> str:
        """The generated link resolver (returns how many rows it linked)."""
        return f"keap_pipeline.resolve_{self.name}_links"

    @property
    def reconcile_function(self) -> str:
        """The generated reconcile pass (sql/functions: define_reconcile_entity)."""
        return f"keap_pipeline.reconcile_{self.name}_from_stage"

    @property
    def apply_deletions_function(self) -> str:
        """The generated soft delete of what a pass recorded (also a stopped pass's confirmation)."""
        return f"keap_pipeline.apply_{self.name}_deletions"

    @property
    def missing_function(self) -> str:
        """The generated list of the live rows a pass did not find (confirmed by gets when confirm_missing)."""
        return f"keap_pipeline.missing_{self.name}_from_stage"

    @property
    def column_limits(self) -> Mapping[str, int]:
        """The max lengths of the varchar staging columns, by column name."""
        return MappingProxyType(
            {c.name: c.max_length for c in self.staging_columns if c.max_length is not None}
        )

    @property
    def staging_column_names(self) -> tuple[str, ...]:
        """The staging column names in COPY order."""
        return tuple(c.name for c in self.staging_columns)

    @property
    def hashed_columns(self) -> tuple[str, ...]:
        """The columns the content hash covers: every staged column but the keys."""
        return tuple(n for n in self.staging_column_names if n not in KEY_COLUMNS)

    def resolve_normalizer(self) -> Callable[..., Any]:
        """Import and return the normalizer function (imported lazily: it pulls in polars)."""
        return _resolve(self.normalizer)

    def resolve_before_sync(self) -> Callable[..., Any] | None:
        """Import and return the before-sync hook, or None."""
        return _resolve(self.before_sync) if self.before_sync else None


def _resolve(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _id() -> tuple[Column, Column]:
    # Position in the batch: duplicates of one keap_id resolve deterministically by it.
    return Column("ordinal", "integer", nullable=False), Column("keap_id", "varchar(255)", nullable=False, max_length=255)


def _tail() -> tuple[Column, Column]:
    # md5 of the stored content (normalize.content_hash): unchanged records are recognised by it.
    return Column("keap_updated_at", "timestamptz", nullable=False), Column("content_hash", "uuid")


def _varchar(name: str, n: int, *, nullable: bool = True) -> Column:
    return Column(name, f"varchar({n})", nullable=nullable, max_length=n)


def _key(table: str) -> tuple[str, ...]:
    return (f"{table}_keap_id_key",)


# Keep in step with the spec's Contact schema (keap-rest-v2.openapi.yml, listContacts `fields`):
# only what sync_contacts stores, plus the two timestamps the cursor and conflict detection need.
CONTACT_FIELDS: tuple[str, ...] = (
    "id", "given_name", "family_name", "email_addresses", "phone_numbers", "company", "tag_ids",
    "custom_fields", "create_time", "update_time",
)

CONTACTS = Entity(
    name="contacts",
    endpoint=ENDPOINTS["contacts"],
    fields=CONTACT_FIELDS,
    order_by="update_time asc",
    cursor=CursorKind.TIME,
    id_filter="",
    target_table="public.sync_contacts",
    staging_table="keap_pipeline.stage_contacts",
    keys_staging_table="keap_pipeline.stage_contact_keys",
    staging_columns=(
        *_id(),
        # Nullable: Keap requires an email OR a phone, so contacts without an email are normal.
        _varchar("email", 255),
        _varchar("first_name", 255),
        _varchar("last_name", 255),
        _varchar("phone", 50),
        _varchar("company", 255),
        Column("tags", "jsonb", nullable=False),
        Column("custom_fields", "jsonb", nullable=False),
        Column("keap_created_at", "timestamptz"),
        *_tail(),
    ),
    content_columns=("email", "first_name", "last_name", "phone", "company", "tags", "custom_fields"),
    links=(),
    concurrent_keys=_key("sync_contacts"),
    normalizer="keap_pipeline.normalize.contacts:normalize_contacts",
    # lineage as users read it: the catalog (tags, products) first, then people, then what they buy
    depends_on=("tags", "products"),
    # a reconcile pass asks for the ids alone: one request per 1,000 contacts, a few bytes each
    ids_staging_table="keap_pipeline.stage_contact_ids",
    id_fields=("id",),
    id_order_by="id asc",
    confirm_missing=False,
)

TAGS = Entity(
    name="tags",
    endpoint=ENDPOINTS["tags"],
    fields=(),  # listTags has no `fields` parameter
    order_by="update_time asc",
    cursor=CursorKind.TIME,
    id_filter="",
    target_table="public.sync_tags",
    staging_table="keap_pipeline.stage_tags",
    keys_staging_table="keap_pipeline.stage_tag_keys",
    staging_columns=(
        *_id(),
        _varchar("name", 255, nullable=False),
        Column("description", "text"),
        _varchar("keap_category_id", 255),
        *_tail(),
    ),
    content_columns=("name", "description"),
    # sync_tags.category is the category's name: keap_pipeline.tag_categories, filled by before_sync
    links=(Link("keap_category_id", "keap_pipeline.tag_categories", (("category", "name"),)),),
    concurrent_keys=_key("sync_tags"),
    normalizer="keap_pipeline.normalize.tags:normalize_tags",
    depends_on=(),
    # listTags orders by name, create_time or update_time; only the creation time cannot move a tag
    ids_staging_table="keap_pipeline.stage_tag_ids",
    id_fields=(),
    id_order_by="create_time asc",
    confirm_missing=False,
    before_sync="keap_pipeline.pipeline.tag_categories:load_tag_categories",
)

PRODUCTS = Entity(
    name="products",
    endpoint=ENDPOINTS["products"],
    fields=(),
    # listProducts has no time filter, and order_by offers name, sku, last_updated_time only:
    # a full pass each run in Keap's default order (unchanged rows cost no writes)
    order_by="",
    cursor=CursorKind.FULL,
    id_filter="",
    target_table="public.sync_products",
    staging_table="keap_pipeline.stage_products",
    keys_staging_table="keap_pipeline.stage_product_keys",
    staging_columns=(
        *_id(),
        _varchar("name", 255, nullable=False),
        _varchar("sku", 255),
        Column("description", "text"),
        Column("price", "numeric(19,4)"),
        _varchar("currency", 3),
        Column("active", "boolean"),
        *_tail(),
    ),
    content_columns=("name", "sku", "description", "price", "currency", "active"),
    links=(),
    concurrent_keys=_key("sync_products"),
    normalizer="keap_pipeline.normalize.products:normalize_products",
    depends_on=(),
    # none of listProducts' orders (name, sku, last_updated_time) survives an update: an id missing
    # from a pass is confirmed gone with GET /products/{id} (one request each; products are few)
    ids_staging_table="keap_pipeline.stage_product_ids",
    id_fields=(),
    id_order_by="",
    confirm_missing=True,
)

ORDERS = Entity(
    name="orders",
    endpoint=ENDPOINTS["orders"],
    fields=(),  # listOrders has no `fields` parameter
    order_by="modification_time asc",
    cursor=CursorKind.TIME,
    id_filter="",
    target_table="public.sync_orders",
    staging_table="keap_pipeline.stage_orders",
    keys_staging_table="keap_pipeline.stage_order_keys",
    staging_columns=(
        *_id(),
        _varchar("keap_contact_id", 255),
        _varchar("order_number", 255),
        Column("order_date", "timestamptz", nullable=False),
        Column("total_amount", "numeric(19,4)", nullable=False),
        _varchar("currency", 3, nullable=False),
        _varchar("status", 50, nullable=False),
        Column("line_items", "jsonb", nullable=False),
        Column("shipping_address", "jsonb"),
        Column("billing_address", "jsonb"),
        *_tail(),
    ),
    content_columns=(
        "order_number", "order_date", "total_amount", "currency", "status", "line_items",
        "shipping_address", "billing_address",
    ),
    links=(Link("keap_contact_id", "public.sync_contacts", (("contact_id", "id"),), parent="contacts"),),
    # order_number is unique too, but two Keap orders with one number is a bad record, not a race
    concurrent_keys=_key("sync_orders"),
    normalizer="keap_pipeline.normalize.orders:normalize_orders",
    depends_on=("contacts",),
    # by id: order_time is set by people and can change
    ids_staging_table="keap_pipeline.stage_order_ids",
    id_fields=(),
    id_order_by="id asc",
    confirm_missing=False,
)

SUBSCRIPTIONS = Entity(
    name="subscriptions",
    endpoint=ENDPOINTS["subscriptions"],
    fields=(),
    # No time filter on listSubscriptions; its `id` filter takes '>' and order_by takes id.
    order_by="id asc",
    cursor=CursorKind.ID,
    id_filter="id",
    target_table="public.sync_subscriptions",
    staging_table="keap_pipeline.stage_subscriptions",
    keys_staging_table="keap_pipeline.stage_subscription_keys",
    staging_columns=(
        *_id(),
        _varchar("keap_contact_id", 255),
        _varchar("keap_product_id", 255),
        _varchar("keap_subscription_plan_id", 255),
        _varchar("status", 50, nullable=False),
        Column("start_date", "date"),
        Column("end_date", "date"),
        Column("next_bill_date", "date"),
        _varchar("billing_cycle", 50),
        Column("billing_frequency", "integer"),
        Column("amount", "numeric(19,4)"),
        *_tail(),
    ),
    content_columns=(
        "status", "start_date", "end_date", "next_bill_date", "billing_cycle", "billing_frequency", "amount",
    ),
    links=(
        Link("keap_contact_id", "public.sync_contacts", (("contact_id", "id"),), parent="contacts"),
        # a subscription names its product by id only: the name and the amount's currency are the product's
        Link(
            "keap_product_id", "public.sync_products",
            (("product_id", "id"), ("product_name", "name"), ("currency", "currency")), parent="products",
        ),
    ),
    concurrent_keys=_key("sync_subscriptions"),
    normalizer="keap_pipeline.normalize.subscriptions:normalize_subscriptions",
    depends_on=("contacts", "products"),
    ids_staging_table="keap_pipeline.stage_subscription_ids",
    id_fields=(),
    id_order_by="id asc",
    confirm_missing=False,
)

# lineage order: every entity after the ones it depends on
ENTITIES: Mapping[str, Entity] = MappingProxyType(
    {e.name: e for e in (TAGS, PRODUCTS, CONTACTS, ORDERS, SUBSCRIPTIONS)}
)


def lineage_order(names: tuple[str, ...] | None = None) -> tuple[Entity, ...]:
    """The entities (all, or those named) in an order where each comes after what it depends on."""
    wanted = set(ENTITIES) if names is None else set(names)
    unknown = wanted - set(ENTITIES)
    if unknown:
        raise KeyError(f"unknown entities: {', '.join(sorted(unknown))}; known: {', '.join(ENTITIES)}")
    done: list[Entity] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in path:
            raise ValueError(f"entity dependencies form a cycle: {' -> '.join((*path, name))}")
        for dep in ENTITIES[name].depends_on:
            visit(dep, (*path, name))
        seen.add(name)
        done.append(ENTITIES[name])

    for name in ENTITIES:
        visit(name, ())
    return tuple(e for e in done if e.name in wanted)
