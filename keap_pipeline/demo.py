"""`make demo`: the main job on embedded defaults, end to end, then a summary. Exits by itself."""

from __future__ import annotations

import logging
import sys

from keap_pipeline.db import embedded
from keap_pipeline.db.migrate import migrate, status

log = logging.getLogger("keap_pipeline.demo")


def main() -> int:
    """Start the embedded PostgreSQL, apply every migration, print what was applied and how to connect."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    server = embedded.start()
    applied = migrate(server.url)
    log.info("embedded PostgreSQL: %s (data in %s)", server.url, server.pgdata)
    log.info("applied now: %s", ", ".join(m.name for m in applied) or "nothing (already current)")
    for s in status(server.url):
        log.info("  %4d  %-8s %s", s.version, s.status, s.name)
    log.info("connect: psql %s   |   stop: keap-pipeline db down", server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
