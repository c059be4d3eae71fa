"""bench.common.write_section: a bench's --write replaces its own text and keeps what was written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "benchmarks.md"
    monkeypatch.setattr(common, "DOCS", path)
    return path


def test_a_section_is_appended_then_replaced_and_the_hand_written_text_after_it_stays(docs: Path) -> None:
    docs.write_text("# Benchmarks\n\n## Other\n\nother text\n")
    common.write_section("Orders", "| run 1 |")
    assert docs.read_text().endswith(f"## Orders\n\n| run 1 |\n\n{common.GENERATED_END}\n")
    docs.write_text(docs.read_text() + "\nAnalysis by hand.\n\n## Next\n\nnext text\n")
    common.write_section("Orders", "| run 2 |")
    text = docs.read_text()
    assert "| run 1 |" not in text and "| run 2 |" in text
    assert text.index("| run 2 |") < text.index(common.GENERATED_END) < text.index("Analysis by hand.") < text.index("## Next")
    assert "## Other\n\nother text\n" in text and text.endswith("## Next\n\nnext text\n")


def test_a_section_from_before_the_marker_loses_nothing(docs: Path) -> None:
    docs.write_text("# Benchmarks\n\n## Orders\n\n| old run |\n\nAnalysis by hand.\n\n## Next\n\nnext text\n")
    common.write_section("Orders", "| new run |")
    text = docs.read_text()
    assert text.index("| new run |") < text.index(common.GENERATED_END) < text.index("| old run |") < text.index("Analysis by hand.")
    assert text.endswith("## Next\n\nnext text\n")
