"""OAuth2 with rotating refresh tokens: refresh once, persist before use, lock, encrypt at rest."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography.fernet import Fernet

from keap_pipeline.keap import (
    EncryptedTokenStore,
    KeapAuthError,
    OAuthAuth,
    Secret,
    TokenSet,
    TokenStoreError,
)
from keap_pipeline.keap.token_store import KEY_ENV
from tests.keap.fakes import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_URL,
    FakeClock,
    OAuthKeap,
    keap_json,
    make_client,
)


class SimulatedCrash(BaseException):
    """Stands for the process dying (BaseException, so no `except Exception` swallows it)."""


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, value)
    return value


def seed_store(path: Path, clock: FakeClock, *, expires_in: float = 86400) -> EncryptedTokenStore:
    store = EncryptedTokenStore(path)
    store.save(TokenSet(Secret("access-0-SECRET"), Secret("refresh-0-SECRET"), clock.now() + timedelta(seconds=expires_in)))
    return store


def oauth(store: EncryptedTokenStore, clock: FakeClock) -> OAuthAuth:
    return OAuthAuth(CLIENT_ID, CLIENT_SECRET, store, token_url=TOKEN_URL, now=clock.now)


def bearer(request) -> str:  # type: ignore[no-untyped-def]
    return request.headers["authorization"].removeprefix("Bearer ")


def test_a_401_refreshes_once_and_retries_the_same_page(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    store = seed_store(tmp_path / "tokens", clock)
    keap = OAuthKeap()
    # page 1 with the first token; then Keap expires it, and page 2 gets a 401
    first_page = {"contacts": [{"id": "1"}], "next_page_token": "p2"}

    def handler(request):  # type: ignore[no-untyped-def]
        if str(request.url) != TOKEN_URL and "page_token" not in request.url.params:
            keap.api_calls.append(request)
            keap.revoke_all_access()  # the token dies right after page 1
            return keap_json(200, first_page)
        return keap(request)

    auth = oauth(store, clock)
    with make_client(handler, clock, auth=auth) as client:
        pages = list(client.iter_pages("contacts"))
        assert client.stats.refreshes == 1
    assert [p.records for p in pages] == [[{"id": "1"}], [{"id": "1"}]]
    calls = [(r.url.params.get("page_token"), bearer(r)) for r in keap.api_calls]
    assert calls == [(None, "access-0-SECRET"), ("p2", "access-0-SECRET"), ("p2", "access-1-SECRET")]
    assert len(keap.token_calls) == 1
    stored = store.load()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == (Secret("access-1-SECRET"), Secret("refresh-1-SECRET"))
    assert stored.expires_at == clock.now() + timedelta(seconds=86400)


def test_the_token_request_is_the_refresh_grant_with_basic_client_auth(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    keap = OAuthKeap()
    keap.revoke_all_access()
    with make_client(keap, clock, auth=oauth(seed_store(tmp_path / "t", clock), clock)) as client:
        client.get("/contacts/1")
    (request,) = keap.token_calls
    assert request.method == "POST"
    assert parse_qs(request.content.decode()) == {"grant_type": ["refresh_token"], "refresh_token": ["refresh-0-SECRET"]}
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"


def test_a_second_401_after_the_refresh_is_a_clear_error(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    keap = OAuthKeap()
    keap.revoke_all_access()
    keap.on_api = lambda request: keap.revoke_all_access()  # Keap rejects even the fresh token
    with make_client(keap, clock, auth=oauth(seed_store(tmp_path / "t", clock), clock)) as client:
        with pytest.raises(KeapAuthError, match="still unauthorised after refreshing") as info:
            client.get("/contacts/1")
    assert info.value.status == 401
    assert len(keap.token_calls) == 1 and len(keap.api_calls) == 2


def test_a_known_expiry_refreshes_before_sending(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    store = seed_store(tmp_path / "t", clock, expires_in=30)  # inside the 300 s margin
    keap = OAuthKeap()
    with make_client(keap, clock, auth=oauth(store, clock)) as client:
        client.get("/contacts/1")
    assert len(keap.token_calls) == 1
    assert [bearer(r) for r in keap.api_calls] == ["access-1-SECRET"]  # never sent the old one


def test_a_rejected_refresh_says_to_reauthorise(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    keap = OAuthKeap(refresh="some-other-refresh-token")
    keap.revoke_all_access()
    with make_client(keap, clock, auth=oauth(seed_store(tmp_path / "t", clock), clock)) as client:
        with pytest.raises(KeapAuthError, match="re-authorise") as info:
            client.get("/contacts/1")
    assert "invalid_grant" in str(info.value)
    assert "refresh-0-SECRET" not in str(info.value)


def test_a_crash_between_refresh_and_use_keeps_the_new_tokens(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    path = tmp_path / "tokens"
    keap = OAuthKeap()
    keap.revoke_all_access()

    def crash_on_first_use_of_a_new_token(request):  # type: ignore[no-untyped-def]
        if bearer(request) != "access-0-SECRET":
            raise SimulatedCrash()

    keap.on_api = crash_on_first_use_of_a_new_token
    with make_client(keap, clock, auth=oauth(seed_store(path, clock), clock)) as client:
        with pytest.raises(SimulatedCrash):
            client.get("/contacts/1")
    assert len(keap.token_calls) == 1
    # "restart": a new process reads the store; the old refresh token is dead at Keap, the new works
    keap.on_api = None
    assert keap.valid_refresh == "refresh-1-SECRET"
    stored = EncryptedTokenStore(path).load()
    assert stored is not None and stored.refresh_token == Secret("refresh-1-SECRET")
    with make_client(keap, clock, auth=oauth(EncryptedTokenStore(path), clock)) as client:
        assert client.get("/contacts/1") == {"contacts": [{"id": "1"}], "next_page_token": ""}
    assert len(keap.token_calls) == 1  # no second refresh was needed


def test_a_crash_while_saving_leaves_the_previous_file_whole(
    tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    path = tmp_path / "tokens"
    store = seed_store(path, clock)
    before = path.read_bytes()

    def dying_replace(src: str, dst: str) -> None:
        raise SimulatedCrash()

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(SimulatedCrash):
        store.save(TokenSet(Secret("a2"), Secret("r2")))
    monkeypatch.undo()
    assert path.read_bytes() == before  # never a torn or half-written token file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens"]  # the temp file is gone
    monkeypatch.setenv(KEY_ENV, key)
    loaded = EncryptedTokenStore(path).load()
    assert loaded is not None and loaded.refresh_token == Secret("refresh-0-SECRET")


def test_two_clients_refreshing_at_once_rotate_only_once(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    path = tmp_path / "tokens"
    seed_store(path, clock)
    keap = OAuthKeap(token_delay=0.2)
    auths = [oauth(EncryptedTokenStore(path), clock) for _ in range(2)]
    for auth in auths:
        auth.store.load()
        auth._current()  # both hold access-0 in memory, as two running processes would
    keap.revoke_all_access()
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run(auth: OAuthAuth) -> None:
        with make_client(keap, clock, auth=auth, pacing=False) as client:
            barrier.wait()
            try:
                results.append(client.get("/contacts/1"))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in auths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, dict) for r in results), results
    assert len(keap.token_calls) == 1
    assert sum(a.refreshes for a in auths) == 1


PROCESS_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, json, httpx
    from pathlib import Path
    from keap_pipeline.keap import KeapClient, OAuthAuth, EncryptedTokenStore
    store_path, calls_path, ready_path, go_path = map(Path, sys.argv[1:5])

    def handler(request):
        if str(request.url) == "http://127.0.0.1:8765/token":
            fd = os.open(calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, b"call\\n"); os.close(fd)
            time.sleep(0.3)
            return httpx.Response(200, json={"access_token": f"access-new-{os.getpid()}",
                                             "refresh_token": f"refresh-new-{os.getpid()}", "expires_in": 86400})
        if request.headers["authorization"] == "Bearer access-0-SECRET":
            return httpx.Response(401, json={"code": 401, "message": "Invalid Access Token"})
        return httpx.Response(200, json={"id": "1"})

    auth = OAuthAuth("cid", "csecret", EncryptedTokenStore(store_path), token_url="http://127.0.0.1:8765/token")
    with KeapClient("http://127.0.0.1:8765/crm/rest/v2", auth, pacing=False, transport=httpx.MockTransport(handler)) as client:
        auth._current()
        ready_path.touch()
        deadline = time.time() + 20
        while not go_path.exists():
            assert time.time() < deadline
            time.sleep(0.005)
        print(json.dumps({"body": client.get("/contacts/1"), "refreshes": auth.refreshes}))
    """
)


