"""SandboxConfig.state_file: what the API changed survives a restart (as `make demo` then `make ui` need), over real HTTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from keap_pipeline.sandbox import running_sandbox
from keap_pipeline.sandbox.saved_state import saved_dataset
from tests.sandbox.conftest import api, small_config

EMAIL = {"email_addresses": [{"email": "nadia@example.com", "field": "EMAIL1"}]}


def _edit(client: httpx.Client) -> dict[str, object]:
    """Change Keap the way the demo does (update, create) and delete one; return what to expect after."""
    updated = client.patch("/contacts/3", params={"update_mask": "family_name"}, json={"family_name": "Kept-Across"})
    created = client.post("/contacts", json={"given_name": "Nadia", "family_name": "Demo-Created", **EMAIL})
    deleted = client.delete("/contacts/4")
    assert updated.status_code == 200 and created.status_code in (200, 201) and deleted.status_code == 204
    return {"update_time": updated.json()["update_time"], "created_id": created.json()["id"]}


@pytest.mark.parametrize("subprocess_mode", [False, True], ids=["in process", "subprocess (demo, ui)"])
def test_changes_survive_a_restart(tmp_path: Path, subprocess_mode: bool) -> None:
    config = small_config(contacts=50, state_file=str(tmp_path / "state.json"))
    with running_sandbox(config, subprocess_mode=subprocess_mode) as handle, api(handle) as client:
        expected = _edit(client)
    assert saved_dataset(tmp_path / "state.json") == {
        "seed": 7, "contacts": 50, "tags": None, "products": None, "orders": None, "subscriptions": None,
        "companies": None,
    }
    with running_sandbox(config, subprocess_mode=subprocess_mode) as handle, api(handle) as client:
        kept = client.get("/contacts/3").json()
        assert kept["family_name"] == "Kept-Across" and kept["update_time"] == expected["update_time"]
        assert client.get(f"/contacts/{expected['created_id']}").json()["family_name"] == "Demo-Created"
        assert client.get("/contacts/4").status_code == 404
        listed = {c["id"] for c in client.get("/contacts", params={"page_size": "1000"}).json()["contacts"]}
        assert expected["created_id"] in listed and "4" not in listed and len(listed) == 50
        # ids and times go on after the restored ones
        again = client.post("/contacts", json={"given_name": "Second", **EMAIL}).json()
        assert int(again["id"]) == int(str(expected["created_id"])) + 1
        assert again["update_time"] > str(expected["update_time"])


def test_a_state_saved_for_other_data_is_not_loaded_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    with running_sandbox(small_config(contacts=50, state_file=str(path))) as handle, api(handle) as client:
        _edit(client)
    caplog.set_level(logging.WARNING, logger="keap_pipeline.sandbox")
    with running_sandbox(small_config(contacts=60, state_file=str(path))) as handle, api(handle) as client:
        assert client.get("/contacts/4").status_code == 200  # generated, not the other sandbox's deletion
    assert "it was saved by a sandbox with other data" in caplog.text
    assert json.loads(path.read_text())["dataset"]["contacts"] == 60  # replaced at stop


@pytest.mark.parametrize("content", ["not json", '{"format": 99}', '{"format": 1, "dataset": {}, "state": {}}',
                                     '{"format": 1, "dataset": {"seed": 7, "contacts": 50, "tags": null, '
                                     '"products": null, "orders": null, "subscriptions": null, "companies": null}, '
                                     '"state": {"overlays": {"contacts": [[3, 1, "not a record", null]]}, '
                                     '"next_ids": {}, "last_ms": 0}}'])
def test_an_unreadable_state_file_starts_from_the_generated_data(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    caplog.set_level(logging.WARNING, logger="keap_pipeline.sandbox")
    with running_sandbox(small_config(contacts=50, state_file=str(path))) as handle, api(handle) as client:
        assert client.get("/contacts/3").json()["id"] == "3"
        assert handle.state is not None and not handle.state.overlays["contacts"]  # nothing half-restored
    assert "not loading the saved sandbox state" in caplog.text


def test_a_state_file_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    # it was found at stop, as a traceback, with every change made meanwhile lost
    from keap_pipeline.sandbox.errors import SandboxStartError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SandboxStartError, match="cannot write there .*the changes would be lost at stop"):
        with running_sandbox(small_config(state_file=str(blocker / "state.json"))):
            pass
    assert list(tmp_path.iterdir()) == [blocker]  # nothing left behind, no probe file
