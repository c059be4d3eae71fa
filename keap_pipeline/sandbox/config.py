"""SandboxConfig: the sandbox's settings, and the `keap-pipeline sandbox` arguments that build it."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field, replace

from keap_pipeline.cli_args import whole
from keap_pipeline.sandbox.entities import ENTITIES
from keap_pipeline.sandbox.errors import SandboxConfigError

DEFAULT_PORT = 8765
API_KEY_ENV = "KEAP_API_KEY"
FALLBACK_API_KEY = "sandbox-key"
DEMO_API_KEY = "sandbox-demo-key"  # what `make demo` and `make ui` start the sandbox with
# made up for the sandbox, never a real credential: the only keys the sandbox names when it starts
MADE_UP_API_KEYS = frozenset({FALLBACK_API_KEY, DEMO_API_KEY})
KEY_HELP = (
    f"The sandbox accepts one API key (header X-Keap-API-Key, or Authorization: Bearer): the value of "
    f"{API_KEY_ENV} when that is set, else {FALLBACK_API_KEY!r}; `make demo` and `make ui` start it with "
    f"{DEMO_API_KEY!r}. Its start line says which."
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def accepted_key(api_key: str) -> str:
    """Which API key a sandbox accepts, in words for its start line (a key that may be real is never shown).

    Args:
        api_key: the key the sandbox was configured with.

    Returns:
        e.g. "API key 'sandbox-key'" or "the API key in KEAP_API_KEY (not shown)".
    """
    if api_key in MADE_UP_API_KEYS:
        return f"API key {api_key!r}"
    if api_key == os.environ.get(API_KEY_ENV):
        return f"the API key in {API_KEY_ENV} (not shown)"
    return "the API key it was given (not shown)"


def _default_api_key() -> str:
    # Read when a config is built, never at import (a later export of KEAP_API_KEY must count).
    return os.environ.get(API_KEY_ENV) or FALLBACK_API_KEY


@dataclass(frozen=True)
class RateLimits:
    """Requests allowed per second / minute / UTC day; None switches that limit off.

    The defaults are Keap's published limits for a personal access token or service account key.
    """

    per_second: int | None = 10
    per_minute: int | None = 240
    per_day: int | None = 30_000

    @classmethod
    def off(cls) -> RateLimits:
        """No limits at all (demo, benchmarks)."""
        return cls(None, None, None)


@dataclass(frozen=True)
class Faults:
    """Misbehaviour switched on for tests: all off by default."""

    latency_ms: int = 0
    error_share: float = 0.0  # share of API requests answered 500, 502 or 503
    drop_share: float = 0.0  # share of API requests whose connection is closed without an answer
    slow_every: int = 0  # every Nth list request is slow (0 = never)
    slow_ms: int = 1500
    # share of every entity's records silently left out of listings (the same ones on every page and
    # request; gets still find them): the truncated listing a reconcile pass's safety stop guards against
    hide_share: float = 0.0

    @property
    def any(self) -> bool:
        """Whether any fault is switched on."""
        return bool(self.latency_ms or self.error_share or self.drop_share or self.slow_every)


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox serves and how it behaves.

    Entity counts left at None scale from `contacts`. Rate limits are ON by default at Keap's
    personal-key limits, because a faithful sandbox is what the client's pacing is tested against;
    the demo and the benchmarks switch them off (--no-limits).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    contacts: int = 1000
    tags: int | None = None
    products: int | None = None
    orders: int | None = None
    subscriptions: int | None = None
    companies: int | None = None
    seed: int = 1
    api_key: str = field(default_factory=_default_api_key, repr=False)
    limits: RateLimits = RateLimits()
    faults: Faults = Faults()
    strict: bool = False  # validate every request and response against the contract, record violations
    # contacts served byte for byte as given (--raw-contacts): one JSON record each, hostile or
    # broken; one whose "id" is an existing contact's replaces it, the others are added
    raw_contacts: tuple[bytes, ...] = field(default=(), repr=False)
    # the same for any entity (--raw-records ENTITY=FILE): (entity, its records), placed after raw_contacts
    raw_records: tuple[tuple[str, tuple[bytes, ...]], ...] = field(default=(), repr=False)
    # keep what the API changed across restarts: loaded at start when it fits the data, saved at stop
    # (sandbox.saved_state; `make demo` and `make ui` share one under KEAP_PIPELINE_HOME)
    state_file: str | None = None
    oauth_client_id: str = "sandbox-client"
    oauth_client_secret: str = field(default="sandbox-secret", repr=False)
    oauth_refresh_token: str = field(default="sandbox-refresh-0", repr=False)
    access_token_ttl_s: int = 86_400

    def __post_init__(self) -> None:
        if self.contacts < 0 or self.contacts > 50_000_000:
            raise SandboxConfigError(f"contacts must be 0..50,000,000, got {self.contacts}")
        for name in ("tags", "products", "orders", "subscriptions", "companies"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SandboxConfigError(f"{name} must be >= 0, got {value}")
        for name in ("error_share", "drop_share", "hide_share"):
            share = getattr(self.faults, name)
            if not 0.0 <= share < 1.0:
                raise SandboxConfigError(f"{name} must be in [0, 1), got {share}")
        if self.faults.error_share + self.faults.drop_share >= 1.0:
            raise SandboxConfigError("error_share + drop_share must stay below 1, or nothing succeeds")
        if not _is_loopback(self.host):
            raise SandboxConfigError(f"the sandbox binds loopback addresses only, not {self.host!r}")
        if not 0 <= self.port <= 65535:
            raise SandboxConfigError(f"port must be 0..65535, got {self.port}")
        for entity, _ in self.raw_records:
            if entity not in ENTITIES:
                raise SandboxConfigError(f"raw records for {entity!r}: the sandbox serves {', '.join(ENTITIES)}")

    def counts(self) -> dict[str, int]:
        """Entity counts, the ones left unset scaled from contacts."""
        n = self.contacts
        return {
            "contacts": n,
            "tags": self.tags if self.tags is not None else min(500, max(10, n // 100)),
            "tag_categories": 8,
            "companies": self.companies if self.companies is not None else max(5, n // 20),
            "products": self.products if self.products is not None else min(2000, max(10, n // 200)),
            # orders and subscriptions point at contacts: none can exist without one
            "orders": 0 if n == 0 else self.orders if self.orders is not None else max(5, n // 2),
            "subscriptions": 0 if n == 0 else self.subscriptions if self.subscriptions is not None else max(3, n // 10),
        }

    def with_(self, **changes: object) -> SandboxConfig:
        """A copy with some settings changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to a parser (used by `keap-pipeline sandbox`).

    Args:
        parser: the sub-command's parser.
    """
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--contacts", type=int, default=1000, help="number of contacts (default 1000)")
    for name in ("tags", "products", "orders", "subscriptions", "companies"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"number of {name} (default scaled from --contacts)")
    parser.add_argument("--seed", type=int, default=1, help="data seed: same seed, same data (default 1)")
    parser.add_argument("--no-limits", action="store_true",
                        help="switch Keap's rate limits off (demo, benchmarks; default: on, at the limits below)")
    parser.add_argument("--per-second", type=whole(1), default=10, help="requests a second before 429 (default 10)")
    parser.add_argument("--per-minute", type=whole(1), default=240, help="requests a minute before 429 (default 240)")
    parser.add_argument("--per-day", type=whole(1), default=30_000, help="requests a UTC day before 429 (default 30000)")
    parser.add_argument("--latency-ms", type=whole(0), default=0,
                        help="fault: milliseconds added to every API answer (default 0)")
    parser.add_argument("--error-share", type=float, default=0.0,
                        help="fault: share of 500/502/503 answers, 0..1 (default 0)")
    parser.add_argument("--drop-share", type=float, default=0.0,
                        help="fault: share of dropped connections, 0..1 (default 0)")
    parser.add_argument("--slow-every", type=whole(0), default=0,
                        help="fault: every Nth list request is slow (default 0 = never)")
    parser.add_argument("--slow-ms", type=whole(0), default=1500,
                        help="fault: milliseconds a slow page takes (default 1500)")
    parser.add_argument(
        "--state-file", metavar="FILE", default=None,
        help="keep the changes made through the API in FILE: loaded at start (when saved for the same --seed "
        "and counts), saved at stop (default: none, every start serves the generated data)",
    )
    parser.add_argument(
        "--hide-share", type=float, default=0.0,
        help="fault: share of every entity's records silently left out of listings, gets still find them (default 0)",
    )
    parser.add_argument("--strict", action="store_true",
                        help="validate traffic against the Keap contract, log violations (default off)")
    parser.add_argument(
        "--raw-contacts", metavar="FILE", default=None,
        help="serve these contacts byte for byte: one record a line (JSON Lines, any bytes); a line whose "
        "\"id\" is an existing contact's replaces it, the others are added (update time: the line's "
        "update_time when valid, else the start) (default: none)",
    )
    parser.add_argument(
        "--raw-records", metavar="ENTITY=FILE", action="append", default=[],
        help="as --raw-contacts for any entity (orders, tags, products, subscriptions, ...); the update "
        "time is read from the entity's time field (e.g. modification_time); may be repeated (default: none)",
    )


def _read_lines(path: str, option: str) -> tuple[bytes, ...]:
    """The non-blank lines of a raw-records file, line ends stripped, bytes kept as they are."""
    try:
        with open(path, "rb") as f:
            return tuple(line.rstrip(b"\r\n") for line in f if line.strip())
    except OSError as err:
        raise SandboxConfigError(f"cannot read {option}{path}: {err.strerror}") from None


def _raw_records(values: list[str]) -> tuple[tuple[str, tuple[bytes, ...]], ...]:
    """--raw-records ENTITY=FILE values, read."""
    out = []
    for value in values:
        entity, sep, path = value.partition("=")
        if not sep or not path:
            raise SandboxConfigError(f"--raw-records takes ENTITY=FILE, got {value!r}")
        if entity not in ENTITIES:
            raise SandboxConfigError(f"--raw-records {entity}: the sandbox serves {', '.join(ENTITIES)}")
        out.append((entity, _read_lines(path, f"--raw-records {entity}=")))
    return tuple(out)


def config_from_args(ns: argparse.Namespace) -> SandboxConfig:
    """Build a SandboxConfig from parsed arguments.

    Args:
        ns: the namespace add_arguments' options were parsed into.

    Returns:
        The configuration (api_key from KEAP_API_KEY, else "sandbox-key").

    Raises:
        SandboxConfigError: a value is out of range.
    """
    limits = RateLimits.off() if ns.no_limits else RateLimits(ns.per_second, ns.per_minute, ns.per_day)
    raw_contacts = _read_lines(ns.raw_contacts, "--raw-contacts ") if getattr(ns, "raw_contacts", None) else ()
    raw_records = _raw_records(getattr(ns, "raw_records", None) or [])
    faults = Faults(ns.latency_ms, ns.error_share, ns.drop_share, ns.slow_every, ns.slow_ms, ns.hide_share)
    return SandboxConfig(
        host=ns.host,
        port=ns.port,
        contacts=ns.contacts,
        tags=ns.tags,
        products=ns.products,
        orders=ns.orders,
        subscriptions=ns.subscriptions,
        companies=ns.companies,
        seed=ns.seed,
        limits=limits,
        faults=faults,
        strict=ns.strict,
        raw_contacts=raw_contacts,
        raw_records=raw_records,
        state_file=getattr(ns, "state_file", None),
    )
