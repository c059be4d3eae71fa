"""The Keap entities the pipeline syncs, described as data: endpoints, filters, fields, staging, upsert."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


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


@dataclass(frozen=True)
class TimeFilter:
    """Which ``filter`` fields of a list endpoint carry the incremental time window.

    Keap takes them inside the single ``filter`` query parameter as ``field==value`` pairs
    joined by ``;`` (for contacts: ``filter=start_update_time==...;end_update_time==...``),
    each value a full ISO-8601 date-time with milliseconds and an offset.
    """

    start_field: str
    end_field: str
    param: str = "filter"


@dataclass(frozen=True)
class Entity:
    """Everything the pipeline needs to know about one Keap entity, and nothing it must compute.

    Fields that are not known yet for an entity whose loader does not exist yet are None
    (or empty), so code generated from this table can tell "not supported yet" apart from
    a value.
    """

    name: str
    path: str
    list_key: str
    fields: tuple[str, ...] | None
    time_filter: TimeFilter | None
    order_by: str | None
    target_table: str | None
    staging_table: str | None
    staging_columns: tuple[Column, ...]
    upsert_function: str | None
    normalizer: str | None
    # For entities without a time filter: the filter field that supports '>' for id paging.
    id_filter: str | None = None
    # Phase one of a batch (optional): keys and content hashes are copied to this table and the
    # function says which records need their full rows loaded (unchanged ones never travel).
    keys_staging_table: str | None = None
    diff_function: str | None = None

    @property
    def column_limits(self) -> Mapping[str, int]:
        """The max lengths of the varchar staging columns, by column name.

        Returns:
            A read-only mapping column name -> max characters.
        """
        return MappingProxyType(
            {c.name: c.max_length for c in self.staging_columns if c.max_length is not None}
        )

    @property
    def staging_column_names(self) -> tuple[str, ...]:
        """The staging column names in COPY order.

        Returns:
            The names of ``staging_columns``, in order.
        """
        return tuple(c.name for c in self.staging_columns)

    def resolve_normalizer(self) -> Callable[..., Any]:
        """Import and return the normalizer function (imported lazily: it pulls in polars).

        Returns:
            The callable named by ``normalizer`` (``"package.module:function"``).

        Raises:
            LookupError: the entity has no normalizer yet.
        """
        if self.normalizer is None:
            raise LookupError(f"entity {self.name!r} has no normalizer yet")
        module_name, _, attr = self.normalizer.partition(":")
        return getattr(importlib.import_module(module_name), attr)


# Keep in step with the spec's Contact schema (keap-rest-v2.openapi.yml, listContacts `fields`):
# only what sync_contacts stores, plus the two timestamps the cursor and conflict detection need.
CONTACT_FIELDS: tuple[str, ...] = (
    "id",
    "given_name",
    "family_name",
    "email_addresses",
    "phone_numbers",
    "company",
    "tag_ids",
    "custom_fields",
    "create_time",
    "update_time",
)

CONTACT_STAGING_COLUMNS: tuple[Column, ...] = (
    # Position in the batch: duplicates of one keap_id resolve deterministically by it.
    Column("ordinal", "integer", nullable=False),
    Column("keap_id", "varchar(255)", nullable=False, max_length=255),
    # Nullable: Keap requires an email OR a phone, so contacts without an email are normal.
    Column("email", "varchar(255)", max_length=255),
    Column("first_name", "varchar(255)", max_length=255),
    Column("last_name", "varchar(255)", max_length=255),
    Column("phone", "varchar(50)", max_length=50),
    Column("company", "varchar(255)", max_length=255),
    Column("tags", "jsonb", nullable=False),
    Column("custom_fields", "jsonb", nullable=False),
    Column("keap_created_at", "timestamptz"),
    Column("keap_updated_at", "timestamptz", nullable=False),
    # md5 of the stored content (normalize.content_hash): unchanged records are recognised by it.
    Column("content_hash", "uuid"),
)

CONTACTS = Entity(
    name="contacts",
    path="/contacts",
    list_key="contacts",
    fields=CONTACT_FIELDS,
    time_filter=TimeFilter(start_field="start_update_time", end_field="end_update_time"),
    order_by="update_time asc",
    target_table="public.sync_contacts",
    staging_table="keap_pipeline.stage_contacts",
    staging_columns=CONTACT_STAGING_COLUMNS,
    upsert_function="keap_pipeline.upsert_contacts_from_stage",
    normalizer="keap_pipeline.normalize.contacts:normalize_contacts",
    keys_staging_table="keap_pipeline.stage_contact_keys",
    diff_function="keap_pipeline.diff_contacts_from_stage",
)

# The rows below are what the spec says about the next entities; their staging tables,
# upsert functions and normalizers do not exist yet (None / empty until they do).
TAGS = Entity(
    name="tags",
    path="/tags",
    list_key="tags",
    fields=None,  # listTags has no `fields` parameter
    time_filter=TimeFilter(start_field="since_update_time", end_field="until_update_time"),
    order_by="update_time asc",
    target_table="public.sync_tags",
    staging_table=None,
    staging_columns=(),
    upsert_function=None,
    normalizer=None,
)

ORDERS = Entity(
    name="orders",
    path="/orders",
    list_key="orders",
    fields=None,  # listOrders has no `fields` parameter
    time_filter=TimeFilter(start_field="modified_since_time", end_field="modified_until_time"),
    order_by="modification_time asc",
    target_table="public.sync_orders",
    staging_table=None,
    staging_columns=(),
    upsert_function=None,
    normalizer=None,
)

SUBSCRIPTIONS = Entity(
    name="subscriptions",
    path="/subscriptions",
    list_key="subscriptions",
    fields=None,
    # No time filter on listSubscriptions; its `id` filter supports '>' and order_by supports id.
    time_filter=None,
    order_by="id asc",
    target_table="public.sync_subscriptions",
    staging_table=None,
    staging_columns=(),
    upsert_function=None,
    normalizer=None,
    id_filter="id",
)

PRODUCTS = Entity(
    name="products",
    path="/products",
    list_key="products",
    fields=None,
    # No time filter; `product_id` supports '>' but order_by offers only name, sku,
    # last_updated_time, so id paging cannot also be ordered by id: left open (None).
    time_filter=None,
    order_by=None,
    # The request has no sync_products table: products only name the subscriptions' product.
    target_table=None,
    staging_table=None,
    staging_columns=(),
    upsert_function=None,
    normalizer=None,
    id_filter="product_id",
)

ENTITIES: Mapping[str, Entity] = MappingProxyType(
    {e.name: e for e in (CONTACTS, TAGS, ORDERS, SUBSCRIPTIONS, PRODUCTS)}
)
