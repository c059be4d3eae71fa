"""Orders and subscriptions, generated as dicts from their id, pointing at existing contacts and products."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from keap_pipeline.sandbox.catalog import currency_json
from keap_pipeline.sandbox.contacts import below, js, mix, seeded
from keap_pipeline.sandbox.timefmt import iso_date, iso_ms
from keap_pipeline.sandbox.timeline import Timeline, create_time_ms

ORDER_STATUSES: tuple[str, ...] = ("PAID", "PAID", "PAID", "SENT", "DRAFT", "VIEWED")
QUANTITIES: tuple[int, ...] = (1, 1, 2, 3, 10)
SOURCE_TYPES: tuple[str, ...] = ("API", "CHECKOUT_FORM", "INVOICE", "MANUAL_PAYMENT")
SUB_CYCLES: dict[str, str] = {"MONTHLY": "MONTH", "YEARLY": "YEAR", "WEEKLY": "WEEK", "DAILY": "DAY"}


ContactFields = tuple[str, str, str | None, str | None]


class OrderRenderer:
    """Renders order ids 1..n of one seed straight to JSON text (no dicts, no json.dumps).

    An order's contact and products are existing ids; its totals add up in the smallest unit. The
    text is what ``js()`` of the OrderV2 dict would be, key for key; the dict is parsed from it.
    """

    def __init__(
        self,
        timeline: Timeline,
        salt: int,
        n_contacts: int,
        n_products: int,
        contact_of: Callable[[int], ContactFields],
        product_of: Callable[[int], dict[str, Any]],
    ) -> None:
        """Bind the order generator to its dataset.

        Args:
            timeline: the entity's update-time permutation.
            salt: the entity's hash salt (from the seed).
            n_contacts: number of base contacts.
            n_products: number of products.
            contact_of: contact id -> what an order copies (ContactFactory.order_fields).
            product_of: product id -> product dict.
        """
        self.timeline, self.salt, self.n_contacts, self.n_products = timeline, salt, n_contacts, n_products
        self.contact_of = contact_of
        self._product_of = product_of
        self.line_product = lru_cache(maxsize=16_384)(self._line_product)  # a few MB at most

    def _line_product(self, pid: int) -> tuple[int, str, str]:
        """(unit price, name as JSON, the line item's product object as JSON) of product pid."""
        prod = self._product_of(pid)
        product = {"id": prod["id"], "name": prod["name"], "sku": prod["sku"],
                   "shippable": prod["shippable"], "taxable": prod["taxable"]}
        return prod["price"]["amount"] or 500, js(prod["name"]), js(product)

    def render(self, ident: int) -> str:
        """Order `ident` as JSON text (the OrderV2 object).

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The order as a JSON object text.
        """
        h, h2 = mix(ident, self.salt)
        bits = seeded(h).getrandbits  # randrange(64), then randrange(n_products) and choice() per line
        n_products, lines = self.n_products, 1 + h % 3
        cur = below(bits, 64)
        draws = [(below(bits, n_products) + 1, QUANTITIES[below(bits, 5)]) for _ in range(lines)]
        contact_id = h2 % self.n_contacts + 1
        given, family, email, address = self.contact_of(contact_id)
        items = []
        total = 0
        for k, (pid, qty) in enumerate(draws):
            unit, name, product = self.line_product(pid)
            total += unit * qty
            items.append(
                f'{{"id":"{ident * 10 + k}","name":{name},"quantity":{qty},"item_type":"PRODUCT",'
                f'"price_per_unit":{currency_json(unit, cur)},"product":{product}}}'
            )
        status = ORDER_STATUSES[(h >> 20) % len(ORDER_STATUSES)]
        paid = total if status == "PAID" else (total // 2 if status == "VIEWED" else 0)
        created = create_time_ms(ident, self.timeline.n)
        created_text = iso_ms(created)
        names = f'"given_name":{given},"family_name":{family}'
        contact = f'"id":"{contact_id}",{names}' if email is None else f'"id":"{contact_id}",{names},"email":{email}'
        shipping = (
            f',"shipping_information":{{"id":"{ident}","address":{address},{names}}}'
            if address is not None and h % 2 else ""
        )
        return (
            f'{{"id":"{ident}","title":"Order {ident}","status":"{status}",'
            f'"total":{currency_json(total, cur)},"total_paid":{currency_json(paid, cur)},'
            f'"total_due":{currency_json(total - paid, cur)},'
            f'"contact":{{{contact}}},'
            f'"order_type":"{"ONLINE" if h % 4 else "OFFLINE"}","source_type":"{SOURCE_TYPES[(h >> 24) % 4]}",'
            f'"creation_time":"{created_text}","order_time":"{created_text}",'
            f'"modification_time":"{iso_ms(max(created, self.timeline.time_ms(ident)))}",'
            f'"order_items":[{",".join(items)}],"invoice_number":"{100_000 + ident}",'
            f'"allow_payment":{"false" if status == "PAID" else "true"},"allow_paypal":false{shipping}}}'
        )

    def record(self, ident: int) -> dict[str, Any]:
        """Order `ident` as a dict (a fresh one, parsed from its text).

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The OrderV2 dict.
        """
        result: dict[str, Any] = json.loads(self.render(ident))
        return result


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

