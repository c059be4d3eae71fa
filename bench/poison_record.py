"""Issue 9's scenario end to end: one contact whose given_name is a lone UTF-16 surrogate escape
("\\ud83d", half an emoji) among N sandbox contacts, through the real `keap-pipeline` commands.

    .venv/bin/python -m bench.poison_record --contacts 50000 [--database-url URL]

1. `keap-pipeline sync contacts`: exits 0, N-1 contacts loaded, one open dead letter (given_name,
   lone surrogate) holding the record's exact bytes; `dead-letters list` shows it.
2. `keap-pipeline dead-letters replay`: still failing (the stored record cannot load), nothing written.
3. The contact is fixed in Keap (PATCH /contacts/{id} through the sandbox's API), and the next
   `keap-pipeline sync contacts` exits 0: N contacts loaded, the dead letter closed (replayed).

Without --database-url it runs on a throwaway embedded PostgreSQL. Prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

API_KEY = "poison-key"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "keap_pipeline.cli", *args], capture_output=True, text=True, env=env, timeout=1800
    )


def scenario(database_url: str, contacts: int, poisoned: int | None = None) -> dict[str, Any]:
    """Run the scenario on a migrated, empty database; returns what each step produced.

    Args:
        database_url: a migrated database with no contacts.
        contacts: how many contacts the sandbox serves.
        poisoned: the contact whose given_name becomes a lone surrogate (default: the middle one).

    Returns:
        The figures (exit codes, counts, the dead letter).
    """
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

    ident = poisoned or contacts // 2
    env = {k: v for k, v in os.environ.items() if k != "KEAP_PIPELINE_DATABASE_URL"}
    out: dict[str, Any] = {"contacts": contacts, "poisoned_id": str(ident)}
    config = SandboxConfig(port=0, contacts=contacts, api_key=API_KEY, limits=RateLimits.off())
    with running_sandbox(config) as handle:
        state = handle.state
        assert state is not None
        record = state.contact(ident)
        assert record is not None
        record["given_name"] = "\ud83d"
        # the JSON text Keap sends: ASCII escapes, the lone surrogate as "\ud83d" (json.dumps writes it so)
        raw = json.dumps(record, separators=(",", ":")).encode()
        assert b'"given_name":"\\ud83d"' in raw
        state.put_raw_contact(raw, ident=ident, time_ms=state.contact_time(ident))
        env.update(KEAP_BASE_URL=handle.base_url, KEAP_API_KEY=API_KEY)

        started = time.perf_counter()
        first = _cli(env, "sync", "contacts", "--no-pacing", "--database-url", database_url)
        out["first_sync"] = {"exit": first.returncode, "seconds": round(time.perf_counter() - started, 1),
                             "summary": first.stdout.strip().splitlines()[-2:], "stderr_tail": first.stderr[-2000:]}
        with psycopg.connect(database_url) as conn:
            out["loaded_after_first"] = conn.execute("select count(*) from public.sync_contacts").fetchone()[0]  # type: ignore[index]
            letters = conn.execute(
                "select id, keap_id, status, field, reason, record_bytes from keap_pipeline.dead_letters"
            ).fetchall()
        out["letters_after_first"] = [
            {"id": i, "keap_id": k, "status": s, "field": f, "reason": r, "holds_the_exact_bytes": bytes(b) == raw}
            for i, k, s, f, r, b in letters
        ]
        listing = _cli(env, "dead-letters", "list", "--database-url", database_url)
        out["list"] = {"exit": listing.returncode, "lines": listing.stdout.strip().splitlines()}
        replay = _cli(env, "dead-letters", "replay", "--database-url", database_url)
        out["replay_before_fix"] = {"exit": replay.returncode, "stdout": replay.stdout.strip().splitlines()}

        # fixed in Keap: the contact is saved again with a whole given_name
        with KeapClient(handle.base_url, ApiKeyAuth(API_KEY), pacing=False) as client:
            client.update_contact(str(ident), {"given_name": "Fixed \U0001f600"}, update_mask=["given_name"])
        second = _cli(env, "sync", "contacts", "--no-pacing", "--database-url", database_url)
        out["second_sync"] = {"exit": second.returncode, "summary": second.stdout.strip().splitlines()[-1:],
                              "stderr_tail": second.stderr[-2000:]}
        with psycopg.connect(database_url) as conn:
            out["loaded_after_fix"] = conn.execute("select count(*) from public.sync_contacts").fetchone()[0]  # type: ignore[index]
            out["given_name_after_fix"] = conn.execute(
                "select first_name from public.sync_contacts where keap_id = %s", (str(ident),)
            ).fetchone()[0]  # type: ignore[index]
            out["letters_after_fix"] = conn.execute(
                "select keap_id, status, replayed_at is not null from keap_pipeline.dead_letters"
            ).fetchall()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--database-url", help="a PostgreSQL server; a fresh database poison_record is made on it")
    args = parser.parse_args(argv)
    from bench.common import fresh_database

    home: Path | None = None
    if args.database_url:
        server = args.database_url
    else:
        from keap_pipeline.db import embedded

        home = Path(tempfile.mkdtemp(prefix="keap-poison-"))
        server = embedded.start(home).url
    try:
        url = fresh_database(server, "poison_record")
        out = scenario(url, args.contacts)
    finally:
        if home is not None:
            from keap_pipeline.db import embedded

            embedded.destroy(home)
            shutil.rmtree(home, ignore_errors=True)
    for key in ("first_sync", "second_sync"):
        out[key].pop("stderr_tail", None) if out[key]["exit"] == 0 else None
    print(json.dumps(out, indent=2, default=str))
    ok = (
        out["first_sync"]["exit"] == 0 and out["loaded_after_first"] == args.contacts - 1
        and [d["status"] for d in out["letters_after_first"]] == ["open"]
        and out["second_sync"]["exit"] == 0 and out["loaded_after_fix"] == args.contacts
        and [s for _, s, _ in out["letters_after_fix"]] == ["replayed"]
    )
    print(f"{'OK' if ok else 'FAILED'}: {out['loaded_after_first']} of {args.contacts} loaded with one open dead letter; "
          f"after the fix {out['loaded_after_fix']} loaded and the letter {out['letters_after_fix']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
