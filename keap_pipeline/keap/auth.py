"""Credentials for Keap: an API key header, or OAuth2 bearer tokens with rotating refresh."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx

from keap_pipeline.keap.errors import KeapAuthError, KeapTransportError, TokenStoreError
from keap_pipeline.keap.pacing import RateLimits
from keap_pipeline.keap.secret import Secret, redact
from keap_pipeline.keap.token_store import EncryptedTokenStore, TokenSet

log = logging.getLogger(__name__)

KEAP_TOKEN_URL = "https://api.infusionsoft.com/token"


class Auth(Protocol):
    """What KeapClient needs from a credential."""

    @property
    def fingerprint(self) -> str:
        """A one-way hash identifying the quota bucket (the key, or the OAuth client id)."""
        ...

    def default_limits(self) -> RateLimits:
        """The published limits for this kind of credential."""
        ...

    def headers(self, http: httpx.Client) -> dict[str, str]:
        """The auth header for the next request (may refresh an expiring OAuth token first)."""
        ...

    def refresh_after_401(self, http: httpx.Client, sent: dict[str, str]) -> bool:
        """React to a 401 for a request sent with ``sent``; True if retrying can help."""
        ...

    def secrets(self) -> list[Secret]:
        """Every secret value this credential holds, so messages can be scrubbed of them."""
        ...


class ApiKeyAuth:
    """A Personal Access Token or Service Account Key, sent as ``X-Keap-API-Key``."""

    def __init__(self, api_key: str | Secret) -> None:
        """Wrap the key.

        Args:
            api_key: the key (a str is wrapped into a Secret at once).

        Raises:
            KeapAuthError: the key is empty, or holds a character no key has (a space, a control
                character such as a pasted newline, a non-ASCII letter): said here, without the key,
                rather than as a 401 or an encoding error at the first request.
        """
        self._key = Secret(api_key)
        if not self._key:
            raise KeapAuthError("the Keap API key is empty: set KEAP_API_KEY to a PAT or service account key")
        bad = next((i for i, ch in enumerate(self._key.reveal()) if not "!" <= ch <= "~"), None)
        if bad is not None:
            raise KeapAuthError(
                f"the Keap API key holds a space, a control or a non-ASCII character (position {bad + 1}); keys are "
                "printable ASCII: check KEAP_API_KEY for a pasted newline, space or quote"
            )

    def __repr__(self) -> str:
        return "ApiKeyAuth(***)"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the key (never the key), to share a pacer between clients of one key."""
        return self._key.fingerprint("keap-api-key")

    def default_limits(self) -> RateLimits:
        """Personal key limits: 10/s, 240/min, 30,000/day."""
        return RateLimits.personal_key()

    def headers(self, http: httpx.Client) -> dict[str, str]:
        """The ``X-Keap-API-Key`` header."""
        return {"X-Keap-API-Key": self._key.reveal()}

    def refresh_after_401(self, http: httpx.Client, sent: dict[str, str]) -> bool:
        """An API key cannot be refreshed: always False."""
        return False

    def secrets(self) -> list[Secret]:
        """The key."""
        return [self._key]


