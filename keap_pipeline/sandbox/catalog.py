"""Tags, tag categories, companies and products, generated as dicts from their id."""

from __future__ import annotations

from typing import Any

from keap_pipeline.sandbox import pools
from keap_pipeline.sandbox.contacts import below, company_name, js, mix, seeded
from keap_pipeline.sandbox.timefmt import iso_ms
from keap_pipeline.sandbox.timeline import Timeline, create_time_ms

PRICES: tuple[int, ...] = (0, 99, 1999, 4900, 12_500, 99_999, 250_000)
PLAN_CYCLES: tuple[str, ...] = ("MONTHLY", "YEARLY", "WEEKLY", "DAILY")


def currency_value(amount: int, code_index: int) -> dict[str, Any]:
    """A CurrencyValue: amount in the currency's smallest unit, its code, and Keap's formatted text.

    Args:
        amount: amount in the currency's smallest unit.
        code_index: index into the sandbox's currency table.

    Returns:
        The CurrencyValue dict.
    """
    code, digits, symbol = pools.CURRENCIES[code_index % len(pools.CURRENCIES)]
    return {"amount": amount, "currency_code": code, "formatted_amount": pools.format_amount(amount, digits, symbol)}


_CURRENCY_JSON: dict[tuple[int, int], str] = {}


def currency_json(amount: int, code_index: int) -> str:
    """currency_value as compact JSON text, ``js(currency_value(amount, code_index))``.

    Orders repeat few amounts (prices times small quantities), so texts are cached, bounded.

    Args:
        amount: amount in the currency's smallest unit.
        code_index: index into the sandbox's currency table.

    Returns:
        The CurrencyValue as JSON text.
    """
    key = (amount, code_index)
    text = _CURRENCY_JSON.get(key)
    if text is None:
        text = js(currency_value(amount, code_index))
        if len(_CURRENCY_JSON) < 100_000:  # bounded: memory must not grow with requests
            _CURRENCY_JSON[key] = text
    return text


def tag_category(ident: int, timeline: Timeline) -> dict[str, Any]:
    """Tag category id 1..n.

    Args:
        ident: record id (ids are 1-based).
        timeline: the entity's update-time permutation.

    Returns:
        The tag category dict.
    """
    name = pools.TAG_CATEGORIES[(ident - 1) % len(pools.TAG_CATEGORIES)]
    return {"id": str(ident), "name": name, "create_time": iso_ms(create_time_ms(ident, timeline.n)),
            "update_time": iso_ms(timeline.time_ms(ident))}


def tag(ident: int, n_categories: int, timeline: Timeline, salt: int) -> dict[str, Any]:
    """Tag id 1..n; about one in five has no category.

    Args:
        ident: record id (ids are 1-based).
        n_categories: number of tag categories.
        timeline: the entity's update-time permutation.
        salt: the entity's hash salt (from the seed).

    Returns:
        The tag dict.
    """
    h, _ = mix(ident, salt)
    record: dict[str, Any] = {"id": str(ident), "name": f"{pools.TAG_WORDS[h % len(pools.TAG_WORDS)]} {ident}"}
    if n_categories and h % 5:
        record["category"] = {"id": str((h >> 8) % n_categories + 1)}
    record["create_time"] = iso_ms(create_time_ms(ident, timeline.n))
    record["update_time"] = iso_ms(timeline.time_ms(ident))
    return record


def company(ident: int, timeline: Timeline, salt: int) -> dict[str, Any]:
    """Company id 1..n with every property (the list default is cut down by the caller).

    Args:
        ident: record id (ids are 1-based).
        timeline: the entity's update-time permutation.
        salt: the entity's hash salt (from the seed).

    Returns:
        The company dict with every property.
    """
    h, h2 = mix(ident, salt)
    line1, locality, region, postal, country = pools.ADDRESSES[h % len(pools.ADDRESSES)]
    number, _ = pools.PHONES[(h >> 8) % len(pools.PHONES)]
    record: dict[str, Any] = {
        "id": str(ident),
        "company_name": company_name(ident),
        "address": {"line1": line1, "locality": locality, "region_code": region, "postal_code": postal,
                    "country_code": country, "field": "BILLING"},
        "email_address": {"email": f"info{ident}@{pools.EMAIL_DOMAINS[(h >> 16) % len(pools.EMAIL_DOMAINS)]}", "field": "EMAIL1"},
        "phone_number": {"number": number, "field": "PHONE1"},
        "website": f"https://company{ident}.example.com",
        "notes": "" if h2 % 3 else "Key account — \"handle with care\"",
        "custom_fields": [],
        "create_time": iso_ms(create_time_ms(ident, timeline.n)),
        "update_time": iso_ms(timeline.time_ms(ident)),
    }
    if h2 % 7 == 0:
        del record["email_address"]  # companies without an e-mail exist too
    return record


def product_plans(ident: int) -> list[str]:
    """Subscription plan ids of a product: every third product sells a subscription, with 1-2 plans.

    Args:
        ident: record id (ids are 1-based).

    Returns:
        The plan ids (strings).
    """
    if ident % 3:
        return []
    return [str(ident * 10 + k) for k in range(1, 2 + (ident % 2))]


def product(ident: int, timeline: Timeline, salt: int) -> dict[str, Any]:
    """Product id 1..n (price in the product's currency, some with subscription plans).

    Args:
        ident: record id (ids are 1-based).
        timeline: the entity's update-time permutation.
        salt: the entity's hash salt (from the seed).

    Returns:
        The product dict.
    """
    h, h2 = mix(ident, salt)
    rng = seeded(h)  # the draws of random.Random(h): choice() of a price, then uniform(0, 20)
    price = PRICES[below(rng.getrandbits, len(PRICES))]
    weight = round(20 * rng.random(), 3)  # uniform(0, 20) is 0 + (20 - 0) * random()
    cur = (h >> 8) % len(pools.CURRENCIES)
    plans = [
        {
            "id": pid,
            "active": bool((h2 >> k) % 4),
            "prorate": False,
            "billing_cycle": PLAN_CYCLES[(h2 + k) % len(PLAN_CYCLES)],
            "billing_frequency": 1 + k,
            "number_of_cycles": 0 if k == 0 else 12,
            "plan_price": currency_value(price or 1000, cur),
            "order_index": k,
        }
        for k, pid in enumerate(product_plans(ident))
    ]
    return {
        "id": str(ident),
        "name": f"{pools.PRODUCT_WORDS[h % len(pools.PRODUCT_WORDS)]} #{ident}",
        "sku": f"SKU-{ident:06d}" if h2 % 9 else "",
        "price": currency_value(price, cur),
        "active": bool(h2 % 11),
        "shippable": bool((h >> 16) % 2),
        "taxable": bool((h >> 17) % 2),
        "weight": weight,
        "short_description": "Beschreibung: groß & stark" if h % 4 == 0 else "",
        "subscription_only": bool(plans) and h % 2 == 0,
        "subscription_plans": plans,
        "create_time": iso_ms(create_time_ms(ident, timeline.n)),
        "update_time": iso_ms(timeline.time_ms(ident)),
    }