def test_two_processes_refreshing_at_once_rotate_only_once(tmp_path: Path, key: str) -> None:
    clock = FakeClock()
    store_path = tmp_path / "tokens"
    seed_store(store_path, clock)
    script = tmp_path / "refresh.py"
    script.write_text(PROCESS_SCRIPT)
    calls = tmp_path / "calls"
    go = tmp_path / "go"
    procs = []
    readies = []
    for n in range(2):
        ready = tmp_path / f"ready{n}"
        readies.append(ready)
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(store_path), str(calls), str(ready), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        ))
    deadline = time.time() + 30
    while not all(r.exists() for r in readies):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert calls.read_text().count("call") == 1
    refreshes = sorted(json.loads(out)["refreshes"] for out, _ in outputs)
    assert refreshes == [0, 1]
    stored = EncryptedTokenStore(store_path).load()
    assert stored is not None and stored.access_token.reveal().startswith("access-new-")


def test_the_token_file_is_encrypted(tmp_path: Path, key: str) -> None:
    path = tmp_path / "tokens"
    store = EncryptedTokenStore(path)
    store.save(TokenSet(Secret("plain-access-token-XYZ"), Secret("plain-refresh-token-XYZ")))
    blob = path.read_bytes()
    for needle in (b"plain-access-token-XYZ", b"plain-refresh-token-XYZ", b"XYZ", key.encode()):
        assert needle not in blob
    assert base64.b64encode(b"plain-access") not in blob
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = store.load()
    assert loaded is not None and loaded.access_token.reveal() == "plain-access-token-XYZ"


