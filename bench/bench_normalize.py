"""Benchmark: normalize_contacts throughput on realistic Keap contact records (target >= 200k/s).

Run: .venv/bin/python bench/bench_normalize.py [--records 1000000] [--batch 10000] [--compare REF]
Records are generated up front (not timed), shaped like the spec's Contact schema, and
normalized in batches the size the pipeline would hand over; the figures go to stdout.
--compare REF also times normalize/contacts.py as it is at git REF (e.g. main), loaded from
`git show` beside today's, the two alternating over --rounds rounds in one process (side by side:
same records, same machine state); each round's and the best figure of each are printed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keap_pipeline.normalize.contacts import normalize_contacts

_GIVEN = ["John", "Zoë", "Łukasz", "Ana María", "李", "Søren", "Amélie", "O'Brien", "Chloé 🎉"]
_FAMILY = ["Smith", "Müller", "García", "Nguyễn", "王", "Ødegaard", None]
_BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _contact(i: int, rng: random.Random) -> dict[str, Any]:
    """One contact shaped like Keap's Contact (only the requested fields, as Keap sends them)."""
    created = _BASE + timedelta(seconds=rng.randrange(0, 30_000_000))
    updated = created + timedelta(milliseconds=rng.randrange(0, 10_000_000_000))
    record: dict[str, Any] = {
        "id": str(1000 + i),
        "given_name": rng.choice(_GIVEN),
        "family_name": rng.choice(_FAMILY),
        "create_time": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "update_time": updated.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tag_ids": [str(rng.randrange(1, 500)) for _ in range(rng.randrange(0, 6))],
        "custom_fields": [
            {"id": "7", "content": rng.choice(["Gold", "Silver", None])},
            {"id": "12", "content": rng.randrange(0, 10_000)},
            {"id": "15", "content": {"opted": rng.random() < 0.5, "channels": ["email", "sms"]}},
        ],
    }
    if rng.random() < 0.9:  # some Keap contacts have only a phone
        record["email_addresses"] = [
            {"email": f"user{i}@example.com", "field": "EMAIL1", "is_opt_in": True},
        ] + ([{"email": f"alt{i}@example.org", "field": "EMAIL2"}] if rng.random() < 0.2 else [])
    if rng.random() < 0.7:
        phone: dict[str, Any] = {"number": f"+1 555 {i % 10_000_000:07d}", "field": "PHONE1", "type": "Work"}
        if rng.random() < 0.1:
            phone["extension"] = str(rng.randrange(1, 999))
        record["phone_numbers"] = [phone]
    if rng.random() < 0.5:
        record["company"] = {"id": str(rng.randrange(1, 5000)), "company_name": "Thryv, Inc."}
    return record


def _at_ref(ref: str) -> Callable[..., Any]:
    """normalize_contacts as normalize/contacts.py is at git `ref` (its imports resolve to today's package)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{ref}:keap_pipeline/normalize/contacts.py"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "contacts_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("contacts_at_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["contacts_at_ref"] = module
    spec.loader.exec_module(module)
    return module.normalize_contacts  # type: ignore[no-any-return]


def _time(normalize: Callable[..., Any], records: list[dict[str, Any]], batch: int) -> tuple[float, int, int]:
    fetched_at = datetime.now(UTC)
    rows = rejected = 0
    start = time.perf_counter()
    for offset in range(0, len(records), batch):
        result = normalize(records[offset : offset + batch], fetched_at=fetched_at)
        rows += result.frame.height
        rejected += len(result.rejected)
    return time.perf_counter() - start, rows, rejected


def main() -> None:
    """Generate the records, time normalize_contacts over them in batches, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compare", metavar="REF", help="also time normalize_contacts as of this git ref")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --compare")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    records = [_contact(i, rng) for i in range(args.records)]
    generated = time.perf_counter() - t0
    # The pipeline holds one batch at a time, not a million records: freeze the generated pool so
    # the cyclic collector does not rescan it on every collection, which would bill the
    # benchmark's own fixture to the normalizer.
    gc.collect()
    gc.freeze()
    print(f"records: {len(records):,} (generated in {generated:.1f} s), batch size {args.batch:,}")
    if args.compare:
        # interleaved batch by batch (old, new, new, old, ...), so that a load spike on this shared
        # machine is billed to both alike; the total of each over every round
        candidates = [_at_ref(args.compare), normalize_contacts]
        totals = [0.0, 0.0]
        fetched_at = datetime.now(UTC)
        for n in range(args.rounds):
            for k, offset in enumerate(range(0, len(records), args.batch)):
                chunk = records[offset : offset + args.batch]
                for i in ((0, 1) if (n + k) % 2 == 0 else (1, 0)):
                    start = time.perf_counter()
                    candidates[i](chunk, fetched_at=fetched_at)
                    totals[i] += time.perf_counter() - start
        count = len(records) * args.rounds
        for name, total in zip((args.compare, "working tree"), totals, strict=True):
            print(f"{name}: {total:.2f} s for {count:,} records, {count / total:,.0f} records/s")
        print(f"working tree vs {args.compare}: {(totals[0] / totals[1] - 1) * 100:+.1f}% records/s")
        return
    elapsed, rows, rejected = _time(normalize_contacts, records, args.batch)
    print(f"rows: {rows:,}, rejected: {rejected:,}")
    print(f"normalize: {elapsed:.2f} s, {len(records) / elapsed:,.0f} records/s")


if __name__ == "__main__":
    main()
