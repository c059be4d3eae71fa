"""Raw contacts: records served byte for byte (hostile values, broken JSON), from tests or `--raw-contacts FILE`."""

from __future__ import annotations

import json

from keap_pipeline.cli import build_parser
from keap_pipeline.sandbox import config_from_args
from keap_pipeline.sandbox.state import SandboxState
from tests.sandbox.conftest import api


def test_raw_contacts_are_served_byte_for_byte_in_time_order(start_sandbox) -> None:
    handle = start_sandbox(contacts=0)
    raws = [b'{"id":"9","given_name":"\\ud83d"}', b'{"id":"9","x":"\xff"}', b"null", b'{"not json"']
    handle.state.put_raw_contacts([(r, 1_700_000_000_000 + i) for i, r in enumerate(raws)])
    with api(handle) as client:
        first = client.get("/contacts", params={"page_size": "3", "order_by": "update_time asc"})
        body = first.content
        assert body.startswith(b'{"contacts":[' + b",".join(raws[:3]) + b'],"next_page_token":"')
        next_token = body.rsplit(b'"next_page_token":"', 1)[1].rstrip(b'"}').decode()
        second = client.get("/contacts", params={"page_size": "3", "order_by": "update_time asc", "page_token": next_token})
        assert second.content == b'{"contacts":[{"not json"],"next_page_token":""}'


def test_a_contact_holding_a_lone_surrogate_is_served_escaped_and_can_be_fixed(start_sandbox) -> None:
    handle = start_sandbox(contacts=5)
    handle.state.update_contact(2, {"given_name": "\ud83d"})
    with api(handle) as client:
        page = client.get("/contacts", params={"filter": "", "page_size": "5"})
        assert b'"given_name":"\\ud83d"' in page.content
        fixed = client.patch("/contacts/2", json={"given_name": "Fixed"}, params={"update_mask": "given_name"})
        assert fixed.status_code == 200 and fixed.json()["given_name"] == "Fixed"


def test_raw_contacts_file_replaces_existing_contacts_and_adds_others(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    path = tmp_path / "raw.jsonl"
    path.write_bytes(b'{"id":"3","given_name":"\\ud83d","update_time":"2024-01-02T03:04:05.678Z"}\n\n{"id":"x"}\r\n')
    args = build_parser().parse_args(["sandbox", "--contacts", "10", "--raw-contacts", str(path)])
    config = config_from_args(args)
    assert len(config.raw_contacts) == 2
    state = SandboxState(config.with_(port=0))
    assert state.overlay[3].raw == b'{"id":"3","given_name":"\\ud83d","update_time":"2024-01-02T03:04:05.678Z"}'
    assert state.contact_time(3) == 1_704_164_645_678
    assert state.overlay[11].raw == b'{"id":"x"}' and state.max_contact_id() == 11
    assert json.loads(state.overlay[3].raw)["given_name"] == "\ud83d"
