"""The keap-pipeline command: migrations, the embedded database, the local Keap sandbox, syncs, deletions, dead letters, push."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

from keap_pipeline.cli_args import whole
from keap_pipeline.errors import KeapPipelineError

log = logging.getLogger("keap_pipeline.cli")


def _add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL; default KEAP_PIPELINE_DATABASE_URL, else the embedded server",
    )


def _cmd_migrate(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import redact, resolve_database_url
    from keap_pipeline.db.migrate import migrate_report

    url = resolve_database_url(args.database_url)
    report = migrate_report(url, target=args.to)
    for m in report.versioned:
        print(f"applied  {m.name}  {m.checksum[:12]}")
    for r in report.repeatable:
        print(f"applied  {r.label}  {r.checksum[:12]}  (repeatable)")
    if not report.versioned and not report.repeatable:
        print("nothing to apply")
        return 0
    done = f"{len(report.versioned)} migration(s)"
    if report.repeatable:
        done += f" and {len(report.repeatable)} repeatable file(s)"
    print(f"{done} applied to {redact(url)}")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import redact, resolve_database_url
    from keap_pipeline.db.migrate import rollback_report

    url = resolve_database_url(args.database_url)
    report = rollback_report(url, args.to)
    for r in report.repeatable:
        print(f"dropped  {r.label}  (repeatable; the next migrate re-applies it)")
    for m in report.versioned:
        print(f"rolled back  {m.name}")
    if not report.versioned and not report.repeatable:
        print("nothing to roll back")
        return 0
    print(f"{len(report.versioned)} migration(s) rolled back on {redact(url)}")
    return 0


def _cmd_migrations(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import resolve_database_url
    from keap_pipeline.db.migrate import REPEATABLE_DIR, repeatable_status, status

    url = resolve_database_url(args.database_url)
    states = status(url)
    print(f"{'version':>7}  {'status':8}  {'checksum':12}  {'applied at':32}  name")
    for s in states:
        at = s.applied_at.isoformat() if s.applied_at else "-"
        print(f"{s.version:>7}  {s.status:8}  {s.checksum[:12]}  {at:32}  {s.name}")
    repeatables = repeatable_status(url)
    if repeatables:
        # after the versioned lines, whose format outside checks read; `repeat` in the version column
        print(f"repeatable files (sql/{REPEATABLE_DIR}/, re-applied all together whenever one is pending or changed):")
        for r in repeatables:
            at = r.applied_at.isoformat() if r.applied_at else "-"
            checksum = (r.checksum or r.applied_checksum or "")[:12]
            requires = f"  (requires {r.requires})" if r.requires is not None else ""
            print(f"{'repeat':>7}  {r.status:8}  {checksum:12}  {at:32}  {REPEATABLE_DIR}/{r.name}{requires}")
        waiting = [r for r in repeatables if r.status != "applied"]
        if waiting:
            print(
                f"{len(waiting)} repeatable file(s) pending, changed or removed: "
                f"the next migrate re-applies all {sum(1 for r in repeatables if r.checksum)}"
            )
    return 1 if any(s.status == "changed" for s in states) else 0


def _cmd_db(args: argparse.Namespace) -> int:
    from keap_pipeline.db import embedded

    if args.action == "up":
        server = embedded.start()
        print(server.url)
        return 0
    if args.action == "down":
        stopped = embedded.stop()
        print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
        return 0
    server = embedded.server_for()
    print(f"{'running' if server.is_running() else 'stopped'}  {server.url}  ({server.pgdata})")
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from keap_pipeline.sandbox import config_from_args, serve

    serve(config_from_args(args))
    return 0


def _add_sandbox(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    try:
        from keap_pipeline.sandbox import add_arguments
        from keap_pipeline.sandbox.config import KEY_HELP
    except ImportError:  # the sandbox package is optional in a trimmed install
        return
    parser = sub.add_parser(
        "sandbox", help="serve a local Keap REST v2 sandbox on loopback until stopped",
        description="Serve a local Keap REST v2 sandbox on loopback until stopped (Ctrl-C or SIGTERM).",
        epilog=f"{KEY_HELP} Point the pipeline at it with KEAP_BASE_URL=http://127.0.0.1:PORT/crm/rest/v2.",
    )
    add_arguments(parser)
    parser.set_defaults(func=_cmd_sandbox)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the keap-pipeline command."""
    parser = argparse.ArgumentParser(prog="keap-pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply pending migrations")
    _add_database_url(p)
    p.add_argument("--to", type=whole(0), default=None, metavar="VERSION",
                   help="stop at this version (default: apply everything pending)")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("rollback", help="run down scripts back to a version (0 = everything)")
    _add_database_url(p)
    p.add_argument(
        "--to", type=whole(0), required=True, metavar="VERSION",
        help="required: keep the migrations up to this version, run the down scripts of every later one "
        "(newest first; 0 = everything)",
    )
    p.set_defaults(func=_cmd_rollback)

    p = sub.add_parser("migrations", help="list applied and pending migrations with checksums")
    _add_database_url(p)
    p.set_defaults(func=_cmd_migrations)

    p = sub.add_parser("db", help="the embedded PostgreSQL under KEAP_PIPELINE_HOME")
    p.add_argument(
        "action", choices=["up", "down", "status"],
        help="up: start it (initialised on first use) and print its URL; down: stop it; "
        "status: running or stopped, its URL and data directory",
    )
    p.set_defaults(func=_cmd_db)

    _add_sandbox(sub)
    for register in _late_commands():
        register(sub)
    return parser


