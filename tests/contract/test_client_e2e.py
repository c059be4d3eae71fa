"""End to end over a real socket: the real Keap client pages the strict sandbox, every record exactly once."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from keap_pipeline.keap import (
    ENDPOINTS,
    ApiKeyAuth,
    EncryptedTokenStore,
    KeapClient,
    OAuthAuth,
    Pacer,
    RetryPolicy,
    Secret,
    TokenSet,
)
from keap_pipeline.keap import RateLimits as ClientLimits
from keap_pipeline.sandbox import Faults, RateLimits
from tests.contract.conftest import API_KEY

FIELDS = ["id", "given_name", "family_name", "email_addresses", "phone_numbers", "addresses", "company",
          "tag_ids", "custom_fields", "create_time", "update_time"]
SINCE = datetime(2018, 1, 1, tzinfo=UTC)
UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


def _client(handle, **kwargs) -> KeapClient:
    kwargs.setdefault("pacing", False)
    return KeapClient(handle.base_url, auth=ApiKeyAuth(API_KEY), timeout=10.0, **kwargs)


def _ids(client: KeapClient, entity: str, **kwargs) -> list[str]:
    return [r["id"] for page in client.iter_pages(entity, **kwargs) for r in page.records]


@pytest.mark.slow
def test_client_pages_20k_contacts_exactly_once(strict_sandbox) -> None:
    handle = strict_sandbox(contacts=20_000)
    with _client(handle) as client:
        ids = _ids(client, "contacts", fields=FIELDS, since=SINCE, until=UNTIL, order_by="update_time asc")
    assert len(ids) == len(set(ids)) == 20_000
    assert handle.state.violation_count == 0, handle.state.violations[:5]


@pytest.mark.parametrize("entity", [name for name, spec in ENDPOINTS.items() if spec.paged])
def test_client_pages_every_entity_exactly_once(strict_sandbox, entity: str) -> None:
    handle = strict_sandbox(contacts=2000)
    spec = ENDPOINTS[entity]
    kwargs: dict[str, object] = {"page_size": 97}
    if spec.has_time_window:
        kwargs.update(since=SINCE, until=UNTIL)
    if spec.supports_fields:
        kwargs["fields"] = ["id", "update_time", "create_time"]
    with _client(handle) as client:
        ids = _ids(client, entity, **kwargs)
    assert len(ids) == len(set(ids)) == handle.state.data.count(entity)
    assert handle.state.violation_count == 0, handle.state.violations[:5]


def test_exactly_once_with_faults_on(strict_sandbox) -> None:
    faults = Faults(latency_ms=2, error_share=0.15, drop_share=0.08, slow_every=7, slow_ms=150)
    handle = strict_sandbox(contacts=5000, faults=faults)
    retry = RetryPolicy(max_retries=10, max_wait=60, base_delay=0.01, max_delay=0.05, rng=random.Random(1))
    with _client(handle, retry=retry) as client:
        ids = _ids(client, "contacts", fields=["id", "update_time"], since=SINCE, until=UNTIL,
                   order_by="update_time asc", page_size=250)
        stats = client.stats
    assert len(ids) == len(set(ids)) == 5000
    assert stats.server_errors > 0 and stats.transport_errors > 0 and stats.retries > 0
    assert handle.state.violation_count == 0, handle.state.violations[:5]


def test_client_paced_at_the_sandbox_limits_is_never_throttled(strict_sandbox) -> None:
    limits = RateLimits(per_second=4, per_minute=60, per_day=1000)
    handle = strict_sandbox(contacts=1200, limits=limits)
    pacer = Pacer(ClientLimits(per_second=4, per_minute=60, per_day=1000))
    with _client(handle, pacing=True, pacer=pacer) as client:
        ids = _ids(client, "contacts", fields=["id"], page_size=100)
        stats = client.stats
    assert len(ids) == len(set(ids)) == 1200
    assert stats.throttled == 0 and stats.quota_available is not None


def test_client_changes_contacts_and_a_later_window_sees_them(strict_sandbox) -> None:
    handle = strict_sandbox(contacts=500)
    with _client(handle) as client:
        started = datetime.now(UTC)
        created = client.create_contact({"given_name": "Zoë", "email_addresses": [{"email": "zoe@example.com", "field": "EMAIL1"}]})
        client.update_contact("42", {"family_name": "Ørsted", "given_name": "kept"}, update_mask=["family_name"])
        client.delete_contact("43")
        changed = _ids(client, "contacts", fields=["id", "family_name"], since=started, until=datetime(2100, 1, 1, tzinfo=UTC))
        everything = _ids(client, "contacts", fields=["id"])
        after = client.get("/contacts/42")
    assert sorted(changed) == sorted([created["id"], "42"])
    assert "43" not in everything and created["id"] in everything and len(everything) == 500
    assert after["family_name"] == "Ørsted" and after["given_name"] != "kept"
    assert handle.state.violation_count == 0, handle.state.violations[:5]


def test_oauth_refresh_rotates_against_the_sandbox(strict_sandbox, tmp_path) -> None:
    handle = strict_sandbox(contacts=50)
    store = EncryptedTokenStore(tmp_path / "tokens", key=Fernet.generate_key().decode())
    store.save(TokenSet(Secret("expired-access"), Secret("sandbox-refresh-0")))
    auth = OAuthAuth("sandbox-client", "sandbox-secret", store, token_url=handle.token_url)
    with KeapClient(handle.base_url, auth=auth, pacing=False, timeout=10.0) as client:
        first = _ids(client, "tags")  # 401 with the stale token -> refresh -> retry
        rotated = store.load()
        handle.state.expire_access_tokens()
        second = _ids(client, "tags")
    assert first == second and len(first) == handle.state.data.count("tags")
    assert rotated is not None and rotated.refresh_token.reveal() != "sandbox-refresh-0"
    assert store.load().refresh_token.reveal() == handle.state.refresh_token
    assert auth.refreshes == 2
