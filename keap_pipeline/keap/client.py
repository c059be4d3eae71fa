"""KeapClient: paced, retrying, authenticated access to the Keap REST v2 API over httpx."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlencode

import httpx

from keap_pipeline.jsontext import decode_json, decode_list_body, dumps, split_list_body
from keap_pipeline.keap import paging
from keap_pipeline.keap.auth import Auth
from keap_pipeline.keap.endpoints import ENDPOINTS, EndpointSpec, build_list_params
from keap_pipeline.keap.errors import (
    KeapArgumentError,
    KeapAuthError,
    KeapConnectionRefused,
    KeapError,
    KeapNotFound,
    KeapRateLimited,
    KeapRequestError,
    KeapResponseError,
    KeapServerError,
    KeapTransportError,
)
from keap_pipeline.keap.pacing import Pacer, next_utc_midnight, quota_exhausted
from keap_pipeline.keap.paging import FetchResult, Page
from keap_pipeline.keap.quota import QuotaState
from keap_pipeline.keap.retrying import RetryPolicy, is_refused, parse_retry_after
from keap_pipeline.keap.secret import redact
from keap_pipeline.keap.stats import ClientStats

log = logging.getLogger(__name__)

# the update_mask enum of PATCH /v2/contacts/{contact_id} in keap-rest-v2.openapi.yml
CONTACT_UPDATE_MASK = frozenset(
    """addresses anniversary_date birth_date company contact_type create_time custom_fields
    email_addresses family_name fax_numbers given_name id job_title leadsource_id links
    middle_name notes origin owner_id phone_numbers preferred_locale preferred_name prefix
    referral_code score_value social_accounts source_type spouse_name suffix tag_ids time_zone
    update_time utm_parameters website account_id assistant_name assistant_phone
    billing_information created_by groups last_updated_by""".split()
)
DUPLICATE_OPTIONS = ("Email", "EmailAndName", "EmailAndNameAndCompany")
# the update_mask enum of PATCH /v2/tags/{tag_id}
TAG_UPDATE_MASK = frozenset({"name", "description", "category"})


class _RedactedQueries(logging.Filter):
    """httpx logs every request's URL (at INFO); a Keap URL's query can carry customer values (the
    pusher's recovery looks a contact up by its email in a listing filter). On the ``httpx`` logger,
    a URL is logged as its scheme, host and path, its query replaced by ``?<redacted>``."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - logging hook
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_without_query(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _without_query(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}" + ("?<redacted>" if url.query else "")


_HTTPX_LOG = logging.getLogger("httpx")
if not any(isinstance(f, _RedactedQueries) for f in _HTTPX_LOG.filters):
    _HTTPX_LOG.addFilter(_RedactedQueries())


class _NoCookies(CookieJar):
    """A cookie jar that keeps none: Keap's API is stateless (a key or a bearer token on every
    request), so a cookie some server sets is never sent back; and reading every answer's headers
    into the jar cost ~0.3 ms a request (httpx builds an email.message of them)."""

    def extract_cookies(self, response: Any, request: Any) -> None:  # noqa: D102 - CookieJar hook
        return None

    def add_cookie_header(self, request: Any) -> None:  # noqa: D102 - CookieJar hook
        return None


def _json_bytes(body: Any) -> bytes:
    """A JSON body as UTF-8 bytes: the C encoder, or jsontext's (Decimals as their digits) when it cannot."""
    try:
        return _JSON.encode(body).encode("utf-8")
    except (TypeError, ValueError):
        return dumps(body, ensure_ascii=False).encode("utf-8")


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _record_id(value: str | int) -> str:
    text = str(value)
    # Keap ids are digit strings; anything else would change the path, not name a record
    if isinstance(value, bool) or not text.isdigit():
        raise KeapArgumentError(f"a Keap record id must be digits, got {text!r}")
    return text


def _check_base_url(base_url: str) -> None:
    """Refuse a base URL no request could reach, before the first one is sent and retried."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        # the text itself only when it cannot hold a credential (user:password@host)
        shown = f" {base_url!r}" if isinstance(base_url, str) and "@" not in base_url else ""
        raise KeapArgumentError(
            f"the Keap base URL{shown} is not an http(s) URL with a host; KEAP_BASE_URL is the API root, e.g. "
            "https://api.infusionsoft.com/crm/rest/v2 (or the sandbox's http://127.0.0.1:8765/crm/rest/v2)"
        )


class KeapClient:
    """Paced, retrying access to one Keap account. Use as a context manager, or call close().

    Not meant to be shared between threads (its stats are plain counters); several clients
    may share one Pacer, and do so automatically when they use the same credential.
    """

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        pacer: Pacer | None = None,
        pacing: bool = True,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Configure the client.

        Args:
            base_url: the API root, ending in ``/crm/rest/v2`` (KEAP_BASE_URL).
            auth: ApiKeyAuth or OAuthAuth.
            pacer: a Pacer to use; default: the one shared by every client of this credential,
                with the credential's published limits.
            pacing: False sends requests unpaced (benchmarks); a spent daily quota reported by
                Keap still stops the client.
            timeout: seconds (or an httpx.Timeout) for every request.
            retry: the retry budget per request.
            transport: an httpx transport (tests use httpx.MockTransport).
            sleep: how to wait between retries, injectable.
            now: the wall clock (for HTTP-date Retry-After values), injectable.

        Raises:
            KeapArgumentError: pacing=False together with an explicit pacer; a base URL that is not
                an http(s) URL with a host (it would fail every request, after every retry).
        """
        if not pacing and pacer is not None:
            raise KeapArgumentError("pass either pacer=... or pacing=False, not both")
        _check_base_url(base_url)
        if pacer is None:
            if pacing:
                pacer = Pacer.shared(auth.fingerprint, auth.default_limits())
            else:
                pacer = Pacer(auth.default_limits(), enabled=False)
        self.base_url = base_url.rstrip("/")
        self.stats = ClientStats()
        self._auth = auth
        self._pacer = pacer
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._now = now
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "keap-pipeline"},
            cookies=_NoCookies(),
        )

    def __repr__(self) -> str:
        return f"KeapClient({self.base_url!r}, auth={self._auth!r})"

    def __enter__(self) -> KeapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connections."""
        self._http.close()

    @property
    def pacer(self) -> Pacer:
        """The pacer this client waits on."""
        return self._pacer

    # ---- listing -------------------------------------------------------------------------

    def iter_pages(
        self,
        endpoint: EndpointSpec | str,
        *,
        fields: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        order_by: str | None = None,
        page_size: int = 1000,
        filters: Sequence[str] = (),
        page_token: str | None = None,
        decode: bool = True,
    ) -> Iterator[Page]:
        """Page through a list endpoint, one Page at a time.

        Args:
            endpoint: an ENDPOINTS entry or its name.
            fields: properties to ask for (contacts, companies).
            since: window start (aware datetime; endpoints with a time window).
            until: window end (aware datetime).
            order_by: e.g. ``"update_time asc"``.
            page_size: 1..1000.
            filters: extra raw filter terms, e.g. ``"contact_id>5"``.
            page_token: resume a listing from this token.
            decode: False: each page's records are their bytes (msgspec.Raw, jsontext.split_list_body),
                not decoded, for a consumer that decodes only some of them (a re-read, see
                pipeline.raw_keys); a page msgspec cannot split is decoded as usual.

        Returns:
            an iterator of pages; arguments are checked now, requests are sent as it is consumed.

        Raises:
            KeapArgumentError: at once, for an unknown endpoint or an unsupported argument.
            KeapError: while iterating (see ``request``), KeapPagingError on a token loop.
        """
        if isinstance(endpoint, str):
            try:
                spec = ENDPOINTS[endpoint]
            except KeyError:
                raise KeapArgumentError(
                    f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}"
                ) from None
        else:
            spec = endpoint
        params = build_list_params(
            spec,
            page_size=page_size,
            fields=tuple(fields) if fields else None,
            since=since,
            until=until,
            order_by=order_by,
            filters=tuple(filters),
        )
        return self._pages(spec, params, page_token, decode)

    def _pages(self, spec: EndpointSpec, params: dict[str, str], token: str | None, decode: bool = True) -> Iterator[Page]:
        def fetch(query: dict[str, str]) -> FetchResult:
            response, spent = self.request("GET", spec.path, params=query)
            body = None if decode else split_list_body(response.content, spec.list_key)
            if body is None:
                body = self._json(response, spec.path, list_key=spec.list_key)
            return FetchResult(body, spent, self._pacer.quota, response.content)

        for page in paging.iter_pages(spec, params, fetch, page_token=token):
            self.stats.pages += 1
            self.stats.records += len(page.records)
            yield page

    # ---- single records and the contact writes ------------------------------------------

    def get(self, path: str, params: Mapping[str, str | Sequence[str]] | None = None) -> Any:
        """GET one resource, e.g. ``/contacts/1001`` or ``/contacts/model``.

        Args:
            path: relative to the base URL.
            params: query parameters.

        Returns:
            the decoded JSON body.

        Raises:
            KeapError: see ``request``.
        """
        response, _ = self.request("GET", path, params=params)
        return self._json(response, path)

    def create_contact(
        self,
        contact: Mapping[str, Any],
        *,
        fields: Sequence[str] | None = None,
        duplicate_option: str | None = None,
    ) -> dict[str, Any]:
        """POST /contacts. Not retried after a 5xx or a timeout (it may have been created).

        Args:
            contact: a CreateUpdateContactRequest body.
            fields: properties to return.
            duplicate_option: Email, EmailAndName or EmailAndNameAndCompany.

        Returns:
            the created (or, with duplicate_option, updated) contact.

        Raises:
            KeapArgumentError: an unknown duplicate_option.
            KeapError: see ``request``.
        """
        params: dict[str, str] = {}
        if fields:
            params["fields"] = ",".join(fields)
        if duplicate_option is not None:
            if duplicate_option not in DUPLICATE_OPTIONS:
                raise KeapArgumentError(f"duplicate_option must be one of {DUPLICATE_OPTIONS}")
            params["duplicate_option"] = duplicate_option
        response, _ = self.request(
            "POST", "/contacts", params=params, json=dict(contact), idempotent=False
        )
        return self._json(response, "/contacts")

    def update_contact(
        self,
        contact_id: str | int,
        changes: Mapping[str, Any],
        *,
        update_mask: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """PATCH /contacts/{id}; with update_mask only those properties change.

        Args:
            contact_id: the contact's id (digits).
            changes: a CreateUpdateContactRequest body.
            update_mask: property names (sent as repeated ``update_mask`` parameters, the
                spec's default form style for arrays).
            fields: properties to return.

        Returns:
            the updated contact.

        Raises:
            KeapArgumentError: a bad id or an update_mask entry the spec does not list.
            KeapError: see ``request``.
        """
        path = f"/contacts/{_record_id(contact_id)}"
        params: dict[str, str | list[str]] = {}
        if update_mask:
            unknown = sorted(set(update_mask) - CONTACT_UPDATE_MASK)
            if unknown:
                raise KeapArgumentError(f"update_mask entries not allowed by Keap: {unknown}")
            params["update_mask"] = list(update_mask)
        if fields:
            params["fields"] = ",".join(fields)
        response, _ = self.request("PATCH", path, params=params, json=dict(changes))
        return self._json(response, path)

    def delete_contact(self, contact_id: str | int) -> None:
        """DELETE /contacts/{id}.

        Args:
            contact_id: the contact's id (digits).

        Raises:
            KeapNotFound: no such contact.
            KeapError: see ``request``.
        """
        self.request("DELETE", f"/contacts/{_record_id(contact_id)}")

    # ---- tags and their contacts ---------------------------------------------------------

    def create_tag(self, tag: Mapping[str, Any]) -> dict[str, Any]:
        """POST /tags (a CreateUpdateTagRequest). Not retried after a 5xx or a timeout.

        Args:
            tag: name, description, category {id}.

        Returns:
            the created tag.

        Raises:
            KeapError: see ``request``.
        """
        return self.call("POST", "/tags", body=tag, idempotent=False)

    def update_tag(
        self, tag_id: str | int, changes: Mapping[str, Any], *, update_mask: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """PATCH /tags/{id}; with update_mask (name, description, category) only those change.

        Args:
            tag_id: the tag's id (digits).
            changes: a CreateUpdateTagRequest body.
            update_mask: property names.

        Returns:
            the updated tag.

        Raises:
            KeapArgumentError: a bad id or an update_mask entry the spec does not list.
            KeapError: see ``request``.
        """
        params: dict[str, str | list[str]] = {}
        if update_mask:
            unknown = sorted(set(update_mask) - TAG_UPDATE_MASK)
            if unknown:
                raise KeapArgumentError(f"update_mask entries not allowed by Keap: {unknown}")
            params["update_mask"] = list(update_mask)
        return self.call("PATCH", f"/tags/{_record_id(tag_id)}", params=params, body=changes)

    def delete_tag(self, tag_id: str | int) -> None:
        """DELETE /tags/{id}.

        Raises:
            KeapNotFound: no such tag.
            KeapError: see ``request``.
        """
        self.request("DELETE", f"/tags/{_record_id(tag_id)}")

    def apply_tag(self, tag_id: str | int, contact_ids: Sequence[str | int]) -> Any:
        """POST /tags/{id}/contacts:applyTags: the tag on each of these contacts.

        Returns:
            Keap's ApplyTagsResponse ({"results": {contact id: outcome}}).

        Raises:
            KeapError: see ``request``.
        """
        ids = [_record_id(c) for c in contact_ids]
        return self.call("POST", f"/tags/{_record_id(tag_id)}/contacts:applyTags", body={"contact_ids": ids})

    def remove_tag(self, tag_id: str | int, contact_ids: Sequence[str | int]) -> None:
        """POST /tags/{id}/contacts:removeTags: the tag off each of these contacts.

        Raises:
            KeapError: see ``request``.
        """
        ids = [_record_id(c) for c in contact_ids]
        self.call("POST", f"/tags/{_record_id(tag_id)}/contacts:removeTags", body={"contact_ids": ids})

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """One request with a JSON body written exactly (Decimals as their digits); the decoded answer.

        Args:
            method: HTTP method.
            path: relative to the base URL (its ids already checked by the caller).
            params: query parameters.
            body: a JSON value (dicts, lists, str, int, Decimal, ...), or None for no body.
            idempotent: see ``request``.

        Returns:
            the decoded JSON answer, or None for an empty one (204).

        Raises:
            KeapError: see ``request``.
        """
        content = None if body is None else _json_bytes(body)
        response, _ = self.request(method, path, params=params, content=content, idempotent=idempotent)
        if not response.content:
            return None
        return self._json(response, path)

    # ---- the one request path ------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        idempotent: bool = True,
    ) -> tuple[httpx.Response, int]:
        """Send one request: paced, authenticated, retried within the budget.

        Args:
            method: HTTP method.
            path: relative to the base URL.
            params: query parameters.
            json: a JSON body.
            content: a JSON body already encoded (UTF-8), instead of ``json``.
            idempotent: False (POST create) retries only what surely was not processed: a 429
                or a connection that never opened.

        Returns:
            (the 2xx response, how many requests it took).

        Raises:
            KeapQuotaExhausted: the daily quota is spent (``resets_at`` says until when).
            KeapRateLimited: 429s beyond the retry budget.
            KeapServerError: 5xx beyond the retry budget.
            KeapTransportError: timeouts/dropped connections beyond the retry budget.
            KeapConnectionRefused: nothing listens at the base URL's host and port (at once, no retry).
            KeapAuthError: 401 (after one OAuth refresh) or 403.
            KeapNotFound: 404.
            KeapRequestError: any other 4xx.
        """
        retries = 0
        waited = 0.0
        refreshed = False
        spent = 0
        url = self._url(path, params)
        while True:
            self.stats.paced_seconds += self._pacer.acquire()
            sent = self._auth.headers(self._http)
            self.stats.requests += 1
            spent += 1
            if content is not None:
                sent = {**sent, "Content-Type": "application/json"}
            try:
                response = self._http.request(method, url, json=json, content=content, headers=sent)
            except httpx.TransportError as exc:
                self._pacer.settle()
                self.stats.transport_errors += 1
                if is_refused(exc):
                    # nothing listens there: retrying with backoff would only delay this answer
                    raise KeapConnectionRefused(
                        f"{method} {path}: connection refused by {self._address()}: nothing accepts "
                        "connections there; check KEAP_BASE_URL and that Keap (or the sandbox) runs at it"
                    ) from exc
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                delay = self._retry.backoff(retries)
                if (idempotent or unsent) and self._may_retry(retries, waited, delay):
                    log.warning(
                        "%s %s: %s; retry %d/%d in %.2fs", method, path, type(exc).__name__,
                        retries + 1, self._retry.max_retries, delay,
                    )
                    retries, waited = self._wait(retries, waited, delay)
                    continue
                advice = (
                    "Keap did not answer in time: raise the timeout or retry later"
                    if isinstance(exc, httpx.TimeoutException)
                    else "check the network and KEAP_BASE_URL"
                )
                raise KeapTransportError(
                    f"{method} {path} to {self._address()}: {type(exc).__name__} on {retries + 1} "
                    f"attempt(s), retry budget spent; {advice}"
                ) from exc
            self._pacer.settle()
            quota = self._observe(response)
            status = response.status_code
            if 200 <= status < 300:
                return response, spent
            if status < 400:
                # never followed: httpx would carry X-Keap-API-Key along to wherever it points
                raise self._error(
                    KeapRequestError, response, method, path,
                    "Keap does not redirect API calls; check KEAP_BASE_URL (it must be the API "
                    "root ending in /crm/rest/v2, https)",
                )
            if status == 401:
                if not refreshed and self._auth.refresh_after_401(self._http, sent):
                    refreshed = True
                    self.stats.refreshes += 1
                    continue
                raise self._error(
                    KeapAuthError, response, method, path,
                    "still unauthorised after refreshing the OAuth token; re-authorise the app"
                    if refreshed
                    else "the credential was rejected; check the API key or OAuth tokens",
                )
            if status == 429:
                self.stats.throttled += 1
                if quota is not None and quota.quota_available is not None and quota.quota_available <= 0:
                    resets = quota.quota_resets_at or next_utc_midnight(self._now().timestamp())
                    raise quota_exhausted(resets, "Keap answered 429 with the daily quota spent", 429)
                delay = self._throttle_delay(response, quota, retries)
                if self._may_retry(retries, waited, delay):
                    log.warning(
                        "%s %s: HTTP 429; retry %d/%d in %.2fs", method, path, retries + 1,
                        self._retry.max_retries, delay,
                    )
                    retries, waited = self._wait(retries, waited, delay)
                    continue
                raise self._error(
                    KeapRateLimited, response, method, path,
                    f"still throttled after {retries} retries (next wait {delay:.0f}s exceeds the "
                    "retry budget); lower the request rate or raise RetryPolicy.max_wait",
                )
            if status >= 500:
                self.stats.server_errors += 1
                delay = self._retry.backoff(retries)
                # a 503 may say when to come back; never retry sooner than that
                hinted = parse_retry_after(response.headers.get("retry-after"), self._now())
                if hinted is not None:
                    delay = max(delay, hinted)
                if idempotent and self._may_retry(retries, waited, delay):
                    log.warning(
                        "%s %s: HTTP %d; retry %d/%d in %.2fs", method, path, status,
                        retries + 1, self._retry.max_retries, delay,
                    )
                    retries, waited = self._wait(retries, waited, delay)
                    continue
                raise self._error(
                    KeapServerError, response, method, path,
                    f"Keap failed on {retries + 1} attempt(s); retry later"
                    if idempotent
                    else "not retried, since the write may have happened; check before repeating",
                )
            if status == 403:
                raise self._error(
                    KeapAuthError, response, method, path,
                    "the credential lacks the permission or scope for this resource",
                )
            if status == 404:
                raise self._error(
                    KeapNotFound, response, method, path,
                    "check the record id and that the base URL ends in /crm/rest/v2",
                )
            raise self._error(
                KeapRequestError, response, method, path,
                "Keap rejected the request; fix its parameters or body as Keap's message says",
            )

    # ---- helpers -------------------------------------------------------------------------

    def _address(self) -> str:
        """host:port of the base URL (the port the scheme implies when none is given)."""
        url = self._http.base_url
        port = url.port or (443 if url.scheme == "https" else 80)
        host = f"[{url.host}]" if ":" in url.host else url.host
        return f"{host}:{port}"

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        """The absolute URL, its query encoded as httpx encodes params (urlencode of the items, lists
        repeated): parsed once per request instead of three times (base merge, params merge)."""
        url = self.base_url + path
        if not params:
            return url
        items = [
            (name, str(v))
            for name, value in params.items()
            for v in (value if isinstance(value, list | tuple) else (value,))
        ]
        return f"{url}?{urlencode(items)}"

    def _may_retry(self, retries: int, waited: float, delay: float) -> bool:
        return retries < self._retry.max_retries and waited + delay <= self._retry.max_wait

    def _wait(self, retries: int, waited: float, delay: float) -> tuple[int, float]:
        self.stats.retries += 1
        self._sleep(delay)
        return retries + 1, waited + delay

    def _observe(self, response: httpx.Response) -> QuotaState | None:
        # the x-keap-* figures as one dict: httpx's Headers.get scans every header per lookup, and a
        # response carries two dozen of them
        quota = self._pacer.observe(
            {k: v for k, v in response.headers.items() if k.startswith("x-keap-")}
        )
        if quota is not None:
            self.stats.quota_available = quota.quota_available
            self.stats.quota_limit = quota.quota_limit
            self.stats.quota_resets_at = quota.quota_resets_at
            self.stats.throttle_available = quota.throttle_available
        return quota

    def _throttle_delay(self, response: httpx.Response, quota: QuotaState | None, retries: int) -> float:
        now = self._now()
        delay = parse_retry_after(response.headers.get("retry-after"), now)
        if delay is None and quota is not None and quota.throttle_resets_at is not None:
            delay = max(0.0, (quota.throttle_resets_at - now).total_seconds())
        if delay is None:
            # no hint: back off, but never hammer a throttled key faster than once a second
            delay = max(1.0, self._retry.backoff(retries))
        return delay

    def _json(self, response: httpx.Response, path: str, list_key: str | None = None) -> Any:
        try:
            if list_key is not None:
                # one record that is not JSON on its own does not fail its page (jsontext)
                return decode_list_body(response.content, list_key)
            return decode_json(response.content)
        except (ValueError, RecursionError):
            raise KeapResponseError(
                f"{response.request.method} {path}: HTTP {response.status_code} with a body that "
                "is not JSON; "
                "check that the base URL points at the Keap REST v2 API",
                status=response.status_code,
            ) from None

    def _error(
        self, cls: type[KeapError], response: httpx.Response, method: str, path: str, advice: str
    ) -> KeapError:
        code: str | None = None
        message: str | None = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = None if body.get("code") is None else str(body["code"])
            message = None if body.get("message") is None else str(body["message"])
        said = f": Keap says {message!r}" if message else ""
        said += f" (code {code})" if code else ""
        text = f"{method} {path} failed with HTTP {response.status_code}{said}; {advice}"
        # Keap's own message could echo a credential; scrub every secret we hold
        scrub = self._auth.secrets()
        return cls(
            redact(text, scrub),
            status=response.status_code,
            code=code,
            keap_message=redact(message, scrub) if message else None,
        )