def _late_commands() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """Sub-commands that live beside the code they drive (sync, dead-letters, reconcile)."""
    from keap_pipeline.maintain_cli import register as register_maintain
    from keap_pipeline.push_cli import register as register_push

    registrars: list[Callable[[argparse._SubParsersAction], None]] = [register_maintain, register_push]  # type: ignore[type-arg]
    try:
        from keap_pipeline.reconcile_cli import register as register_reconcile
        from keap_pipeline.sync_cli import register
    except ImportError:
        return registrars
    registrars[:0] = [register, register_reconcile]
    return registrars


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


_QUERY_PASSWORD = re.compile(r"[?&]password=([^&#]*)", re.IGNORECASE)
# PostgreSQL's words when the schema this command needs is not there (undefined table / function / schema)
_NOT_MIGRATED = ("42P01", "42883", "3F000")


def _passwords_in(url: str) -> set[str]:
    """Every password a database URL (or key=value conninfo) carries, as written and percent-decoded."""
    found: set[str] = set()
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    found.update(m.group(1) for m in _QUERY_PASSWORD.finditer(url))
    found.update(m.group(2).strip("'") for m in _KV_PASSWORD.finditer(url))
    return {p for value in found if value for p in (value, unquote(value)) if p}


def database_error_line(err: Exception, urls: Iterable[str | None] = ()) -> str:
    """One line for a database error: the server's (or libpq's) first line, any password masked.

    Args:
        err: the psycopg error.
        urls: the database URLs in play (the flag, the environment): their passwords are masked
            wherever libpq's message quotes them, even when the URL could not be parsed.

    Returns:
        The line, with a hint to migrate when the schema it needs is missing.
    """
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    for password in sorted({p for url in urls if url for p in _passwords_in(url)}, key=len, reverse=True):
        text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    if getattr(err, "sqlstate", None) in _NOT_MIGRATED:
        text += "; is the schema migrated? run `keap-pipeline migrate`"
    return text


def database_urls(args: argparse.Namespace) -> tuple[str | None, ...]:
    """The database URLs a command may have used: its --database-url flag and KEAP_PIPELINE_DATABASE_URL."""
    return getattr(args, "database_url", None), os.environ.get("KEAP_PIPELINE_DATABASE_URL")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # httpx logs every request at INFO (a push of 10,000 updates: 10,000 lines); --verbose shows them
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except KeapPipelineError as err:
        command = " ".join(filter(None, (args.command, getattr(args, "chore", None))))
        print(f"keap-pipeline {command}: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        # psycopg is imported lazily by the commands; a database error is one line, exit 2, no traceback
        if type(err).__module__.split(".")[0] != "psycopg":
            raise
        command = " ".join(filter(None, (args.command, getattr(args, "chore", None))))
        print(f"keap-pipeline {command}: database error: {database_error_line(err, database_urls(args))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
