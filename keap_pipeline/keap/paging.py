"""The one page iterator for every Keap list endpoint: next_page_token until it runs out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from keap_pipeline.keap.endpoints import EndpointSpec
from keap_pipeline.keap.errors import KeapPagingError
from keap_pipeline.keap.quota import QuotaState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One page of a listing. ``next_page_token`` is None on the last page."""

    endpoint: str
    number: int
    # objects as Keap sends them; a record that is not one (or not JSON on its own: jsontext's
    # UndecodableRecord) is passed on as it is, for the pipeline to dead-letter, not to fail the page
    records: list[Any]
    next_page_token: str | None
    requests: int
    quota: QuotaState | None
    # the response body as received: a consumer that must keep the records for a while can keep
    # these bytes (about a fifth of the decoded dicts' memory) and decode again when needed
    raw: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        # records are customer data: say how many, not what
        return (
            f"Page(endpoint={self.endpoint!r}, number={self.number}, records={len(self.records)}, "
            f"next_page_token={'yes' if self.next_page_token else None})"
        )


@dataclass(frozen=True)
class FetchResult:
    """What fetching one page returned: the decoded body, requests spent, latest quota state."""

    body: Any
    requests: int
    quota: QuotaState | None
    raw: bytes | None = None


def records_of(spec: EndpointSpec, body: Any) -> tuple[list[Any], str | None]:
    """Split a list response into its records and its next page token.

    Args:
        spec: the endpoint (for the list key).
        body: the decoded JSON body.

    Returns:
        (records, token), the token None when empty or missing.

    Raises:
        KeapPagingError: the body is not an object, the records are not an array, or they are
            not where the spec says and some other array might hold them (never silently an
            empty page). Records that are not objects are returned as they are: one bad record
            is that record's problem (the pipeline dead-letters it), not the page's.
    """
    if not isinstance(body, dict):
        raise KeapPagingError(f"{spec.name}: a list response must be a JSON object")
    token = body.get("next_page_token")
    if token is not None and not isinstance(token, str):
        raise KeapPagingError(f"{spec.name}: next_page_token is not a string")
    records = body.get(spec.list_key)
    if records is None:
        others = sorted(k for k, v in body.items() if isinstance(v, list))
        if others:
            raise KeapPagingError(
                f"{spec.name}: the response has no {spec.list_key!r} list but has {others}; "
                "the endpoint table and the API disagree"
            )
        records = []
    if not isinstance(records, list):
        raise KeapPagingError(f"{spec.name}: {spec.list_key!r} must be an array of records")
    return records, token or None


def iter_pages(
    spec: EndpointSpec,
    params: dict[str, str],
    fetch: Callable[[dict[str, str]], FetchResult],
    *,
    page_token: str | None = None,
) -> Iterator[Page]:
    """Yield the pages of one listing, one at a time (nothing is accumulated).

    Args:
        spec: the endpoint.
        params: the first page's query parameters (see endpoints.build_list_params).
        fetch: sends one GET with the given params and returns its FetchResult.
        page_token: resume from this token instead of the first page.

    Yields:
        each Page, the last with ``next_page_token`` None.

    Raises:
        KeapPagingError: a page token came back that was already used (a loop), or a
            malformed page.
    """
    seen: set[str] = set()
    token = page_token
    number = 0
    while True:
        query = dict(params)
        if token is not None:
            seen.add(token)
            query["page_token"] = token
        result = fetch(query)
        records, token = records_of(spec, result.body)
        number += 1
        if token is not None and token in seen:
            raise KeapPagingError(
                f"{spec.name}: page {number} returned a page token that was already used; "
                "Keap would serve the same pages again, so the listing stops here"
            )
        log.debug("%s page %d: %d records", spec.name, number, len(records))
        yield Page(spec.name, number, records, token, result.requests, result.quota, result.raw)
        if token is None:
            return
