"""Keap REST v2 client (httpx only): auth, pacing, retries and one page iterator for every list endpoint.

Public API (kept stable for the sandbox's end-to-end tests and the pipeline)::

    from keap_pipeline.keap import KeapClient, ApiKeyAuth, OAuthAuth, EncryptedTokenStore, Pacer, RateLimits, ENDPOINTS

    with KeapClient(
        base_url="http://127.0.0.1:8765/crm/rest/v2",      # the API root, KEAP_BASE_URL
        auth=ApiKeyAuth("..."),                             # header X-Keap-API-Key
        pacer=Pacer(RateLimits.personal_key()),             # default: shared per credential hash
        timeout=30.0,                                       # every request; or pacing=False to benchmark
    ) as client:
        for page in client.iter_pages(ENDPOINTS["contacts"], fields=["id", "update_time"],
                                      since=dt, until=dt, order_by="update_time asc", page_size=1000):
            page.records            # list (dicts; a record that is not one is passed on as it is); one page at a time
        client.stats                # requests, retries, throttled, pages, records, quota_available, quota_resets_at
        client.get("/contacts/model")
        client.create_contact({...}); client.update_contact("1001", {...}, update_mask=["given_name"])
        client.delete_contact("1001")

OAuth: ``OAuthAuth(client_id, client_secret, EncryptedTokenStore(path), token_url=...)``; the
store is Fernet-encrypted with the key in KEAP_TOKEN_ENCRYPTION_KEY, the token request is a
POST of ``grant_type=refresh_token&refresh_token=...`` with the client id/secret as HTTP Basic
auth. Filters: every time window goes inside ``filter`` (``start_update_time==...;end_update_time==...``
for contacts); see ``endpoints.py`` for each entity's names. Errors: ``errors.py``, all KeapError.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keap_pipeline.keap.auth import KEAP_TOKEN_URL, ApiKeyAuth, OAuthAuth
    from keap_pipeline.keap.client import KeapClient
    from keap_pipeline.keap.endpoints import (
        CONTACT_MODEL_PATH,
        ENDPOINTS,
        EndpointSpec,
        build_list_params,
        format_time,
    )
    from keap_pipeline.keap.errors import (
        KeapArgumentError,
        KeapAuthError,
        KeapConnectionRefused,
        KeapError,
        KeapNotFound,
        KeapPagingError,
        KeapQuotaExhausted,
        KeapRateLimited,
        KeapRequestError,
        KeapResponseError,
        KeapServerError,
        KeapTransportError,
        TokenStoreError,
    )
    from keap_pipeline.keap.pacing import Pacer, RateLimits
    from keap_pipeline.keap.paging import Page
    from keap_pipeline.keap.quota import QuotaState
    from keap_pipeline.keap.retrying import RetryPolicy
    from keap_pipeline.keap.secret import Secret
    from keap_pipeline.keap.stats import ClientStats
    from keap_pipeline.keap.token_store import KEY_ENV, EncryptedTokenStore, TokenSet

# Exports resolve on first use (PEP 562), so importing a data-only submodule such as
# keap_pipeline.keap.endpoints (the entity table does) does not pull in httpx.
_EXPORTS = {
    'KEAP_TOKEN_URL': 'keap_pipeline.keap.auth',
    'ApiKeyAuth': 'keap_pipeline.keap.auth',
    'OAuthAuth': 'keap_pipeline.keap.auth',
    'KeapClient': 'keap_pipeline.keap.client',
    'CONTACT_MODEL_PATH': 'keap_pipeline.keap.endpoints',
    'ENDPOINTS': 'keap_pipeline.keap.endpoints',
    'EndpointSpec': 'keap_pipeline.keap.endpoints',
    'build_list_params': 'keap_pipeline.keap.endpoints',
    'format_time': 'keap_pipeline.keap.endpoints',
    'KeapArgumentError': 'keap_pipeline.keap.errors',
    'KeapAuthError': 'keap_pipeline.keap.errors',
    'KeapConnectionRefused': 'keap_pipeline.keap.errors',
    'KeapError': 'keap_pipeline.keap.errors',
    'KeapNotFound': 'keap_pipeline.keap.errors',
    'KeapPagingError': 'keap_pipeline.keap.errors',
    'KeapQuotaExhausted': 'keap_pipeline.keap.errors',
    'KeapRateLimited': 'keap_pipeline.keap.errors',
    'KeapRequestError': 'keap_pipeline.keap.errors',
    'KeapResponseError': 'keap_pipeline.keap.errors',
    'KeapServerError': 'keap_pipeline.keap.errors',
    'KeapTransportError': 'keap_pipeline.keap.errors',
    'TokenStoreError': 'keap_pipeline.keap.errors',
    'Pacer': 'keap_pipeline.keap.pacing',
    'RateLimits': 'keap_pipeline.keap.pacing',
    'Page': 'keap_pipeline.keap.paging',
    'QuotaState': 'keap_pipeline.keap.quota',
    'RetryPolicy': 'keap_pipeline.keap.retrying',
    'Secret': 'keap_pipeline.keap.secret',
    'ClientStats': 'keap_pipeline.keap.stats',
    'KEY_ENV': 'keap_pipeline.keap.token_store',
    'EncryptedTokenStore': 'keap_pipeline.keap.token_store',
    'TokenSet': 'keap_pipeline.keap.token_store',
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTACT_MODEL_PATH",
    "ENDPOINTS",
    "KEAP_TOKEN_URL",
    "KEY_ENV",
    "ApiKeyAuth",
    "ClientStats",
    "EncryptedTokenStore",
    "EndpointSpec",
    "KeapArgumentError",
    "KeapAuthError",
    "KeapClient",
    "KeapConnectionRefused",
    "KeapError",
    "KeapNotFound",
    "KeapPagingError",
    "KeapQuotaExhausted",
    "KeapRateLimited",
    "KeapRequestError",
    "KeapResponseError",
    "KeapServerError",
    "KeapTransportError",
    "OAuthAuth",
    "Pacer",
    "Page",
    "QuotaState",
    "RateLimits",
    "RetryPolicy",
    "Secret",
    "TokenSet",
    "TokenStoreError",
    "build_list_params",
    "format_time",
]
