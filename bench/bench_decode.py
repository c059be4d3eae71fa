"""What the read-ahead thread spends per contact, stage by stage: decoding a page (json.loads as before,
msgspec as now, msgspec into typed structs), normalizing it, both with one or two threads, and both
with the cyclic collector paused while each page is made (a candidate measured and left out).

    .venv/bin/python -m bench.bench_decode [--contacts 100000] [--repeat 7]

Pages are the sandbox's own bodies (rendered in-process, not timed; the pipeline's fields, pages of
1000). Each stage runs `--repeat` times, the candidates alternating, and reports CPU microseconds per
record (process time: every thread counted), minimum and median: the machine is shared. The page
before is kept while the next is made, as the pipeline keeps it. The typed structs are a
measurement of what a typed decoder would cost, not a path of the pipeline (the normalizer takes
dicts).
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from keap_pipeline import jsontext
from keap_pipeline.entities import CONTACTS
from keap_pipeline.jsontext import decode_list_body, exact_float
from keap_pipeline.keap.endpoints import ENDPOINTS, build_list_params
from keap_pipeline.pipeline.pages import normalize_page
from keap_pipeline.sandbox import SandboxConfig
from keap_pipeline.sandbox.api import ENTITIES
from keap_pipeline.sandbox.listing import Lister
from keap_pipeline.sandbox.state import SandboxState


class _Email(msgspec.Struct, gc=False):
    email: str | None = None
    field: str | None = None


class _Phone(msgspec.Struct, gc=False):
    number: str | None = None
    extension: str | None = None
    field: str | None = None


class _Company(msgspec.Struct, gc=False):
    company_name: str | None = None


class _Custom(msgspec.Struct, gc=False):
    id: str
    content: Any = None


class _Contact(msgspec.Struct, gc=False):
    id: str
    update_time: str
    given_name: str | None = None
    family_name: str | None = None
    email_addresses: list[_Email] | None = None
    phone_numbers: list[_Phone] | None = None
    company: _Company | None = None
    tag_ids: list[str] | None = None
    custom_fields: list[_Custom] | None = None
    create_time: str | None = None


class _Body(msgspec.Struct, gc=False):
    contacts: list[_Contact]
    next_page_token: str | None = None


def sandbox_pages(contacts: int) -> list[bytes]:
    """The bodies the sandbox serves for every contact, in pages of 1000 (update_time order)."""
    state = SandboxState(SandboxConfig(contacts=contacts))
    params = build_list_params(ENDPOINTS["contacts"], page_size=1000, fields=CONTACTS.fields, since=None,
                               until=None, order_by=CONTACTS.order_by, filters=())
    pages = []
    while True:
        body, token = Lister(state, ENTITIES["contacts"], params).page_and_token()
        pages.append(body)
        if not token:
            return pages
        params = {**params, "page_token": token}


def _json_path(raw: bytes) -> Any:
    """decode_json as it was before msgspec: json.loads with the exact hooks, the collector paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return jsontext._loads(raw)
    finally:
        if enabled:
            gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    pages = sandbox_pages(args.contacts)
    n = args.contacts
    typed = msgspec.json.Decoder(_Body, float_hook=exact_float).decode

    def each_page(fn: Callable[[bytes], Any]) -> Callable[[], None]:
        def run() -> None:
            kept: collections.deque[Any] = collections.deque(maxlen=2)
            for raw in pages:
                kept.append(fn(raw))
        return run

    def normalized(raw: bytes) -> Any:
        return normalize_page(CONTACTS, decode_list_body(raw, "contacts")["contacts"], raw)

    def threads(workers: int) -> Callable[[], None]:
        def run() -> None:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(normalized, pages):
                    pass
        return run

    def paused() -> None:
        # the candidate that was measured and left out: the collector paused while each page is made
        kept: collections.deque[Any] = collections.deque(maxlen=2)
        for raw in pages:
            enabled = gc.isenabled()
            gc.disable()
            try:
                kept.append(normalized(raw))
            finally:
                if enabled:
                    gc.enable()

    stages: dict[str, Callable[[], None]] = {
        "decode: json.loads + exact hooks (before)": each_page(_json_path),
        "decode: decode_json (msgspec, now)": each_page(lambda raw: decode_list_body(raw, "contacts")),
        "decode: msgspec into typed structs (gc=False)": each_page(typed),
        "decode + normalize (now), 1 thread": threads(1),
        "decode + normalize (now), 2 threads": threads(2),
        "decode + normalize, plain loop": each_page(normalized),
        "decode + normalize, collector paused per page": paused,
    }
    times: dict[str, list[float]] = {name: [] for name in stages}
    for i in range(args.repeat):
        for name in list(stages) if i % 2 == 0 else reversed(list(stages)):
            started = time.process_time()
            stages[name]()
            times[name].append(time.process_time() - started)
    print(f"{n:,} contacts in {len(pages)} pages, {sum(map(len, pages)) / n:.0f} bytes per contact;"
          f" CPU us per contact, min / median of {args.repeat}:")
    for name, t in times.items():
        print(f"  {name:48s} {min(t) / n * 1e6:6.2f} / {statistics.median(t) / n * 1e6:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
