"""docs/schema.md holds the ER diagram of what the migrations build, so it cannot drift."""

from __future__ import annotations

import psycopg

from keap_pipeline.db.schema_doc import (
    DEFAULT_DOC,
    END_MARKER,
    START_MARKER,
    extract,
    main,
    render,
    splice,
)


def test_committed_diagram_matches_the_live_catalog(db: psycopg.Connection) -> None:
    expected = render(db)
    committed = extract(DEFAULT_DOC.read_text(encoding="utf-8"))
    assert committed == expected, (
        "docs/schema.md is out of date: run python -m keap_pipeline.db.schema_doc --database-url <a migrated database>"
    )


def test_diagram_shows_keys_and_relationships(db: psycopg.Connection) -> None:
    diagram = render(db)
    assert diagram.startswith("erDiagram\n")
    assert "        uuid id PK\n" in diagram
    assert "varchar(255) keap_id UK" in diagram
    assert "uuid contact_id FK" in diagram
    assert 'sync_contacts |o--o{ sync_orders : "contact_id"' in diagram
    assert 'auth_users |o--o{ sync_contacts : "created_by"' in diagram
    assert "numeric(19_4) total_amount" in diagram
    assert "sync_audit_log_default" not in diagram


def test_splice_keeps_the_rest_of_the_document(db: psycopg.Connection) -> None:
    doc = f"# Title\n\nbefore\n\n{START_MARKER}\nold\n{END_MARKER}\n\nafter: deviations\n"
    out = splice(doc, "erDiagram\n")
    assert out.startswith("# Title\n\nbefore\n\n") and out.endswith(f"{END_MARKER}\n\nafter: deviations\n")
    assert extract(out) == "erDiagram\n"


def test_cli_check_and_write(migrated_database: str, tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    target = tmp_path / "schema.md"
    target.write_text(f"intro\n{START_MARKER}\n{END_MARKER}\noutro\n", encoding="utf-8")
    assert main(["--database-url", migrated_database, "--output", str(target), "--check"]) == 1
    assert main(["--database-url", migrated_database, "--output", str(target)]) == 0
    assert main(["--database-url", migrated_database, "--output", str(target), "--check"]) == 0
    assert target.read_text(encoding="utf-8").endswith(f"{END_MARKER}\noutro\n")
