"""Benchmark: the sandbox's list pages rendered in-process (no HTTP, no client), records/s per listing.

Run: .venv/bin/python -m bench.bench_listing [--contacts 200000] [--orders 20000]
         [--subscriptions 20000] [--products 2000] [--rounds 5] [--changed 100] [--baseline DIR] [--write]
Each listing pages every record of an entity through Lister.page_and_token (page_size 1000, the
prefetcher not used; timed in CPU seconds of that thread): contacts as bench_paging asks for them (a time window over all, ordered by
update_time, the pipeline's fields) and in id order; orders in id order and by modification_time
in a window; subscriptions by id and by `id>` (the pipeline's resume form); products by id. The "changed" rows
first change `--changed` records of that entity through SandboxState (records spread over the
ids), so the overlay is merged in; the others leave every overlay empty.

With --baseline DIR (a checkout of the package to compare with, e.g.
`git archive <rev> keap_pipeline | tar -x -C DIR`), each round runs the baseline and this tree,
each in its own process (which goes first alternates), so both are measured side by side under
the same load; the table gives the best and the median of the rounds. Listings the baseline cannot run (its sandbox lacks
update_record) are left blank for it. With --write the table replaces the "Sandbox listing
(in-process)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.listing")
TITLE = "Sandbox listing (in-process)"
WINDOW = "{lo}==2000-01-01T00:00:00.000Z;{hi}==2100-01-01T00:00:00.000Z"


def listings(changed: int) -> list[tuple[str, str, dict[str, str], int]]:
    """(label, entity, query parameters, records to change first) of every measured listing."""
    from keap_pipeline.entities import CONTACT_FIELDS

    fields = ",".join(CONTACT_FIELDS)
    contacts_time = {"filter": WINDOW.format(lo="start_update_time", hi="end_update_time"),
                     "order_by": "update_time asc", "fields": fields}
    orders_time = {"filter": WINDOW.format(lo="modified_since_time", hi="modified_until_time"),
                   "order_by": "modification_time asc"}
    out = [
        ("contacts, window by update_time", "contacts", contacts_time, 0),
        ("contacts, by id", "contacts", {"fields": fields}, 0),
        ("orders, by id", "orders", {}, 0),
        ("orders, window by modification_time", "orders", orders_time, 0),
        ("subscriptions, by id", "subscriptions", {}, 0),
        ("subscriptions, id>0", "subscriptions", {"filter": "id>0"}, 0),
        ("products, by id", "products", {}, 0),
    ]
    if changed:
        out += [
            (f"contacts, window by update_time, {changed} changed", "contacts", contacts_time, changed),
            (f"orders, window by modification_time, {changed} changed", "orders", orders_time, changed),
            (f"subscriptions, by id, {changed} changed", "subscriptions", {}, changed),
        ]
    return out


def _change(state: Any, entity: str, count: int) -> bool:
    """Change `count` records of an entity spread over its ids; False if this sandbox cannot."""
    n = state.data.count(entity)
    step = max(1, n // count)
    for ident in range(1, n + 1, step)[:count]:
        if hasattr(state, "update_record"):
            state.update_record(entity, ident, {"bench": ident})
        elif entity == "contacts":
            state.update_contact(ident, {"job_title": f"bench {ident}"})
        else:
            return False
    return True


def measure_all(counts: dict[str, int], changed: int, seed: int) -> dict[str, float | None]:
    """Records per CPU second of every listing in this process (None: not supported by this package).

    CPU time of this thread, not wall time: the page is rendered on this thread alone, and on a
    shared machine wall time mostly measures the other work.
    """
    from keap_pipeline.sandbox import RateLimits, SandboxConfig
    from keap_pipeline.sandbox.entities import ENTITIES
    from keap_pipeline.sandbox.listing import Lister
    from keap_pipeline.sandbox.state import SandboxState

    results: dict[str, float | None] = {}
    for label, entity, params, to_change in listings(changed):
        state = SandboxState(SandboxConfig(port=0, seed=seed, limits=RateLimits.off(), **counts))
        try:
            if to_change and not _change(state, entity, to_change):
                results[label] = None
                continue
            spec = ENTITIES[entity]
            seconds, records, token = 0.0, 0, ""
            while True:
                query = {**params, "page_size": "1000", **({"page_token": token} if token else {})}
                started = time.thread_time()
                body, token = Lister(state, spec, query).page_and_token()
                seconds += time.thread_time() - started
                records += len(json.loads(body)[spec.list_key])
                if not token:
                    break
            expected = state.data.count(entity)
            if records != expected:
                raise SystemExit(f"{label}: {records} records listed, {expected} expected")
            results[label] = records / seconds
        finally:
            state.prefetcher.close()
    return results


def run_child(args: argparse.Namespace, path: str | None) -> dict[str, float | None]:
    """measure_all in a fresh process, importing keap_pipeline from `path` (None: this tree)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (path or root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, __file__, "--one", "--contacts", str(args.contacts), "--orders", str(args.orders),
           "--subscriptions", str(args.subscriptions), "--products", str(args.products), "--changed", str(args.changed), "--seed", str(args.seed)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)  # noqa: S603 - this script
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(table: dict[str, dict[str, list[float | None]]], trees: list[str], args: argparse.Namespace) -> str:
    """The markdown section: median records/s per listing and tree."""
    from bench.common import git_revision, machine

    head = " | ".join(f"{t}: best (median) records/CPU-s" for t in trees)
    lines = [
        f"Measured {machine()}, commit {git_revision()}, with `python -m bench.bench_listing --contacts {args.contacts} "
        f"--orders {args.orders} --subscriptions {args.subscriptions} --products {args.products} --rounds {args.rounds} --changed {args.changed}"
        + (" --baseline DIR`" if args.baseline else "`") + ".",
        "Server side only: every page of each listing rendered by `Lister.page_and_token` in-process (page_size",
        "1000, no HTTP, no prefetch), timed in CPU seconds of the rendering thread (time.thread_time: the",
        "machine is shared with other work, which wall time would measure); the best and the median of the",
        "rounds, baseline and this tree alternating in fresh processes (the best is the least disturbed run).",
        "Compare columns of one table, not across tables.",
        "",
        f"| listing | {head} |",
        "| --- |" + " ---: |" * len(trees),
    ]
    for label, per_tree in table.items():
        cells = []
        for tree in trees:
            values = [v for v in per_tree.get(tree, []) if v is not None]
            cells.append(f"{max(values):,.0f} ({statistics.median(values):,.0f})" if values else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the rounds, log the table, optionally write it into docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--changed", type=int, default=100, help="records changed first in the 'changed' rows (0: none)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", default=None, help="directory holding the keap_pipeline package to compare with")
    parser.add_argument("--label", default="baseline", help="column name of the baseline")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child: one measurement, JSON out
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.one:
        counts = {"contacts": args.contacts, "orders": args.orders, "subscriptions": args.subscriptions,
                  "products": args.products}
        sys.stdout.write(json.dumps(measure_all(counts, args.changed, args.seed)) + "\n")
        return
    trees = ([args.label] if args.baseline else []) + ["this tree"]
    table: dict[str, dict[str, list[float | None]]] = {}
    for round_no in range(args.rounds):
        for tree in trees if round_no % 2 == 0 else trees[::-1]:
            results = run_child(args, args.baseline if tree != "this tree" else None)
            log.info("round %d, %s: %s", round_no + 1, tree, {k: (round(v) if v else v) for k, v in results.items()})
            for label, rate in results.items():
                table.setdefault(label, {}).setdefault(tree, []).append(rate)
    section = render(table, trees, args)
    log.info("\n%s", section)
    if args.write:
        from bench.common import write_section

        write_section(TITLE, section)


if __name__ == "__main__":
    main()
