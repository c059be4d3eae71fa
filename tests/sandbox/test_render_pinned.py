"""The served records are pinned: sha256 digests of list pages and record dicts, taken before the
renderers were made faster (commit d2e344f), must not change.

A change of the sandbox's dataset is not wanted (tests and benchmarks compare the pipeline's rows
with what the sandbox serves); a faster renderer must serve the same bytes for the same config and
seed. The digests cover 5,000 records of every entity (all of them where an entity has fewer),
listed by id and by time, in two configurations, plus the record dicts the get, filter and
mutation paths use.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from keap_pipeline.sandbox import RateLimits, SandboxConfig
from keap_pipeline.sandbox.contacts import js
from keap_pipeline.sandbox.entities import ENTITIES
from keap_pipeline.sandbox.listing import Lister
from keap_pipeline.sandbox.state import SandboxState

RECORDS = 5_000
CONFIGS = {
    # many products (orders point at 5,000 of them), few contacts repeated across orders
    "wide": {"contacts": 5_000, "orders": 5_000, "subscriptions": 5_000, "products": 5_000, "seed": 7},
    # the default proportions of a larger account (products and tags scaled from contacts)
    "default": {"contacts": 40_000, "seed": 1},
}
LISTINGS = {
    "contacts": [{}, {"order_by": "update_time desc"}],
    "orders": [{}, {"order_by": "modification_time asc"}],
    "subscriptions": [{}, {"filter": "id>0"}],
    "products": [{}],
    "tags": [{}],
    "tag_categories": [{}],
    "companies": [{}, {"fields": "company_name,notes,address,email_address,update_time,custom_fields"}],
}
PINNED = {
    "wide/contacts/page0": "2f565d3fa7e0f77eabff3f46f2c57dd3ef57cf754918872fe6e766fb454321ed",
    "wide/contacts/page1": "74c30a7cf1738f25b9f213d889528dece91e956e61b856869af1251d8af7fe26",
    "wide/contacts/records": "e2e11484e1b7890bb408e736aa8c2337ba96fafd2981cfb70edd101b50daeabe",
    "wide/orders/page0": "c7c43ce80929e57e7b1bbbf3cdd2903e88b9177959d25633371bb069edf68aa6",
    "wide/orders/page1": "c45f10c7c0958eebd1023b249af8901272ae9cd7d4aad4346ac4ad4277a614b4",
    "wide/orders/records": "4e62c4140ac1ef50ecd5480499f21bf8f9bd567a3d4a6a6ed756326713ad1de9",
    "wide/subscriptions/page0": "cb8ae7576429ed42dfbc1a49ad5c289113d504b5031db78cd9636bebf0a20390",
    "wide/subscriptions/page1": "0e0f4d2cb0d5111296c0bf817a03ca8ac5be4333448112800e447248d9d08990",
    "wide/subscriptions/records": "6d8b4b43e3e10aa0d736fcce8c651c8c97af6b580662c17a25638f7f95d773e0",
    "wide/products/page0": "bb859575c9c9a66e7b3513d743e104203894bc6d0c4dd7a20b9e4b20aa39bcb5",
    "wide/products/records": "f4a4d4653dbaa1f136b57f263aba988e7d8206bec9e611a2582ce0a5992a987d",
    "wide/tags/page0": "72df3bf5341df54a242d4eadc04ddb77640e03a84cbec6a13780f506459755c4",
    "wide/tags/records": "c83b8c01daedaa3a4f506bb32249779883d75ccd7fc7745c55c58a9298bf6f1d",
    "wide/tag_categories/page0": "17e4b16f347f360ff01df03d78b3cbd4cf6b24c8f17f3be435e94d58908b4826",
    "wide/tag_categories/records": "fc420919754d37aa0ddec16ff3d86db84f934875cf04c20bc45d740beb21c6b9",
    "wide/companies/page0": "9784c59c7ff74b4b5fcfcd82b89eda7df5fffb2a191e0ca3bc97a414d0fea329",
    "wide/companies/page1": "eb742c4182403acc20440e36f31741d91efbaf38603aeee51f80170cc8d9c64a",
    "wide/companies/records": "3724ddd44c3dd8397fe5fbdcaba69a4d1515f15d4c50c331b51048294ff16b36",
    "wide/contacts/changed": "0c3c5c19fb6b0a87fcfb221a686d441db68738bef2c9231b8a084825dd32adf5",
    "wide/orders/changed": "7f39f034b44fad8fbe0d71a922d821238acdcf9cb660e5b7ac361ea9c298c6aa",
    "wide/subscriptions/changed": "97fa9ff8a3cbfccb620a9284d8476fb8c8f2b2c184d8084d53d0c9dcd95f90ad",
    "wide/products/changed": "7d779cde5e6bc0f51e8976e7f2b6ef42e7898a69ef0ef77f9201f3294f5f3984",
    "wide/tags/changed": "9a1a7f354103e3278d15b6e20fda342be0134e5c831c7ffe3459fd5f1e4e5268",
    "wide/tag_categories/changed": "6c67e635e11d06fc2de175fee8b0973161b8844facbfce97d49e05f477d4e807",
    "wide/companies/changed": "c32bb459cd2163f1e601eb949c9839543a35d26a37256cc3cdb2a0fbefa8b1a6",
    "default/contacts/page0": "7ac05ba8fd19b45e9ecedc10c4585245d564ec14cdcf143850ef0440cd1dec48",
    "default/contacts/page1": "cc70f5caf4a464fe19ad183d4978309dc15ffbd03d68f0cde49298bda34848b2",
    "default/contacts/records": "a892cdcbc778a8072a8f5afecfeee0261be298e6488bced7493eec79d1dd7862",
    "default/orders/page0": "c3b775cb9862f52fb4d183183952ea61e89903e51960f67079b2bca766f69024",
    "default/orders/page1": "3ac211854cbbdf8fefa04daa2f5a8a3a91ad6d846ddae47fd06ac93e6e35af98",
    "default/orders/records": "5e05074d86f839c3859b514bb7b9f997b2797f1aa17ede6609eea4976d15bc37",
    "default/subscriptions/page0": "25f9fc37e605b4dc36c988a621658e0bb62ccddfd58c3c2921d546d3579b6212",
    "default/subscriptions/page1": "c24b5685367fd1776ff6eed2ce8ff833c6eb08e1142b114c040f189e172328b6",
    "default/subscriptions/records": "1586e06ffbb78c9ca77d63daf991ded99d39228d8e46d28af9348a364391310a",
    "default/products/page0": "b1948289f59d2fa02ac5423beb43a804623cab04884cda86c2ba050d24a54cc2",
    "default/products/records": "3c2506547ed0ca33507efe5b7166586edf74aba3b4f63153d808f1c9d731baf9",
    "default/tags/page0": "2ad8eeb00c9ee112cb6722dd4e5a1ae45973924fdfa99ad27cd270635e9cec8b",
    "default/tags/records": "5df3571c7043009861ba2fa97a43338797c77a9a0c82c914a7ca8c099bd3ef64",
    "default/tag_categories/page0": "b96489e44ad37ee19845a8bb38d645642d91ce2cce7a244c529221a687736ecf",
    "default/tag_categories/records": "08a12d6d640be5f2558a4e9cdb2968c597d1fdba800bd57daf2f2868d151aadc",
    "default/companies/page0": "376306bfd16d1c65f175e8ed717d1fee063fae6dd7f8eb236ae75898b72a70ca",
    "default/companies/page1": "85becf5c4f151d7d8f4079e23801574e4233907680fd7353d6b6d4a420ae1fbf",
    "default/companies/records": "e8b8b1105a2de1d6891d1f8ededac505531b1ab2faf05a6ba174a5334524b8ac",
    "default/contacts/changed": "86a030037ed3b9788aa447ae102bce6f9b39556b9a251a90830d5590f935e9cb",
    "default/orders/changed": "4f98e1aeae0687f414fd2867bc49101b8b4125a98d9012b4c6b4044cfcb7ded4",
    "default/subscriptions/changed": "845ad4ba404b6723886723715bec49530f47ef8e85dc6f8821b05d35f76ad1aa",
    "default/products/changed": "b75adcfd46516b91683ee1c58ca80bfd041ff5bf46b44abe47320d71319b9e93",
    "default/tags/changed": "afa13b1033b0105108b25cda44a770883b4e318739691b07b434e9c2930eb8eb",
    "default/tag_categories/changed": "6c67e635e11d06fc2de175fee8b0973161b8844facbfce97d49e05f477d4e807",
    "default/companies/changed": "87fbf66b360561529873cd684fd5b9f4d5043ec5f63397d4d4b6ab98a14d2b97",
}


def _state(config: str) -> SandboxState:
    return SandboxState(SandboxConfig(port=0, limits=RateLimits.off(), **CONFIGS[config]))  # type: ignore[arg-type]


def pages_digest(state: SandboxState, entity: str, params: dict[str, str]) -> str:
    """sha256 over the bodies of the first pages of a listing, up to RECORDS records."""
    spec, digest, token, seen = ENTITIES[entity], hashlib.sha256(), "", 0
    while seen < RECORDS:
        query = {**params, "page_size": "1000", **({"page_token": token} if token else {})}
        body, token = Lister(state, spec, query).page_and_token()
        digest.update(body)
        seen += len(json.loads(body)[spec.list_key])
        if not token:
            break
    return digest.hexdigest()


def records_digest(state: SandboxState, entity: str) -> str:
    """sha256 over the JSON of the record dicts of ids 1..RECORDS (the get / filter / mutation path)."""
    digest = hashlib.sha256()
    for ident in range(1, min(RECORDS, state.data.count(entity)) + 1):
        digest.update(js(state.data.record(entity, ident)).encode() + b"\n")
    return digest.hexdigest()


def changed_digest(state: SandboxState, entity: str) -> str:
    """Pages by id after 50 records spread over the ids were changed (the overlay path) at fixed times."""
    n = min(RECORDS, state.data.count(entity))
    for k, ident in enumerate(range(1, n + 1, max(1, n // 50))):
        state.update_record(entity, ident, {"pinned": ident}, time_ms=1_800_000_000_000 + k)
    return pages_digest(state, entity, {})


def config_digests(config: str) -> dict[str, str]:
    """Every pinned digest of one configuration, computed by the code under test."""
    out: dict[str, str] = {}
    state = _state(config)
    try:
        for entity, listings in LISTINGS.items():
            for n, params in enumerate(listings):
                out[f"{config}/{entity}/page{n}"] = pages_digest(state, entity, params)
            out[f"{config}/{entity}/records"] = records_digest(state, entity)
        for entity in LISTINGS:  # last: the changes stay in the state
            out[f"{config}/{entity}/changed"] = changed_digest(state, entity)
    finally:
        state.prefetcher.close()
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
def test_served_records_are_byte_identical_to_the_pinned_digests(config: str) -> None:
    got = config_digests(config)
    assert set(got) == {k for k in PINNED if k.startswith(f"{config}/")}
    wrong = [key for key, value in got.items() if value != PINNED[key]]
    assert not wrong, f"served records differ from the pinned ones in {wrong}"


if __name__ == "__main__":  # prints the digests of this tree (how PINNED was made, on d2e344f)
    for name, value in (d for c in CONFIGS for d in config_digests(c).items()):
        print(f'    "{name}": "{value}",')