class OAuthAuth:
    """OAuth2 bearer tokens from an EncryptedTokenStore, refreshed once on expiry or on a 401.

    Keap rotates the refresh token on every refresh and the old one stops working, so the new
    pair is saved (atomically) BEFORE the new access token is used, and refreshes are
    serialised across processes with a lock file; after taking the lock the store is re-read,
    because another process may have refreshed already.
    """

    def __init__(
        self,
        client_id: str | Secret,
        client_secret: str | Secret,
        store: EncryptedTokenStore,
        *,
        token_url: str = KEAP_TOKEN_URL,
        refresh_margin: float = 300.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Configure the refresh.

        Args:
            client_id: the OAuth app's client id (the quota bucket is per client id).
            client_secret: the OAuth app's secret.
            store: where the current token pair lives.
            token_url: Keap's token endpoint (configurable for the sandbox).
            refresh_margin: refresh this many seconds before a known expiry.
            now: the wall clock, injectable for tests.
        """
        self._client_id = Secret(client_id)
        self._client_secret = Secret(client_secret)
        self.store = store
        self.token_url = token_url
        self.refresh_margin = refresh_margin
        self._now = now
        self._tokens: TokenSet | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuthAuth(client_id=***, store={self.store!r}, token_url={self.token_url!r})"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the client id: Keap counts OAuth quotas per key/secret pair."""
        return self._client_id.fingerprint("keap-oauth-client")

    def default_limits(self) -> RateLimits:
        """OAuth app limits: 25/s, 1500/min, 150,000/day."""
        return RateLimits.oauth_app()

    def secrets(self) -> list[Secret]:
        """The client secret and the current tokens."""
        found = [self._client_id, self._client_secret]
        if self._tokens is not None:
            found += [self._tokens.access_token, self._tokens.refresh_token]
        return found

    def _current(self) -> TokenSet:
        if self._tokens is None:
            tokens = self.store.load()
            if tokens is None:
                raise TokenStoreError(
                    f"no OAuth tokens in {self.store.path}: authorise the app and save the first "
                    "token pair with EncryptedTokenStore.save()"
                )
            self._tokens = tokens
        return self._tokens

    def headers(self, http: httpx.Client) -> dict[str, str]:
        """The bearer header, refreshing first if the token expires within the margin.

        Raises:
            TokenStoreError: no tokens stored, or the store cannot be read or written.
            KeapAuthError: the token endpoint rejected the refresh.
        """
        tokens = self._current()
        if tokens.expires_within(self.refresh_margin, self._now()):
            log.info("OAuth access token expires soon; refreshing")
            self._refresh(http, stale=tokens.access_token)
            tokens = self._current()
        return {"Authorization": f"Bearer {tokens.access_token.reveal()}"}

    def refresh_after_401(self, http: httpx.Client, sent: dict[str, str]) -> bool:
        """Refresh after a 401 (unless another process already did); True: retry the request.

        Raises:
            TokenStoreError: the store cannot be read or written.
            KeapAuthError: the token endpoint rejected the refresh.
        """
        bearer = sent.get("Authorization", "").removeprefix("Bearer ")
        log.info("Keap answered 401; refreshing the OAuth token once")
        self._refresh(http, stale=Secret(bearer))
        return True

    def _refresh(self, http: httpx.Client, stale: Secret) -> None:
        with self.store.locked():
            current = self.store.load()
            if current is None:
                raise TokenStoreError(f"the OAuth token store {self.store.path} vanished; re-authorise")
            if current.access_token != stale and not current.expires_within(
                self.refresh_margin, self._now()
            ):
                # another process rotated the pair while we waited for the lock
                log.info("another process refreshed the OAuth token; using its pair")
                self._tokens = current
                return
            new = self._call_token_endpoint(http, current)
            # persist BEFORE use: the old refresh token is dead from this moment on
            self.store.save(new)
            self._tokens = new
            self.refreshes += 1

    def _call_token_endpoint(self, http: httpx.Client, current: TokenSet) -> TokenSet:
        scrub = self.secrets() + [current.access_token, current.refresh_token]
        try:
            response = http.post(
                self.token_url,
                data={"grant_type": "refresh_token", "refresh_token": current.refresh_token.reveal()},
                auth=(self._client_id.reveal(), self._client_secret.reveal()),
            )
        except httpx.TransportError as exc:
            raise KeapTransportError(
                f"OAuth token endpoint unreachable ({type(exc).__name__}); the stored tokens are "
                "unchanged, retry later"
            ) from None
        if response.status_code != 200:
            detail = ""
            try:
                body = response.json()
                if isinstance(body, dict):
                    detail = ", ".join(
                        str(body[k]) for k in ("error", "error_description") if body.get(k)
                    )
            except ValueError:
                pass
            raise KeapAuthError(
                redact(
                    f"OAuth refresh rejected (HTTP {response.status_code}"
                    f"{': ' + detail if detail else ''}): the refresh token or the client "
                    "id/secret is no longer valid; re-authorise the app and store new tokens",
                    scrub,
                ),
                status=response.status_code,
            )
        try:
            body = response.json()
            access = Secret(body["access_token"])
            # RFC 6749 allows keeping the old refresh token when none is returned
            refresh = Secret(body.get("refresh_token") or current.refresh_token)
            expires_in = body.get("expires_in")
            lifetime = float(expires_in) if expires_in is not None else None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeapAuthError(
                "OAuth token endpoint answered 200 without an access_token; check token_url"
            ) from None
        expires_at = self._now() + timedelta(seconds=lifetime) if lifetime is not None else None
        return TokenSet(access_token=access, refresh_token=refresh, expires_at=expires_at)
