"""What waits for other work: the entities beyond contacts load once their SQL and normalizers land (issue 11)."""

from __future__ import annotations

import pytest

from keap_pipeline.entities import ENTITIES

# not strict: such a test passes as soon as the entity's loader is there (then drop the mark)
needs_entity_sql = pytest.mark.xfail(reason="needs the entity SQL", strict=False)
LOADABLE_TODAY = ("contacts",)


def entity_params() -> list[object]:
    """Every entity name as a pytest parameter in lineage order, marked needs_entity_sql unless it loads today."""
    return [
        pytest.param(name, marks=() if name in LOADABLE_TODAY else (needs_entity_sql,), id=name)
        for name in ENTITIES
    ]