def test_a_missing_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(TokenStoreError, match=f"{KEY_ENV} is not set"):
        EncryptedTokenStore(tmp_path / "tokens")


def test_an_invalid_key_is_a_clear_error_that_does_not_quote_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "not-a-fernet-key-SECRETVALUE")
    with pytest.raises(TokenStoreError, match="not a valid Fernet key") as info:
        EncryptedTokenStore(tmp_path / "tokens")
    assert "SECRETVALUE" not in str(info.value) and info.value.__cause__ is None


def test_the_wrong_key_cannot_read_the_store(tmp_path: Path, key: str) -> None:
    path = tmp_path / "tokens"
    EncryptedTokenStore(path).save(TokenSet(Secret("a"), Secret("r")))
    with pytest.raises(TokenStoreError, match="cannot decrypt"):
        EncryptedTokenStore(path, key=Fernet.generate_key().decode()).load()


def test_an_empty_store_says_to_authorise_first(tmp_path: Path, key: str) -> None:
    keap = OAuthKeap()
    clock = FakeClock()
    with make_client(keap, clock, auth=oauth(EncryptedTokenStore(tmp_path / "none"), clock)) as client:
        with pytest.raises(TokenStoreError, match="authorise the app"):
            client.get("/contacts/1")
    assert keap.api_calls == []
