"""Benchmark: the Keap client paging the local sandbox (subprocess, pacing off): records/s and peak memory.

Run: .venv/bin/python bench/bench_paging.py [--contacts 100000 1000000] [--write]
The sandbox runs in its own process (client and server each get a core). Each run pages every
contact through a time window covering all of them, ordered by update_time, with the fields the
pipeline asks for, checks every id arrived exactly once, and samples both processes' RSS.
With --write the figures replace the "Client + sandbox paging" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from keap_pipeline.entities import CONTACT_FIELDS
from keap_pipeline.keap import ApiKeyAuth, KeapClient
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

log = logging.getLogger("bench.paging")
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "## Client + sandbox paging"
KEY = "bench-key"
MINIMAL_FIELDS = ("id", "update_time")


@dataclass
class Run:
    """The figures of one benchmark run."""

    contacts: int
    fields: str
    seconds: float
    records: int
    duplicates: int
    missing: int
    pages: int
    load: str
    client_peak_mb: float
    server_start_mb: float
    server_peak_mb: float
    server_end_mb: float
    server_mid_mb: float

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples a process's RSS every 50 ms (peak, and the value halfway through)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples.append(_rss_mb(self.pid))
            except OSError:
                return


def page_all(contacts: int, fields: tuple[str, ...], seed: int, gc_threshold: int | None = None) -> Run:
    """Start a sandbox subprocess with `contacts` contacts and page all of them once.

    gc_threshold: if given, the client process's generation-0 GC threshold while paging (the
    cyclic GC re-walks the many small dicts json.loads builds; this shows what that costs).
    """
    config = SandboxConfig(port=0, contacts=contacts, seed=seed, api_key=KEY, limits=RateLimits.off())
    with running_sandbox(config, subprocess_mode=True) as handle:
        seen = bytearray(contacts + 1)  # one byte per id: checking exactly-once must not cost memory
        duplicates = records = pages = 0
        sampler = RssSampler(handle.pid)
        server_start = _rss_mb(handle.pid)
        sampler.start()
        since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        saved_gc = gc.get_threshold()
        if gc_threshold is not None:
            gc.set_threshold(gc_threshold, 50, 100)
        load_before = os.getloadavg()[0]
        with KeapClient(handle.base_url, auth=ApiKeyAuth(KEY), pacing=False, timeout=60.0) as client:
            started = time.perf_counter()
            for page in client.iter_pages("contacts", fields=list(fields), since=since, until=until,
                                          order_by="update_time asc", page_size=1000):
                pages += 1
                for record in page.records:
                    ident = int(record["id"])
                    duplicates += seen[ident]
                    seen[ident] = 1
                records += len(page.records)
            seconds = time.perf_counter() - started
        gc.set_threshold(*saved_gc)
        load = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
        sampler.stop.set()
        sampler.join()
        server_end = _rss_mb(handle.pid)
        server_peak = _rss_mb(handle.pid, "VmHWM")
    samples = sampler.samples or [server_end]
    return Run(
        contacts=contacts,
        fields=("pipeline" if fields != MINIMAL_FIELDS else "id,update_time")
        + (f" (client gc threshold {gc_threshold:,})" if gc_threshold else ""),
        load=load,
        seconds=seconds,
        records=records,
        duplicates=duplicates,
        missing=contacts - sum(seen),
        pages=pages,
        client_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        server_start_mb=server_start,
        server_peak_mb=server_peak,
        server_end_mb=server_end,
        server_mid_mb=samples[len(samples) // 2],
    )


def machine() -> str:
    """nproc, CPU model and Python version, for the record."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs (nproc {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), {model}, Python {platform.python_version()}"


def render(runs: list[Run], note: str) -> str:
    """The markdown section with the figures."""
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    lines = [
        HEADING,
        "",
        f"Measured {date} on {machine()} with `bench/bench_paging.py`.",
        "One `KeapClient` (httpx, pacing off) pages every contact of a sandbox running in a subprocess",
        "(`--no-limits`), page_size 1000, a time window over all of them, `order_by=update_time asc`;",
        "\"pipeline\" = the fields `keap_pipeline.entities.CONTACT_FIELDS` asks for (custom_fields included).",
        "Every run checks that each id arrived exactly once. Each run is its own client process (client peak",
        "RSS = its ru_maxrss); the server's RSS is sampled every 50 ms. The machine is",
        "shared with other work: the 1-minute load average before / after each run is given.",
        "",
        "| contacts | fields | records/s | seconds | pages | exactly once | load | client peak RSS MB | server RSS start / mid / end MB | server peak (VmHWM) MB |",
        "| ---: | --- | ---: | ---: | ---: | --- | --- | ---: | --- | ---: |",
    ]
    for r in runs:
        once = "yes" if r.duplicates == 0 and r.missing == 0 and r.records == r.contacts else f"NO ({r.duplicates} dup, {r.missing} missing)"
        lines.append(
            f"| {r.contacts:,} | {r.fields} | {r.rate:,.0f} | {r.seconds:.1f} | {r.pages:,} | {once} | {r.load} | {r.client_peak_mb:.0f} | "
            f"{r.server_start_mb:.0f} / {r.server_mid_mb:.0f} / {r.server_end_mb:.0f} | {r.server_peak_mb:.0f} |"
        )
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_section(section: str, doc: Path = DOC) -> None:
    """Replace (or append) the section in docs/benchmarks.md, leaving other sections alone."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    start = text.find(HEADING)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def run_isolated(contacts: int, minimal: bool, seed: int, gc_threshold: int | None) -> Run:
    """page_all in a fresh Python process, so the client's peak RSS belongs to this run alone."""
    cmd = [sys.executable, __file__, "--one", str(contacts), "--seed", str(seed)]
    if minimal:
        cmd.append("--minimal")
    if gc_threshold:
        cmd += ["--gc-threshold", str(gc_threshold)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: S603 - this script
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Run the benchmark for each size and field set; log the figures; optionally write them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minimal", action="store_true", help="also run with fields=id,update_time")
    # (in a --one child, --minimal and --gc-threshold describe that single run)
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="also run the pipeline fields with this client gen-0 GC threshold")
    parser.add_argument("--write", action="store_true", help=f"write the figures into {DOC}")
    parser.add_argument("--note", default="", help="a line of remarks appended to the section")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: one run, JSON out
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.one is not None:
        run = page_all(args.one, MINIMAL_FIELDS if args.minimal else CONTACT_FIELDS, args.seed, args.gc_threshold)
        sys.stdout.write(json.dumps(dataclasses.asdict(run)) + "\n")
        return
    runs = []
    for n in args.contacts:
        variants: list[tuple[bool, int | None]] = [(False, None)]
        if args.gc_threshold:
            variants.append((False, args.gc_threshold))
        if args.minimal:
            variants.append((True, None))
        for minimal, threshold in variants:
            run = run_isolated(n, minimal, args.seed, threshold)
            log.info("%s", run)
            log.info("%d contacts (%s): %.0f records/s", n, run.fields, run.rate)
            runs.append(run)
    section = render(runs, args.note)
    log.info("\n%s", section)
    if args.write:
        write_section(section)


if __name__ == "__main__":
    main()
