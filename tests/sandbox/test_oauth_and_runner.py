"""The OAuth token endpoint, the subprocess runner, and the `keap-pipeline sandbox` arguments."""

from __future__ import annotations

import argparse

import httpx
import pytest

from keap_pipeline.sandbox import (
    Faults,
    RateLimits,
    SandboxConfig,
    add_arguments,
    config_from_args,
    running_sandbox,
)
from keap_pipeline.sandbox.errors import SandboxConfigError
from tests.sandbox.conftest import API_KEY, small_config

CLIENT = ("sandbox-client", "sandbox-secret")


def _refresh(handle, token: str) -> httpx.Response:
    return httpx.post(handle.token_url, data={"grant_type": "refresh_token", "refresh_token": token}, auth=CLIENT)


def test_refresh_rotates_and_the_old_refresh_token_dies(sandbox) -> None:
    first = _refresh(sandbox, "sandbox-refresh-0")
    assert first.status_code == 200
    pair = first.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] > 0
    assert pair["refresh_token"] != "sandbox-refresh-0"
    again = _refresh(sandbox, "sandbox-refresh-0")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    with httpx.Client(base_url=sandbox.base_url) as client:
        ok = client.get("/tags", headers={"Authorization": f"Bearer {pair['access_token']}"})
        sandbox.state.expire_access_tokens()
        expired = client.get("/tags", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert ok.status_code == 200 and expired.status_code == 401
    assert _refresh(sandbox, pair["refresh_token"]).status_code == 200


def test_token_endpoint_rejects_a_wrong_client(sandbox) -> None:
    response = httpx.post(sandbox.token_url, data={"grant_type": "refresh_token", "refresh_token": "x"},
                          auth=("sandbox-client", "wrong"))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_subprocess_mode_serves_and_stops() -> None:
    config = small_config(contacts=10, oauth_client_secret="sub-secret", oauth_refresh_token="sub-refresh")
    with running_sandbox(config, subprocess_mode=True) as handle:
        assert handle.state is None and handle.pid
        response = httpx.get(handle.base_url + "/contacts", headers={"X-Keap-API-Key": API_KEY})
        assert response.status_code == 200 and len(response.json()["contacts"]) == 10
        # the secrets reached the subprocess (by environment)
        token = httpx.post(handle.token_url, data={"grant_type": "refresh_token", "refresh_token": "sub-refresh"},
                           auth=("sandbox-client", "sub-secret"))
        assert token.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.base_url + "/contacts", timeout=2)


def test_the_start_line_names_a_made_up_key_and_hides_any_other(capfd: pytest.CaptureFixture[str]) -> None:
    from keap_pipeline.sandbox.config import DEMO_API_KEY

    for key, says in ((DEMO_API_KEY, f"accepting API key {DEMO_API_KEY!r}"),
                      ("KeapAK-maybe-real-SECRET", "accepting the API key in KEAP_API_KEY (not shown)")):
        with running_sandbox(small_config(contacts=1, api_key=key), subprocess_mode=True) as handle:
            assert httpx.get(handle.base_url + "/tags", headers={"X-Keap-API-Key": key}).status_code == 200
        err = capfd.readouterr().err
        assert says in err, err
        assert "KeapAK-maybe-real-SECRET" not in err
        # the subprocess starts without runpy's warning about a module imported before it runs
        assert "RuntimeWarning" not in err


def test_cli_arguments_build_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEAP_API_KEY", "from-env")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--port", "0", "--contacts", "20", "--seed", "5", "--no-limits",
                                                 "--error-share", "0.1", "--slow-every", "4"]))
    assert (config.port, config.contacts, config.seed) == (0, 20, 5)
    assert config.limits == RateLimits.off() and config.faults.error_share == 0.1 and config.faults.slow_every == 4
    assert config.api_key == "from-env" and "from-env" not in repr(config)
    default = config_from_args(parser.parse_args([]))
    assert default.limits == RateLimits() and default.port == 8765


@pytest.mark.parametrize("changes", [{"host": "0.0.0.0"}, {"contacts": -1}, {"port": 70000},
                                     {"faults": Faults(error_share=1.0)}])
def test_bad_settings_are_refused(changes: dict) -> None:
    with pytest.raises(SandboxConfigError):
        SandboxConfig(**changes)


def test_secrets_stay_out_of_logs_reprs_and_the_command_line(start_sandbox, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from keap_pipeline.sandbox.runner import config_to_json

    caplog.set_level(logging.DEBUG, logger="keap_pipeline.sandbox")
    handle = start_sandbox(oauth_client_secret="s3cret-client", oauth_refresh_token="s3cret-refresh")
    httpx.get(handle.base_url + "/tags", headers={"X-Keap-API-Key": API_KEY})
    httpx.get(handle.base_url + "/tags", headers={"X-Keap-API-Key": "wrong-" + API_KEY})
    pair = httpx.post(handle.token_url, data={"grant_type": "refresh_token", "refresh_token": "s3cret-refresh"},
                      auth=("sandbox-client", "s3cret-client")).json()
    shown = caplog.text + repr(handle) + repr(handle.state.config) + config_to_json(handle.state.config)
    for secret in (API_KEY, "s3cret-client", "s3cret-refresh", pair["access_token"], pair["refresh_token"]):
        assert secret not in shown
