"""`keap-pipeline push`: flags, what it prints, exit statuses."""

from __future__ import annotations

import pytest

from keap_pipeline.cli import main
from keap_pipeline.sandbox.runner import SandboxHandle
from tests.outbound.conftest import API_KEY, app, one


def _push(handle: SandboxHandle, url: str, *flags: str) -> int:
    return main(["push", "--base-url", handle.base_url, "--database-url", url, "--no-pacing", *flags])


def test_push_prints_what_it_did_and_exits_by_outcome(
    synced: tuple[SandboxHandle, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handle, url = synced
    monkeypatch.setenv("KEAP_API_KEY", API_KEY)
    with app(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Cli' where keap_id = '1'")
        conn.execute("update public.sync_contacts set email = 'nope' where keap_id = '2'")
    assert _push(handle, url, "--entity", "contacts") == 1  # one item failed
    out = capsys.readouterr().out
    assert "1 updated" in out and "1 failed" in out
    assert "sync_contacts: 0 pending (0 due), 0 in flight, 0 held, 1 failed, 0 unsupported" in out
    assert "must be an email address" in out and "nope" not in out
    # fixed, and retried from the command line
    with app(url) as conn:
        conn.execute("update public.sync_contacts set email = 'ok@example.com' where keap_id = '2'")
    assert _push(handle, url, "--retry-failed", "--limit", "5") == 0
    out = capsys.readouterr().out
    assert "0 failed item(s) made pending again" in out and "1 updated" in out
    assert one(url, "select count(*) from public.sync_queue where status <> 'completed' and status <> 'cancelled'") == 0


def test_push_needs_the_keap_settings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KEAP_API_KEY", raising=False)
    monkeypatch.delenv("KEAP_BASE_URL", raising=False)
    assert main(["push", "--database-url", "postgresql://nobody@127.0.0.1:1/x"]) == 2
    assert "set KEAP_BASE_URL (or --base-url) and KEAP_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("KEAP_API_KEY", "k")
    assert main(["push", "--base-url", "http://127.0.0.1:1/crm/rest/v2", "--no-pacing", "--quota-share", "0.5",
                 "--database-url", "postgresql://nobody@127.0.0.1:1/x"]) == 2
    assert "--quota-share paces the push" in capsys.readouterr().err
