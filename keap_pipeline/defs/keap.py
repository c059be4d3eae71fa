"""The Keap resource: hands out a paced KeapClient for an API key or OAuth credentials bound with EnvVar."""

from dagster import ConfigurableResource
from pydantic import Field

from keap_pipeline.keap import (
    ApiKeyAuth,
    EncryptedTokenStore,
    KeapClient,
    OAuthAuth,
    Pacer,
    RetryPolicy,
)
from keap_pipeline.keap.auth import KEAP_TOKEN_URL


class KeapResource(ConfigurableResource):
    """Keap REST v2 access. Bind secrets with dagster.EnvVar so they never appear in the UI or run config."""

    base_url: str = Field(description="The API root (KEAP_BASE_URL), e.g. https://api.infusionsoft.com/crm/rest/v2")
    api_key: str | None = Field(default=None, description="Personal access token / service account key (KEAP_API_KEY)")
    oauth_client_id: str | None = Field(default=None, description="OAuth app client id (instead of api_key)")
    oauth_client_secret: str | None = Field(default=None, description="OAuth app client secret")
    oauth_token_store: str | None = Field(
        default=None, description="Path of the encrypted token file (key in KEAP_TOKEN_ENCRYPTION_KEY)"
    )
    oauth_token_url: str = Field(default=KEAP_TOKEN_URL, description="OAuth token endpoint")
    pacing: bool = Field(default=True, description="Pace requests within the credential's quota (off only for benchmarks)")
    timeout_seconds: float = Field(default=30.0, description="Timeout of every request")

    def client(self, *, quota_share: float | None = None, retry: RetryPolicy | None = None) -> KeapClient:
        """A new client; clients of the same credential in one process share one pacer.

        Args:
            quota_share: pace this client to that share (0-1] of the credential's limits, on top
                of the shared pacer (the outbound push beside the syncs).
            retry: the client's retry budget per request (default RetryPolicy()).

        Raises:
            ValueError: neither an API key nor complete OAuth settings are configured.
        """
        return self.clients(1, quota_share=quota_share, retry=retry)[0]

    def clients(self, count: int, *, quota_share: float | None = None, retry: RetryPolicy | None = None) -> list[KeapClient]:
        """`count` new clients of one credential that share one pacer, and one quota share between them.

        Each client is used by one thread at a time (a KeapClient is not shared between threads);
        together they stay within the credential's limits, or within `quota_share` of them.

        Raises:
            ValueError: neither an API key nor complete OAuth settings are configured.
        """
        if self.api_key:
            auth: ApiKeyAuth | OAuthAuth = ApiKeyAuth(self.api_key)
        elif self.oauth_client_id and self.oauth_client_secret and self.oauth_token_store:
            auth = OAuthAuth(
                self.oauth_client_id,
                self.oauth_client_secret,
                EncryptedTokenStore(self.oauth_token_store),
                token_url=self.oauth_token_url,
            )
        else:
            raise ValueError(
                "configure the Keap resource with api_key (KEAP_API_KEY) or with oauth_client_id, "
                "oauth_client_secret and oauth_token_store"
            )
        if quota_share is not None and self.pacing:
            from keap_pipeline.outbound.share import SharedPacer

            pacer = SharedPacer(Pacer.shared(auth.fingerprint, auth.default_limits()), quota_share)
            return [
                KeapClient(self.base_url, auth, pacer=pacer, timeout=self.timeout_seconds, retry=retry) for _ in range(count)
            ]
        return [
            KeapClient(self.base_url, auth, pacing=self.pacing, timeout=self.timeout_seconds, retry=retry)
            for _ in range(count)
        ]
