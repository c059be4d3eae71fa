"""keap/ stays HTTP-only: importing it pulls in no polars, psycopg or dagster."""

from __future__ import annotations

import json
import subprocess
import sys


def test_keap_package_imports_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "import keap_pipeline.keap, keap_pipeline.keap.client\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    roots = set(json.loads(out.stdout))
    assert "httpx" in roots  # the import really happened
    assert roots.isdisjoint({"polars", "psycopg", "psycopg_pool", "dagster"}), roots


def test_jsontext_and_the_dead_letters_import_no_http_client() -> None:
    """db/ may not import httpx: the JSON helpers dead letters need live outside keap/."""
    code = (
        "import json, sys\n"
        "import keap_pipeline.jsontext, keap_pipeline.db.dead_letters, keap_pipeline.normalize.contacts\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "httpx" not in set(json.loads(out.stdout))
