"""The Keap v2 list endpoints the pipeline pages through, as the spec defines their parameters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from keap_pipeline.keap.errors import KeapArgumentError


@dataclass(frozen=True)
class EndpointSpec:
    """How to list one Keap entity (paths relative to a base URL ending in /crm/rest/v2).

    In keap-rest-v2.openapi.yml every list endpoint takes its time window INSIDE the ``filter``
    query parameter as ``name==value`` terms joined by ``;`` (none is a top-level parameter),
    and only contacts and companies accept ``fields`` (array, ``explode: false``: comma-joined).
    """

    name: str
    path: str
    list_key: str
    order_by_fields: tuple[str, ...]
    since_filter: str | None = None
    until_filter: str | None = None
    supports_fields: bool = False
    # False for single-object endpoints (the custom-field model): fetch with client.get(path)
    paged: bool = True

    @property
    def has_time_window(self) -> bool:
        """Whether the endpoint can be asked for records changed in a time window."""
        return self.since_filter is not None


# | entity          | path                    | list key        | window, inside `filter`                       | fields | order_by                                       |
# | contacts        | /contacts               | contacts        | start_update_time / end_update_time           | yes    | id, create_time, email, update_time            |
# | companies       | /companies              | companies       | since_time / until_time (on or after/before)  | yes    | id, create_time, name, email                   |
# | tags            | /tags                   | tags            | since_update_time / until_update_time         | no     | name, create_time, update_time                 |
# | tag_categories  | /tags/categories        | tag_categories  | since_update_time / until_update_time         | no     | name, create_time, update_time                 |
# | orders          | /orders                 | orders          | modified_since_time / modified_until_time     | no     | id, order_time, modification_time              |
# | products        | /products               | products        | none (product_id supports >)                  | no     | name, sku, last_updated_time                   |
# | subscriptions   | /subscriptions          | subscriptions   | none (id supports >, >=)                      | no     | id, contact_id, subscription_plan_id, modification_time |
# | contact_model   | /contacts/model         | custom_fields   | not a listing: one ObjectModel {custom_fields, optional_properties}; client.get(path) |
_SPECS = (
    EndpointSpec(
        "contacts", "/contacts", "contacts", ("id", "create_time", "email", "update_time"),
        since_filter="start_update_time", until_filter="end_update_time", supports_fields=True,
    ),
    EndpointSpec(
        "companies", "/companies", "companies", ("id", "create_time", "name", "email"),
        since_filter="since_time", until_filter="until_time", supports_fields=True,
    ),
    EndpointSpec(
        "tags", "/tags", "tags", ("name", "create_time", "update_time"),
        since_filter="since_update_time", until_filter="until_update_time",
    ),
    EndpointSpec(
        "tag_categories", "/tags/categories", "tag_categories", ("name", "create_time", "update_time"),
        since_filter="since_update_time", until_filter="until_update_time",
    ),
    EndpointSpec(
        "orders", "/orders", "orders", ("id", "order_time", "modification_time"),
        since_filter="modified_since_time", until_filter="modified_until_time",
    ),
    EndpointSpec("products", "/products", "products", ("name", "sku", "last_updated_time")),
    EndpointSpec(
        "subscriptions", "/subscriptions", "subscriptions",
        ("id", "contact_id", "subscription_plan_id", "modification_time"),
    ),
    EndpointSpec("contact_model", "/contacts/model", "custom_fields", (), paged=False),
)

ENDPOINTS: MappingProxyType[str, EndpointSpec] = MappingProxyType({s.name: s for s in _SPECS})

CONTACT_MODEL_PATH = ENDPOINTS["contact_model"].path


def format_time(moment: datetime, *, round_up: bool = False) -> str:
    """Format a moment as Keap's filters want it: ISO-8601, milliseconds, UTC ``Z``.

    Keap takes milliseconds, so sub-millisecond precision cannot be sent; rather than drop it
    silently the caller says which way to round, and window bounds always round OUTWARD (the
    start down, the end up) so a window only ever widens and no record falls between windows.

    Args:
        moment: an aware datetime.
        round_up: round a sub-millisecond remainder up instead of down.

    Returns:
        e.g. ``2026-01-01T00:00:00.000Z``.

    Raises:
        KeapArgumentError: the datetime is naive (its zone would be a guess).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise KeapArgumentError(
            "Keap time filters need an aware datetime (e.g. datetime(..., tzinfo=UTC)); got a naive one"
        )
    utc = moment.astimezone(UTC)
    extra = utc.microsecond % 1000
    if extra:
        utc -= timedelta(microseconds=extra)
        if round_up:
            utc += timedelta(milliseconds=1)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_list_params(
    spec: EndpointSpec,
    *,
    page_size: int = 1000,
    fields: list[str] | tuple[str, ...] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    order_by: str | None = None,
    filters: list[str] | tuple[str, ...] = (),
) -> dict[str, str]:
    """The query parameters of the first page of a listing (later pages add ``page_token``).

    Args:
        spec: the endpoint.
        page_size: 1..1000.
        fields: properties to ask for (contacts and companies only).
        since: window start, inclusive (endpoints with a time window only).
        until: window end (endpoints with a time window only).
        order_by: ``"<field> asc|desc"`` with a field the endpoint can order by.
        filters: further raw filter terms, e.g. ``"contact_id>5"``; joined with ``;``.

    Returns:
        the parameters, unencoded (httpx encodes ``==`` as ``%3D%3D`` and ``;`` as ``%3B``).

    Raises:
        KeapArgumentError: an argument the endpoint does not support or an invalid value;
            nothing is silently left out.
    """
    if not spec.paged:
        raise KeapArgumentError(
            f"{spec.name} is a single object, not a listing: fetch it with client.get({spec.path!r})"
        )
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 1000:
        raise KeapArgumentError(f"page_size must be an integer from 1 to 1000, got {page_size!r}")
    params: dict[str, str] = {"page_size": str(page_size)}
    if fields:
        if not spec.supports_fields:
            raise KeapArgumentError(
                f"{spec.name} does not take `fields` in Keap v2; it returns its full records"
            )
        bad = [f for f in fields if not f or "," in f]
        if bad:
            raise KeapArgumentError(f"field names must be non-empty and without commas: {bad!r}")
        params["fields"] = ",".join(fields)
    terms: list[str] = []
    if since is not None or until is not None:
        if not spec.has_time_window:
            raise KeapArgumentError(
                f"{spec.name} has no time-window filter in Keap v2; page it fully (or filter by id)"
            )
        # format first: it refuses naive datetimes before they could be compared
        start = format_time(since) if since is not None else None
        end = format_time(until, round_up=True) if until is not None else None
        if since is not None and until is not None and since > until:
            raise KeapArgumentError("since must not be later than until")
        if start is not None:
            terms.append(f"{spec.since_filter}=={start}")
        if end is not None:
            terms.append(f"{spec.until_filter}=={end}")
    for term in filters:
        if not term or ";" in term:
            raise KeapArgumentError(f"a filter term must be non-empty and contain no ';': {term!r}")
        terms.append(term)
    if terms:
        params["filter"] = ";".join(terms)
    if order_by is not None:
        parts = order_by.split()
        if (
            len(parts) not in (1, 2)
            or parts[0] not in spec.order_by_fields
            or (len(parts) == 2 and parts[1] not in ("asc", "desc"))
        ):
            raise KeapArgumentError(
                f"order_by for {spec.name} must be one of {', '.join(spec.order_by_fields)} "
                f"followed by asc or desc; got {order_by!r}"
            )
        params["order_by"] = " ".join(parts)
    return params
