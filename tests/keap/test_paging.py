"""The page iterator: tokens until empty or missing, a repeated token is an error, one page at a time."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keap_pipeline.keap import KeapPagingError
from tests.keap.fakes import FakeClock, Scripted, keap_json, make_client


def contacts(*ids: int) -> list[dict[str, str]]:
    return [{"id": str(i)} for i in ids]


def page_tokens(handler: Scripted) -> list[str | None]:
    return [parse_qs(urlsplit(str(r.url)).query).get("page_token", [None])[0] for r in handler.requests]


@pytest.mark.parametrize(
    ("last_page", "case"),
    [
        ({"contacts": [{"id": "5"}], "next_page_token": ""}, "empty token ends"),
        ({"contacts": [{"id": "5"}]}, "missing token ends"),
        ({"contacts": [{"id": "5"}], "next_page_token": None}, "null token ends"),
    ],
)
def test_pages_until_the_token_runs_out(last_page: dict[str, object], case: str) -> None:
    handler = Scripted([
        keap_json(200, {"contacts": contacts(1, 2), "next_page_token": "t1"}),
        keap_json(200, {"contacts": contacts(3, 4), "next_page_token": "t2"}),
        keap_json(200, last_page),
    ])
    with make_client(handler, FakeClock()) as client:
        pages = list(client.iter_pages("contacts", page_size=2))
        stats = client.stats
    assert [[r["id"] for r in p.records] for p in pages] == [["1", "2"], ["3", "4"], ["5"]], case
    assert [p.next_page_token for p in pages] == ["t1", "t2", None]
    assert [p.number for p in pages] == [1, 2, 3]
    assert page_tokens(handler) == [None, "t1", "t2"]
    # every request after the first carries the same filters plus the token
    for request in handler.requests:
        assert parse_qs(urlsplit(str(request.url)).query)["page_size"] == ["2"]
    assert (stats.pages, stats.records, stats.requests) == (3, 5, 3)


def test_a_token_seen_twice_is_an_error_not_a_loop() -> None:
    handler = Scripted([
        keap_json(200, {"contacts": contacts(1), "next_page_token": "a"}),
        keap_json(200, {"contacts": contacts(2), "next_page_token": "b"}),
        keap_json(200, {"contacts": contacts(3), "next_page_token": "a"}),
    ])
    with make_client(handler, FakeClock()) as client:
        seen = []
        with pytest.raises(KeapPagingError, match="already used"):
            for page in client.iter_pages("contacts"):
                seen.append(page.number)
    assert seen == [1, 2]
    assert len(handler.requests) == 3


def test_a_token_equal_to_the_resume_token_is_an_error() -> None:
    handler = Scripted([keap_json(200, {"contacts": contacts(1), "next_page_token": "same"})])
    with make_client(handler, FakeClock()) as client, pytest.raises(KeapPagingError):
        list(client.iter_pages("contacts", page_token="same"))
    assert page_tokens(handler) == ["same"]


def test_pages_are_streamed_one_at_a_time() -> None:
    handler = Scripted([
        keap_json(200, {"tags": [{"id": "1"}], "next_page_token": "t1"}),
        keap_json(200, {"tags": [{"id": "2"}], "next_page_token": ""}),
    ])
    with make_client(handler, FakeClock()) as client:
        pages = client.iter_pages("tags")
        assert handler.requests == []  # nothing sent until the first page is asked for
        first = next(pages)
        assert len(handler.requests) == 1 and first.records == [{"id": "1"}]
        assert next(pages).next_page_token is None
        assert len(handler.requests) == 2


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"items": [{"id": "1"}], "next_page_token": ""}, "no 'orders' list"),
        ({"orders": "nope"}, "array of records"),
        ([{"id": "1"}], "JSON object"),
        ({"orders": [], "next_page_token": 7}, "not a string"),
    ],
)
def test_malformed_pages_raise_rather_than_drop(body: object, match: str) -> None:
    handler = Scripted([keap_json(200, body)])
    with make_client(handler, FakeClock()) as client, pytest.raises(KeapPagingError, match=match):
        list(client.iter_pages("orders"))


def test_records_that_are_not_objects_reach_the_caller_as_they_are() -> None:
    """One bad record is that record's problem (the pipeline dead-letters it), never its page's."""
    handler = Scripted([keap_json(200, {"orders": [1, None, {"id": "3"}], "next_page_token": ""})])
    with make_client(handler, FakeClock()) as client:
        (page,) = list(client.iter_pages("orders"))
    assert page.records == [1, None, {"id": "3"}]


def test_a_record_that_is_not_json_alone_does_not_fail_its_page() -> None:
    from keap_pipeline.jsontext import UndecodableRecord

    body = b'{"contacts":[{"id":"1"},{"id":"2","given_name":"bad \\x escape \\q"},{"id":"3"}],"next_page_token":""}'
    handler = Scripted([httpx.Response(200, content=body, headers={"content-type": "application/json"})])
    with make_client(handler, FakeClock()) as client:
        (page,) = list(client.iter_pages("contacts"))
    first, bad, third = page.records
    assert first == {"id": "1"} and third == {"id": "3"}
    assert isinstance(bad, UndecodableRecord) and "not valid JSON" in bad.reason
    assert bad.raw == b'{"id":"2","given_name":"bad \\x escape \\q"}'
    assert page.raw == body


def test_an_empty_listing_without_the_key_is_one_empty_page() -> None:
    handler = Scripted([keap_json(200, {"next_page_token": ""})])
    with make_client(handler, FakeClock()) as client:
        pages = list(client.iter_pages("subscriptions"))
    assert len(pages) == 1 and pages[0].records == []


def test_page_repr_never_shows_records() -> None:
    handler = Scripted([keap_json(200, {"contacts": [{"id": "1", "email": "private@example.com"}]})])
    with make_client(handler, FakeClock()) as client:
        (page,) = list(client.iter_pages("contacts"))
    assert "private@example.com" not in repr(page)
    assert "records=1" in repr(page)


def test_a_2xx_body_that_is_not_json_is_a_response_error() -> None:
    from keap_pipeline.keap import KeapResponseError

    handler = Scripted([httpx.Response(200, text="<html>login</html>")])
    with make_client(handler, FakeClock()) as client, pytest.raises(KeapResponseError, match="not JSON"):
        list(client.iter_pages("tags"))
