"""Time filters take only what Keap takes: full ISO-8601 date-times with milliseconds and an offset.

The spec (listContacts' filter): "the value must be a full ISO-8601 date-time with milliseconds and
a timezone offset (e.g. 2026-01-01T00:00:00.000Z) ... Date-only values such as 2026-01-01 are
rejected". The sandbox refuses every looser form with Keap's 400, so a client whose time format
regressed fails the tests instead of passing them and failing against Keap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from keap_pipeline.keap.endpoints import format_time
from keap_pipeline.sandbox.entities import ENTITIES, ROUTES
from tests.sandbox.conftest import api

PATHS = {entity: "/" + route for route, entity in ROUTES.items()}
# every time filter of every entity the sandbox serves: (path, list key, filter field)
TIME_FILTERS = [
    (PATHS[spec.name], spec.list_key, name)
    for spec in ENTITIES.values()
    for name, field in spec.filters.items()
    if field.kind in ("window_lo", "window_hi", "time_lo", "time_hi")
]

ACCEPTED = [
    "2026-01-01T00:00:00.000Z",
    "2026-01-01T00:00:00.000+02:00",
    "2025-12-31T23:59:59.999-05:30",
    "2026-01-01T00:00:00.000+00:00",
    format_time(datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)),
    format_time(datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=9))), round_up=True),
]
REFUSED = [
    "2026-01-01",  # a date
    "2026-01-01T00:00:00Z",  # no milliseconds
    "2026-01-01T00:00:00.0Z",  # fewer digits
    "2026-01-01T00:00:00.000000Z",  # microseconds
    "2026-01-01T00:00:00.000",  # no offset
    "2026-01-01T00:00:00",  # neither
    "2026-01-01 00:00:00.000Z",  # a space for the T
    "2026-01-01T00:00:00.000 02:00",  # an unencoded '+' arrives as a space
    "2026-01-01T00:00Z",  # no seconds
    "20260101T000000.000Z",  # basic format
    "2026-01-01T00:00:00.000z",
    "2026-01-01T00:00:00.000+0200",
    "2026-02-30T00:00:00.000Z",  # no such day
    "2026-01-01T24:00:00.000Z",
    "٢٠٢٦-01-01T00:00:00.000Z",  # other scripts' digits
    "yesterday",
    "",
]


def test_every_entity_has_time_filters() -> None:
    assert {path for path, _, _ in TIME_FILTERS} >= {"/contacts", "/orders", "/tags", "/tags/categories", "/companies"}


@pytest.mark.parametrize(("path", "key", "field"), TIME_FILTERS)
def test_full_iso_with_millis_and_offset_is_accepted(sandbox, path: str, key: str, field: str) -> None:
    with api(sandbox) as client:
        for value in ACCEPTED:
            response = client.get(path, params={"filter": f"{field}=={value}", "page_size": "5"})
            assert response.status_code == 200, (field, value, response.text)
            assert isinstance(response.json()[key], list)


@pytest.mark.parametrize(("path", "key", "field"), TIME_FILTERS)
def test_looser_forms_are_refused_as_keap_refuses_them(sandbox, path: str, key: str, field: str) -> None:
    with api(sandbox) as client:
        for value in REFUSED:
            response = client.get(path, params={"filter": f"{field}=={value}"})
            assert response.status_code == 400, (field, value)
            body = response.json()
            assert set(body) == {"code", "message", "status", "details"} and body["code"] == 400
            assert "milliseconds and an offset" in body["message"]


def test_the_clients_format_selects_the_same_records_as_the_instant(sandbox) -> None:
    moment = datetime(2021, 6, 1, 12, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-7)))
    with api(sandbox) as client:
        a = client.get("/contacts", params={"filter": f"start_update_time=={format_time(moment)}", "page_size": "50"})
        b = client.get("/contacts", params={"filter": "start_update_time==2021-06-01T19:00:00.500Z", "page_size": "50"})
    assert a.status_code == b.status_code == 200
    assert a.json()["contacts"] == b.json()["contacts"]
