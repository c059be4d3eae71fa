"""The table of entities the sandbox serves: list keys, time windows, filters and orderings from the spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keap_pipeline.sandbox.filters import CMP, CMP_NE, Field


def _get(*path: str) -> Callable[[dict[str, Any]], Any]:
    def extract(record: dict[str, Any]) -> Any:
        value: Any = record
        for key in path:
            if isinstance(value, list):
                return [v.get(key) for v in value if isinstance(v, dict)]
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return extract


def _order_product_ids(record: dict[str, Any]) -> list[str]:
    return [item["product"]["id"] for item in record.get("order_items", []) if "product" in item]


@dataclass(frozen=True)
class EntitySpec:
    """One listable entity.

    order: order_by field -> "id" (ids ascend with this field: creation times, which the sandbox
    hands out in id order), "time" (the entity's indexed time field), or a record extractor
    (sorted the slow way, O(n log n) per page: fine for small entities, documented for contacts).

    created_fields: the record's creation times (set once, when the sandbox creates a record);
    stamp_field: the record property an update sets to its new time, when the entity has no
    indexed time field (tag categories); see ``updated_field``.
    delete_op: the spec's delete operation of a record (DELETE .../{id}), or "" where it has none
    (subscriptions, tag categories, companies here).
    """

    name: str
    list_key: str
    list_op: str
    get_op: str
    id_param: str
    time_field: str | None
    order: dict[str, str | Callable[[dict[str, Any]], Any]]
    filters: dict[str, Field]
    fields_param: bool = False
    not_default: frozenset[str] = frozenset()
    created_fields: tuple[str, ...] = ()
    stamp_field: str | None = None
    delete_op: str = ""

    @property
    def updated_field(self) -> str | None:
        """The record property that holds its update time (None: records carry none)."""
        return self.stamp_field or self.time_field


UNSUPPORTED = Field("unsupported")

CONTACTS = EntitySpec(
    name="contacts",
    created_fields=("create_time",),
    list_key="contacts",
    list_op="listContacts",
    get_op="getContact",
    delete_op="deleteContact",
    id_param="contact_id",
    time_field="update_time",
    order={"id": "id", "create_time": "id", "update_time": "time", "email": _get("email_addresses", "email")},
    filters={
        "start_update_time": Field("window_lo"),
        "end_update_time": Field("window_hi"),
        "ids": Field("idset"),
        "contact_ids": Field("idset"),
        "contact_id": Field("idcmp", CMP),
        "email": Field("text", extract=_get("email_addresses", "email")),
        "given_name": Field("text", extract=_get("given_name")),
        "family_name": Field("text", extract=_get("family_name")),
        "middle_name": Field("text", extract=_get("middle_name")),
        "company_id": Field("exact", extract=_get("company", "id")),
        "website": Field("text", extract=_get("website")),
        **{
            name: UNSUPPORTED
            for name in (
                "phone_number", "phone_fields", "billing_address_line1", "billing_address_locality",
                "billing_address_region", "billing_address_postal_code", "billing_address_country_code",
                "shipping_address_line1", "shipping_address_locality", "shipping_address_region",
                "shipping_address_postal_code", "shipping_address_country_code", "other_address_line1",
                "other_address_locality", "other_address_region", "other_address_postal_code",
                "other_address_country_code", "city", "state", "lead_source_name",
            )
        },
    },
    fields_param=True,
)

ORDERS = EntitySpec(
    name="orders",
    created_fields=("creation_time", "order_time"),
    list_key="orders",
    list_op="listOrders",
    get_op="getOrder",
    delete_op="deleteOrder",
    id_param="order_id",
    time_field="modification_time",
    order={"id": "id", "order_time": "id", "modification_time": "time"},
    filters={
        "id": Field("idcmp", CMP_NE),
        "ids": Field("idset"),
        "product_id": Field("exact", extract=_order_product_ids),
        "contact_id": Field("exact", extract=_get("contact", "id")),
        "invoice_id": UNSUPPORTED,
        "invoice_xid": UNSUPPORTED,
        "paid": Field("bool", extract=lambda r: r.get("status") == "PAID"),
        "created_since_time": Field("time_lo", extract=_get("creation_time")),
        "created_until_time": Field("time_hi", extract=_get("creation_time")),
        "modified_since_time": Field("window_lo"),
        "modified_until_time": Field("window_hi"),
        "title": Field("text", extract=_get("title")),
        "order_type": Field("exact", extract=_get("order_type")),
        "shipping_locality": Field("exact", extract=_get("shipping_information", "address", "locality")),
        "shipping_region_code": Field("exact", extract=_get("shipping_information", "address", "region_code")),
        "shipping_postal_code": Field("exact", extract=_get("shipping_information", "address", "postal_code")),
        "shipping_country_code": Field("exact", extract=_get("shipping_information", "address", "country_code")),
    },
)

TAGS = EntitySpec(
    name="tags",
    created_fields=("create_time",),
    list_key="tags",
    list_op="listTags",
    get_op="getTag",
    delete_op="deleteTag",
    id_param="tag_id",
    time_field="update_time",
    order={"name": _get("name"), "create_time": "id", "update_time": "time"},
    filters={
        "name": Field("exact", extract=_get("name")),
        "description": UNSUPPORTED,
        "category_id": Field("exact", extract=lambda r: (r.get("category") or {}).get("id", "NONE")),
        "tag_ids": Field("idset"),
        "since_create_time": Field("time_lo", extract=_get("create_time")),
        "until_create_time": Field("time_hi", extract=_get("create_time")),
        "since_update_time": Field("window_lo"),
        "until_update_time": Field("window_hi"),
    },
)

TAG_CATEGORIES = EntitySpec(
    name="tag_categories",
    created_fields=("create_time",),
    stamp_field="update_time",
    list_key="tag_categories",
    list_op="listTagCategories",
    get_op="getCategory",
    id_param="tag_category_id",
    time_field=None,
    order={"name": _get("name"), "create_time": "id", "update_time": _get("update_time")},
    filters={
        "name": Field("exact", extract=_get("name")),
        "description": UNSUPPORTED,
        "since_create_time": Field("time_lo", extract=_get("create_time")),
        "until_create_time": Field("time_hi", extract=_get("create_time")),
        "since_update_time": Field("time_lo", extract=_get("update_time")),
        "until_update_time": Field("time_hi", extract=_get("update_time")),
    },
)

COMPANIES = EntitySpec(
    name="companies",
    created_fields=("create_time",),
    list_key="companies",
    list_op="listCompanies",
    get_op="getCompany",
    id_param="company_id",
    time_field="update_time",
    order={"id": "id", "create_time": "id", "name": _get("company_name"), "email": _get("email_address", "email")},
    filters={
        "company_name": Field("exact", extract=_get("company_name")),
        "name": Field("text", extract=_get("company_name")),
        "email": Field("exact", extract=_get("email_address", "email")),
        "city": Field("text", extract=_get("address", "locality")),
        "state": Field("text", extract=_get("address", "region_code")),
        "since_time": Field("window_lo"),
        "until_time": Field("window_hi"),
        "company_id": Field("idcmp", CMP),
    },
    fields_param=True,
    not_default=frozenset(
        {"notes", "fax_number", "address", "email_address", "phone_number", "update_time", "create_time", "custom_fields"}
    ),
)

PRODUCTS = EntitySpec(
    name="products",
    created_fields=("create_time",),
    list_key="products",
    list_op="listProducts",
    get_op="getProduct",
    delete_op="deleteProduct",
    id_param="product_id",
    time_field="update_time",
    order={"name": _get("name"), "sku": _get("sku"), "last_updated_time": "time"},
    filters={
        "name": Field("text", extract=_get("name")),
        "sku": Field("text", extract=_get("sku")),
        "description": UNSUPPORTED,
        "short_description": Field("text", extract=_get("short_description")),
        "product_id": Field("idcmp", CMP),
        "product_ids": Field("idset"),
    },
)

SUBSCRIPTIONS = EntitySpec(
    name="subscriptions",
    list_key="subscriptions",
    list_op="listSubscriptions",
    get_op="getSubscription",
    id_param="subscription_id",
    time_field="modification_time",
    order={
        "id": "id",
        "contact_id": lambda r: int(r["contact_id"]),
        "subscription_plan_id": lambda r: int(r.get("subscription_plan_id") or 0),
        "modification_time": "time",
    },
    filters={
        "contact_id": Field("exact", extract=_get("contact_id")),
        "subscription_plan_id": Field("exact", extract=_get("subscription_plan_id")),
        "status": Field("exact", extract=lambda r: "Active" if r.get("active") else "Inactive"),
        "id": Field("idcmp", CMP_NE),
        "billing_amount": Field("num", CMP_NE, extract=_get("billing_amount")),
        "ids": Field("idset"),
        "subscription_plan_ids": Field("oneof", extract=_get("subscription_plan_id")),
    },
)

ENTITIES: dict[str, EntitySpec] = {
    e.name: e for e in (CONTACTS, ORDERS, TAGS, TAG_CATEGORIES, COMPANIES, PRODUCTS, SUBSCRIPTIONS)
}
# URL segment under /rest/v2 -> entity
ROUTES: dict[str, str] = {
    "contacts": "contacts",
    "orders": "orders",
    "tags": "tags",
    "tags/categories": "tag_categories",
    "companies": "companies",
    "products": "products",
    "subscriptions": "subscriptions",
}
