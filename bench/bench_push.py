"""The outbound push against the sandbox (its own process): a paced drain with Keap's limits on, coalescing, unpaced speed.

    .venv/bin/python -m bench.bench_push --database-url postgresql://postgres@127.0.0.1:5443/postgres \\
        [--contacts 10000] [--scale 10] [--senders 1 2 4] [--write]

Three measurements, each on a fresh migrated database and a fresh sandbox subprocess holding the
contacts, all synced first; then every contact is edited in one app statement (N queued updates):

1. **Limits on.** The sandbox enforces a personal access token's limits (10/s, 240/min), scaled by
   ``--scale`` (default 10: 100/s and 2400/min, so 10,000 updates take minutes, not three quarters
   of an hour; the limits' shape, and which one binds, stay Keap's: per minute). The pusher's client
   paces to the same scaled limits (``RateLimits(10*s, 240*s, ...)``) from the x-keap-* headers, as
   in production. Reported: requests, 429s, the requests the sandbox counted in each complete
   calendar minute (its fixed windows, as Keap counts) against the limit, and the rate over those
   minutes against the allowed rate.
2. **Coalescing.** Ten app edits of one contact, then a push: the requests it makes.
3. **Limits off.** The sandbox without limits, the client unpaced (``--no-pacing``), one pusher
   (``--senders`` clients side by side within it; each value given is one drain, default 1 2 4): updates
   per second of each drain.

Requests are counted and timed at the client's transport (every request that left, retries
included). Figures go to docs/benchmarks.md ("Outbound push") with --write.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from bench.common import (
    fresh_database,
    git_revision,
    machine,
    process_cpu,
    server_version,
    write_section,
)

API_KEY = "bench-push-key"


class CountingTransport(httpx.HTTPTransport):
    """An HTTP transport that records when each request left and what status came back."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, str, str, int]] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:  # noqa: D102 - httpx hook
        at = time.time()
        response = super().handle_request(request)
        with self._lock:
            self.sent.append((at, request.method, request.url.path, response.status_code))
        return response


