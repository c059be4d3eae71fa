"""`make fuzz`: issue 9's property ("no record can stop a run") on a long randomised pass.

    .venv/bin/python -m bench.fuzz_records [--examples 400] [--seed S] [--database-url URL]

The generators, the sandbox serving and every invariant are tests/hostile.py's, as in
tests/property (which `make test` runs derandomized and short); here the seed is random (printed,
so a failure can be rerun with --seed), listings are longer and nothing is skipped. After every
example: every record read, each loaded exactly or a dead letter holding its exact bytes, nothing
lost or duplicated, replays as expected, a re-run writes nothing. Without --database-url it runs
on a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=400, help="hypothesis examples (default 400)")
    parser.add_argument("--max-records", type=int, default=120, help="records per example at most (default 120)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    parser.add_argument("--database-url", help="a PostgreSQL server; a fresh database fuzz_records is made on it")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    from bench.common import fresh_database
    from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox
    from tests import hostile
    from tests.pipeline.conftest import API_KEY, client_for

    home: Path | None = None
    if args.database_url:
        server = args.database_url
    else:
        from keap_pipeline.db import embedded

        home = Path(tempfile.mkdtemp(prefix="keap-fuzz-"))
        server = embedded.start(home).url
    classes: Counter[str] = Counter()
    totals = hostile.Outcome()
    examples = 0
    started = time.monotonic()
    print(f"fuzz: seed {seed}, {args.examples} examples of up to {args.max_records} records", flush=True)
    try:
        url = fresh_database(server, "fuzz_records")
        config = SandboxConfig(port=0, contacts=0, api_key=API_KEY, limits=RateLimits.off())
        with running_sandbox(config) as handle:

            @hypothesis_seed(seed)
            @settings(max_examples=args.examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(hostile.example(classes, min_records=10, max_records=args.max_records))
            def run(drawn: tuple[list[hostile.Item], tuple[int, int, int]]) -> None:
                nonlocal examples
                items, (page_size, pages_per_batch, loaders) = drawn
                totals.add(hostile.run_example(url, handle, client_for, items, page_size=page_size,
                                               pages_per_batch=pages_per_batch, loaders=loaders))
                examples += 1
                if examples % 25 == 0:
                    print(f"  {examples} examples, {totals.records} records, {time.monotonic() - started:.0f}s", flush=True)

            try:
                run()
            except Exception:
                print(f"fuzz: FAILED after {examples} examples (rerun with --seed {seed})", file=sys.stderr)
                raise
    finally:
        if home is not None:
            from keap_pipeline.db import embedded

            embedded.destroy(home)
            shutil.rmtree(home, ignore_errors=True)
    print(
        f"fuzz: {totals.records} records tried in {examples} example runs (seed {seed}, "
        f"{time.monotonic() - started:.0f}s): {totals.loaded} loaded exactly, {totals.dead} dead letters "
        f"({totals.refused_then_replayed} refused by PostgreSQL, replayed once the constraint was dropped); "
        f"none lost, none duplicated, every invariant held after every example"
    )
    print("hostile classes drawn: " + ", ".join(f"{name} ×{n}" for name, n in sorted(classes.items())))
    missing = [c for c in hostile.REQUIRED_CLASSES if not any(d.startswith(c) for d in classes)]
    if missing:
        print(f"fuzz: (a short run) classes never drawn: {missing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
