"""Sandbox data: deterministic from the seed, consistent across entities, messy the way Keap data is."""

from __future__ import annotations

import re
from collections import Counter

from keap_pipeline.sandbox.model import FIELD_TYPES
from tests.sandbox.conftest import api, list_all

ALL_CONTACT_FIELDS = (
    "id,given_name,middle_name,family_name,preferred_name,email_addresses,phone_numbers,addresses,company,"
    "job_title,website,birth_date,contact_type,source_type,owner_id,score_value,time_zone,preferred_locale,"
    "tag_ids,custom_fields,create_time,update_time"
)
PATHS = ["/contacts", "/tags", "/tags/categories", "/companies", "/products", "/orders", "/subscriptions",
         "/contacts/model", "/contacts/17", "/orders/5", "/subscriptions/2", "/products/3", "/companies/4"]


def _bodies(handle) -> list[bytes]:
    with api(handle) as client:
        return [client.get(p, params={"page_size": 50} if "/" not in p[1:] else None).content for p in PATHS]


def test_same_seed_same_bytes_other_seed_other_bytes(start_sandbox) -> None:
    first = _bodies(start_sandbox(seed=42))
    again = _bodies(start_sandbox(seed=42))
    other = _bodies(start_sandbox(seed=43))
    assert first == again
    differ = {p for p, a, b in zip(PATHS, first, other, strict=True) if a != b}
    # the custom-field model and company names do not depend on the seed
    assert differ == set(PATHS) - {"/contacts/model", "/companies", "/companies/4"}


def test_records_reference_existing_records(sandbox) -> None:
    with api(sandbox) as client:
        contacts = list_all(client, "/contacts", "contacts", fields=ALL_CONTACT_FIELDS)
        tag_records = list_all(client, "/tags", "tags")
        tags = {t["id"] for t in tag_records}
        categories = {c["id"] for c in list_all(client, "/tags/categories", "tag_categories")}
        companies = {c["id"]: c["company_name"] for c in list_all(client, "/companies", "companies")}
        products = {p["id"]: p for p in list_all(client, "/products", "products")}
        orders = list_all(client, "/orders", "orders")
        subscriptions = list_all(client, "/subscriptions", "subscriptions")
        model_ids = {f["id"] for f in client.get("/contacts/model").json()["custom_fields"]}
    contact_ids = {c["id"] for c in contacts}
    assert len(contact_ids) == len(contacts) == 600
    for c in contacts:
        assert set(c.get("tag_ids", [])) <= tags
        assert {f["id"] for f in c.get("custom_fields", [])} <= model_ids
        if "company" in c:
            assert companies[c["company"]["id"]] == c["company"]["company_name"]
    for t in tag_records:
        if "category" in t:
            assert t["category"]["id"] in categories
    assert orders and subscriptions
    for o in orders:
        assert o["contact"]["id"] in contact_ids
        for item in o["order_items"]:
            assert item["product"]["id"] in products
            assert item["price_per_unit"]["currency_code"] == o["total"]["currency_code"]
        assert sum(i["price_per_unit"]["amount"] * i["quantity"] for i in o["order_items"]) == o["total"]["amount"]
        assert o["total_paid"]["amount"] + o["total_due"]["amount"] == o["total"]["amount"]
    for s in subscriptions:
        assert s["contact_id"] in contact_ids
        if "product_id" in s:
            plans = {p["id"] for p in products[s["product_id"]]["subscription_plans"]}
            assert s["subscription_plan_id"] in plans


def test_contacts_are_messy_like_real_keap(sandbox) -> None:
    with api(sandbox) as client:
        contacts = list_all(client, "/contacts", "contacts", fields=ALL_CONTACT_FIELDS)
    emails = Counter(len(c.get("email_addresses", [])) for c in contacts)
    assert emails[0] and emails[1] and emails[2] and emails[3], emails
    for c in contacts:
        # Keap requires an e-mail or a phone (or an address)
        assert c.get("email_addresses") or c.get("phone_numbers")
        assert re.fullmatch(r"[0-9]+", c["id"])
        assert [e["field"] for e in c.get("email_addresses", [])] == [f"EMAIL{i + 1}" for i in range(len(c.get("email_addresses", [])))]
    names = {c["given_name"] for c in contacts} | {c["family_name"] for c in contacts}
    assert any(not n.isascii() for n in names)
    assert {"Zoë", "Łukasz"} & names and {"山田", "Ñúñez"} & names
    phones = {p["number"] for c in contacts for p in c.get("phone_numbers", [])}
    assert len({p.split()[0] for p in phones if p.startswith("+")}) >= 5  # several country codes
    countries = {a["country_code"] for c in contacts for a in c.get("addresses", [])}
    assert len(countries) >= 6 and "USA" in countries
    with api(sandbox) as client:
        model = {f["id"]: f["field_type"] for f in client.get("/contacts/model").json()["custom_fields"]}
    seen_types = {model[f["id"]] for c in contacts for f in c.get("custom_fields", [])}
    assert seen_types == set(FIELD_TYPES)
    years = {c["update_time"][:4] for c in contacts}
    assert len(years) >= 5


def test_orders_use_several_currencies_in_their_smallest_unit(sandbox) -> None:
    with api(sandbox) as client:
        orders = list_all(client, "/orders", "orders")
    by_code = {o["total"]["currency_code"]: o["total"] for o in orders if o["total"]["amount"]}
    assert {"USD", "EUR", "GBP", "JPY", "KWD"} <= set(by_code)
    jpy, kwd, usd = by_code["JPY"], by_code["KWD"], by_code["USD"]
    assert "." not in jpy["formatted_amount"]  # no minor unit
    assert re.search(r"\.\d{3}$", kwd["formatted_amount"])  # three decimals
    assert re.search(r"\.\d{2}$", usd["formatted_amount"])
    whole, frac = usd["formatted_amount"].lstrip("$").replace(",", "").split(".")
    assert int(whole) * 100 + int(frac) == usd["amount"]
