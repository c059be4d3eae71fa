"""No credential ever shows up in a log line, an exception message, a repr or the stats."""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from keap_pipeline.keap import (
    ApiKeyAuth,
    EncryptedTokenStore,
    KeapAuthError,
    KeapError,
    OAuthAuth,
    RetryPolicy,
    Secret,
    TokenSet,
)
from keap_pipeline.keap.token_store import KEY_ENV
from tests.keap.fakes import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_URL,
    FakeClock,
    OAuthKeap,
    Scripted,
    error_body,
    keap_json,
    make_client,
)

OAUTH_SECRETS = [CLIENT_ID, CLIENT_SECRET, "access-0-SECRET", "refresh-0-SECRET", "access-1-SECRET", "refresh-1-SECRET"]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked into: {text[:200]!r}"


def test_secret_is_masked_everywhere() -> None:
    secret = Secret("hunter2-SECRET")
    assert repr(secret) == "Secret('***')" and str(secret) == "***"
    assert f"{secret}" == "***" and f"{secret!r}" == "Secret('***')" and "%s" % secret == "***"  # noqa: UP031 - logging formats with %
    assert "hunter2" not in repr([secret, {"k": secret}])
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == "hunter2-SECRET"
    assert "hunter2" not in secret.fingerprint("x")


def test_api_key_never_leaks_through_errors_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    # a Keap error message that echoes the key must be scrubbed too
    handler = Scripted([
        keap_json(503, error_body(503, "down")),
        httpx.ReadTimeout("timed out"),
        keap_json(429, error_body(429, "Quota Exceeded"), {"Retry-After": "1"}),
        keap_json(200, {"contacts": [{"id": "1", "email_addresses": [{"email": "ann@example.com"}]}],
                        "next_page_token": ""}),
        keap_json(401, error_body(401, f"Invalid API key {API_KEY}")),
    ])
    auth = ApiKeyAuth(API_KEY)
    with make_client(handler, clock, auth=auth, retry=RetryPolicy(rng=random.Random(2))) as client:
        pages = list(client.iter_pages("contacts"))
        assert pages[0].records
        with pytest.raises(KeapError) as info:
            client.get("/contacts/1")
        texts = [caplog.text, str(info.value), repr(info.value), str(info.value.keap_message),
                 repr(client), repr(auth), repr(client.stats), str(client.stats.as_metadata()),
                 repr(pages), repr(client.pacer.quota)]
    assert "***" in str(info.value)  # the echoed key was replaced, not just absent
    assert_clean("\n".join(texts), [API_KEY])
    assert "ann@example.com" not in caplog.text  # no records in the logs either
    assert handler.requests[0].headers["x-keap-api-key"] == API_KEY  # but the key was really sent


def test_oauth_tokens_never_leak(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, key)
    clock = FakeClock()
    store = EncryptedTokenStore(tmp_path / "tokens")
    store.save(TokenSet(Secret("access-0-SECRET"), Secret("refresh-0-SECRET")))
    keap = OAuthKeap()
    keap.revoke_all_access()
    auth = OAuthAuth(CLIENT_ID, CLIENT_SECRET, store, token_url=TOKEN_URL, now=clock.now)
    with make_client(keap, clock, auth=auth) as client:
        client.get("/contacts/1")  # 401 -> refresh -> retry
        keap.revoke_all_access()
        keap.valid_refresh = "nothing-works"
        with pytest.raises(KeapError) as info:  # 401 -> refresh rejected
            client.get("/contacts/1")
        texts = [caplog.text, str(info.value), repr(info.value), repr(client), repr(auth), repr(store),
                 repr(store.load()), str(client.stats.as_metadata())]
    assert len(keap.token_calls) == 2
    assert_clean("\n".join(texts), [*OAUTH_SECRETS, key])
    assert_clean((tmp_path / "tokens").read_text(errors="replace"), OAUTH_SECRETS)


def test_customer_values_in_a_query_never_reach_the_http_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # as with --verbose (the CLI otherwise keeps it at WARNING)
    handler = Scripted([keap_json(200, {"contacts": [], "next_page_token": ""})])
    with make_client(handler, FakeClock()) as client:
        # the pusher's recovery: a listing filtered by the row's email
        list(client.iter_pages("contacts", filters=("email==ann@example.com",)))
    assert handler.requests[0].url.params["filter"] == "email==ann@example.com"  # sent as asked
    assert "HTTP Request: GET" in caplog.text and "/contacts?<redacted>" in caplog.text  # logged, without it
    assert "ann@example.com" not in caplog.text and "ann%40example.com" not in caplog.text


@pytest.mark.parametrize("key", ["KeapAK-abc\n", "KeapAK-abc ", " KeapAK-abc", "Keap\tAK", "KeapAK-ключ", "KeapAK-\x00x"])
def test_a_key_with_a_character_no_key_has_is_refused_without_showing_it(key: str) -> None:
    # a pasted newline went out as a header (or failed in the HTTP library), a trailing space was a 401,
    # a non-ASCII letter an encoding traceback at the first request
    with pytest.raises(KeapAuthError, match="printable ASCII: check KEAP_API_KEY") as refused:
        ApiKeyAuth(key)
    assert "KeapAK" not in str(refused.value) and "abc" not in str(refused.value)


def test_a_printable_key_is_taken() -> None:
    assert ApiKeyAuth("KeapAK-0123456789abcdef_ABC.~!").headers(None) == {"X-Keap-API-Key": "KeapAK-0123456789abcdef_ABC.~!"}  # type: ignore[arg-type]
