"""Orders and subscriptions, generated as dicts from their id, pointing at existing contacts and products."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from keap_pipeline.sandbox.catalog import currency_value
from keap_pipeline.sandbox.contacts import mix
from keap_pipeline.sandbox.timefmt import iso_date, iso_ms
from keap_pipeline.sandbox.timeline import Timeline, create_time_ms

ORDER_STATUSES: tuple[str, ...] = ("PAID", "PAID", "PAID", "SENT", "DRAFT", "VIEWED")
SUB_CYCLES: dict[str, str] = {"MONTHLY": "MONTH", "YEARLY": "YEAR", "WEEKLY": "WEEK", "DAILY": "DAY"}


def order(
    ident: int,
    timeline: Timeline,
    salt: int,
    n_contacts: int,
    n_products: int,
    contact_of: Callable[[int], dict[str, Any]],
    product_of: Callable[[int], dict[str, Any]],
) -> dict[str, Any]:
    """Order id 1..n: contact and products are existing ids, totals add up in the smallest unit.

    Args:
        ident: record id (ids are 1-based).
        timeline: the entity's update-time permutation.
        salt: the entity's hash salt (from the seed).
        n_contacts: number of base contacts.
        n_products: number of products.
        contact_of: contact id -> contact dict.
        product_of: product id -> product dict.

    Returns:
        The OrderV2 dict.
    """
    h, h2 = mix(ident, salt)
    rng = random.Random(h)
    contact_id = h2 % n_contacts + 1
    contact = contact_of(contact_id)
    emails = contact.get("email_addresses") or []
    cur = rng.randrange(64)
    items = []
    total = 0
    for k in range(1 + h % 3):
        pid = rng.randrange(n_products) + 1
        prod = product_of(pid)
        qty = rng.choice((1, 1, 2, 3, 10))
        unit = prod["price"]["amount"] or 500
        total += unit * qty
        items.append({
            "id": str(ident * 10 + k),
            "name": prod["name"],
            "quantity": qty,
            "item_type": "PRODUCT",
            "price_per_unit": currency_value(unit, cur),
            "product": {"id": prod["id"], "name": prod["name"], "sku": prod["sku"],
                        "shippable": prod["shippable"], "taxable": prod["taxable"]},
        })
    status = ORDER_STATUSES[(h >> 20) % len(ORDER_STATUSES)]
    paid = total if status == "PAID" else (total // 2 if status == "VIEWED" else 0)
    created = create_time_ms(ident, timeline.n)
    record: dict[str, Any] = {
        "id": str(ident),
        "title": f"Order {ident}",
        "status": status,
        "total": currency_value(total, cur),
        "total_paid": currency_value(paid, cur),
        "total_due": currency_value(total - paid, cur),
        "contact": {"id": str(contact_id), "given_name": contact.get("given_name", ""),
                    "family_name": contact.get("family_name", "")},
        "order_type": "ONLINE" if h % 4 else "OFFLINE",
        "source_type": ("API", "CHECKOUT_FORM", "INVOICE", "MANUAL_PAYMENT")[(h >> 24) % 4],
        "creation_time": iso_ms(created),
        "order_time": iso_ms(created),
        "modification_time": iso_ms(max(created, timeline.time_ms(ident))),
        "order_items": items,
        "invoice_number": str(100_000 + ident),
        "allow_payment": status != "PAID",
        "allow_paypal": False,
    }
    if emails:
        record["contact"]["email"] = emails[0]["email"]
    if "addresses" in contact and h % 2:
        record["shipping_information"] = {"id": str(ident), "address": contact["addresses"][0],
                                          "given_name": contact.get("given_name", ""),
                                          "family_name": contact.get("family_name", "")}
    return record


def subscription(
    ident: int, timeline: Timeline, salt: int, n_contacts: int, n_products: int, product_of: Callable[[int], dict[str, Any]]
) -> dict[str, Any]:
    """Subscription id 1..n: an existing contact on an existing product's existing plan.

    Args:
        ident: record id (ids are 1-based).
        timeline: the entity's update-time permutation.
        salt: the entity's hash salt (from the seed).
        n_contacts: number of base contacts.
        n_products: number of products.
        product_of: product id -> product dict.

    Returns:
        The Subscription dict.
    """
    h, h2 = mix(ident, salt)
    plan_products = n_products // 3  # products 3, 6, 9, ... sell plans
    pid = 3 * (h % plan_products + 1) if plan_products else 0
    prod = product_of(pid) if pid else None
    plan = prod["subscription_plans"][h2 % len(prod["subscription_plans"])] if prod else None
    start = create_time_ms(ident, timeline.n)
    active = h % 4 != 0
    record: dict[str, Any] = {
        "id": str(ident),
        "quantity": 1 + (h >> 8) % 3,
        "active": active,
        "contact_id": str(h2 % n_contacts + 1),
        "billing_amount": round((plan["plan_price"]["amount"] if plan else 1000) / 100, 2),
        "auto_charge": bool((h >> 12) % 2),
        "billing_frequency": plan["billing_frequency"] if plan else 1,
        "billing_cycle": SUB_CYCLES[plan["billing_cycle"]] if plan else "MONTH",
        "start_date": iso_date(start),
        "next_bill_date": iso_date(start + 30 * 86_400_000),
        "modification_time": iso_ms(max(start, timeline.time_ms(ident))),
        "allow_tax": False,
    }
    if prod and plan:
        record["product_id"] = prod["id"]
        record["subscription_plan_id"] = plan["id"]
    if not active:
        record["end_date"] = iso_date(start + 400 * 86_400_000)
        record["reason_stopped"] = "Cancelled by customer"
    return record