def _cpu_self() -> float:
    """User + system CPU seconds of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _world(server_url: str, contacts: int, limits: Any) -> tuple[str, Any, Any]:
    """A migrated database, a sandbox subprocess with `contacts` contacts, all synced. Returns (url, handle, ctx)."""
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity
    from keap_pipeline.sandbox import SandboxConfig, running_sandbox

    url = fresh_database(server_url, "kp_bench_push")
    ctx = running_sandbox(SandboxConfig(port=0, contacts=contacts, api_key=API_KEY, limits=limits), subprocess_mode=True)
    handle = ctx.__enter__()
    with KeapClient(handle.base_url, ApiKeyAuth(API_KEY), pacing=False, timeout=60.0) as client:
        sync_entity(client, url, CONTACTS, loaders=1)
    return url, handle, ctx


def _edit_all(url: str) -> int:
    """One app statement editing every contact (as the owner: an app change, audited and queued)."""
    with psycopg.connect(url) as conn:
        conn.execute("update public.sync_contacts set first_name = 'Bench ' || keap_id")
        row = conn.execute("select count(*) from public.sync_queue where status = 'pending'").fetchone()
    return int(row[0]) if row else 0


def _push(
    handle: Any, url: str, *, paced_limits: Any | None, senders: int = 1, batch_size: int = 100, reader: str | None = None
) -> tuple[Any, CountingTransport, float]:
    """One drain. reader="own": the reads on a client of their own, as the CLI and Dagster push unpaced (a batch
    is sent while the next is prepared); "sender": the first sender reads too (one step after the other), as
    they push paced. None: as they would."""
    from keap_pipeline.keap import ApiKeyAuth, KeapClient, Pacer
    from keap_pipeline.outbound.push import PushSettings, push

    transport = CountingTransport()
    auth = ApiKeyAuth(API_KEY)

    def client() -> KeapClient:
        if paced_limits is None:
            return KeapClient(handle.base_url, auth, pacing=False, transport=transport, timeout=60.0)
        return KeapClient(handle.base_url, auth, pacer=pacer, transport=transport, timeout=60.0)

    pacer = Pacer(paced_limits) if paced_limits is not None else None
    # as keap-pipeline push runs it: a reader of its own when unpaced, the first sender when paced
    reader = reader or ("own" if paced_limits is None else "sender")
    sending = [client() for _ in range(senders)]
    reading = client() if reader == "own" else sending[0]
    clients = [*sending, reading] if reader == "own" else sending
    started = time.monotonic()
    try:
        report = push(reading, url, settings=PushSettings(batch_size=batch_size), senders=sending)
    finally:
        for c in clients:
            c.close()
    return report, transport, time.monotonic() - started


def limits_on(server_url: str, contacts: int, scale: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The paced drain with the sandbox's (scaled) limits on."""
    from keap_pipeline.keap import RateLimits as ClientLimits
    from keap_pipeline.sandbox import RateLimits

    per_second, per_minute = 10 * scale, 240 * scale
    url, handle, ctx = _world(server_url, contacts, RateLimits(per_second, per_minute, None))
    try:
        queued = _edit_all(url)
        time.sleep(61 - time.time() % 60)  # start at a calendar minute, after the sync's requests
        report, transport, seconds = _push(handle, url, paced_limits=ClientLimits(per_second, per_minute, 10**9))
    finally:
        ctx.__exit__(None, None, None)
    minutes = Counter(int(at // 60) for at, *_ in transport.sent)
    first, last = min(minutes), max(minutes)
    complete = [minutes[m] for m in range(first, last)]  # the last minute is partial
    throttled = sum(1 for *_, status in transport.sent if status == 429)
    result = {
        "queued": queued, "updated": report.updated, "failed": report.failed, "requests": len(transport.sent),
        "throttled": throttled, "seconds": seconds, "per_minute": per_minute, "per_second": per_second,
        "complete_minutes": complete,
        "share_of_allowed": (sum(complete) / (len(complete) * per_minute)) if complete else None,
    }
    say(f"limits on (x{scale}): {result}")
    return result


def coalescing(server_url: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Ten queued edits of one contact, one push."""
    from keap_pipeline.sandbox import RateLimits

    url, handle, ctx = _world(server_url, 100, RateLimits.off())
    try:
        for n in range(10):
            with psycopg.connect(url) as conn:
                conn.execute("update public.sync_contacts set first_name = %s where keap_id = '7'", (f"Edit {n}",))
        with psycopg.connect(url) as conn:
            items = conn.execute("select count(*) from public.sync_queue where status = 'pending'").fetchone()
        report, transport, _ = _push(handle, url, paced_limits=None)
    finally:
        ctx.__exit__(None, None, None)
    kinds = Counter(f"{method} {'/contacts' if path.endswith('/contacts') else '/contacts/{id}'}" for _, method, path, _ in transport.sent)
    result = {"edits": 10, "queue_items": items[0] if items else None, "requests": dict(kinds), "updated": report.updated}
    say(f"coalescing: {result}")
    return result


def limits_off(
    server_url: str, contacts: int, senders: int, batch_size: int, say: Callable[[str], None], reader: str = "own"
) -> dict[str, Any]:
    """The unpaced drain through one pusher."""
    from keap_pipeline.sandbox import RateLimits

    url, handle, ctx = _world(server_url, contacts, RateLimits.off())
    try:
        queued = _edit_all(url)
        mine, theirs = _cpu_self(), process_cpu(handle.pid)
        report, transport, seconds = _push(handle, url, paced_limits=None, senders=senders, batch_size=batch_size,
                                           reader=reader)
        mine, theirs = _cpu_self() - mine, process_cpu(handle.pid) - theirs
    finally:
        ctx.__exit__(None, None, None)
    result = {
        "queued": queued, "updated": report.updated, "failed": report.failed, "requests": len(transport.sent),
        "seconds": seconds, "updates_per_second": report.updated / seconds, "senders": senders,
        "batch_size": batch_size, "reader": reader, "pusher_cpu_ms_per_update": 1000 * mine / max(1, report.updated),
        "sandbox_cpu_ms_per_update": 1000 * theirs / max(1, report.updated),
        "load": os.getloadavg()[0],
    }
    say(f"limits off: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements; print them; with --write, put them in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (a database is created on it)")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--scale", type=int, default=10, help="the sandbox's limits are a PAT's times this")
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 2, 4],
                        help="clients sending side by side in the one pusher (limits off); several values: one drain each, in one run")
    parser.add_argument("--batch-size", type=int, default=100, help="items per claim in the limits-off drain")
    parser.add_argument("--readers", nargs="+", choices=["own", "sender"], default=["own", "sender"],
                        help="limits off: who reads, each one drain per --senders value, alternating: 'own' (a client"
                        " of its own: a batch sent while the next is prepared, as the CLI and Dagster push unpaced) or"
                        " 'sender' (the first sender, one step after the other; the pusher before it overlapped)")
    parser.add_argument("--skip-limits-on", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    say = print
    heading = f"{machine()}; {server_version(args.database_url)}; commit {git_revision()}"
    say(heading)
    on = None if args.skip_limits_on else limits_on(args.database_url, args.contacts, args.scale, say)
    same = coalescing(args.database_url, say)
    offs = []
    for i, n in enumerate(args.senders):
        for reader in args.readers if i % 2 == 0 else list(reversed(args.readers)):
            offs.append(limits_off(args.database_url, args.contacts, n, args.batch_size, say, reader=reader))
    if args.write:
        write_section("Outbound push", _markdown(heading, args, on, same, offs))
    return 0


def _markdown(
    heading: str, args: argparse.Namespace, on: dict[str, Any] | None, same: dict[str, Any], offs: list[dict[str, Any]]
) -> str:
    lines = [
        f"Measured {heading}. `python -m bench.bench_push --contacts {args.contacts} --scale {args.scale}"
        f" --senders {' '.join(str(n) for n in args.senders)} --readers {' '.join(args.readers)} --batch-size {args.batch_size}`: the sandbox in its own process, a fresh migrated database per part, every"
        " contact synced first and then edited by one app statement (one queued update each).",
        "",
    ]
    if on is not None:
        minutes = ", ".join(str(m) for m in on["complete_minutes"])
        lines += [
            f"- **Limits on** (a PAT's 10/s and 240/min scaled x{args.scale}: {on['per_second']}/s, {on['per_minute']}/min;"
            " the pusher's client paced to the same limits): "
            f"{on['updated']:,} of {on['queued']:,} updates in {on['seconds']:.0f} s, {on['requests']:,} requests"
            f" (one listing per 100 items for the conflict check), **{on['throttled']} answered 429**; requests per"
            f" complete calendar minute (the sandbox's fixed windows): {minutes} of {on['per_minute']} allowed,"
            f" **{100 * (on['share_of_allowed'] or 0):.1f}% of the allowed rate**.",
        ]
    lines += [
        f"- **Coalescing**: {same['edits']} app edits of one contact left {same['queue_items']} queue item; the push"
        f" made {sum(same['requests'].values())} requests: {same['requests']} (one PATCH; the listing is the"
        " conflict check, shared by every item of a batch).",
        f"- **Limits off** (unpaced, one pusher process, batches of {args.batch_size}; `senders` = clients sending side"
        " by side within it; `reads` = who reads and marks: `own` a client of its own, so that a batch is sent while"
        " the next is claimed, read and marked (as `keap-pipeline push` and Dagster run it unpaced), `sender` the first"
        " sender, one step after the other (as they run it paced, and the pusher before the overlap); one drain of every"
        " contact each, in this order):",
        "",
        "| senders | reads | updates | seconds | updates/s | requests | pusher CPU ms per update | sandbox CPU ms per update | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {off['senders']} | {off['reader']} | {off['updated']:,} | {off['seconds']:.1f} | **{off['updates_per_second']:,.0f}** |"
        f" {off['requests']:,} | {off['pusher_cpu_ms_per_update']:.2f} | {off['sandbox_cpu_ms_per_update']:.2f} | {off['load']:.1f} |"
        for off in offs
    ]
    lines += [
        "",
        "The pusher's CPU is the client, planning and its database round trips (PostgreSQL's own work not included).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
