"""No record can fail a batch, for every entity's normalizer (issue 11), as a property.

Hostile versions of the sandbox's tags, products, orders and subscriptions (tests/hostile.py,
entity_record: fields of the spec's schemas replaced by hostile text, wrong types, numbers beyond
64 bits, bad instants and dates, unknown currencies, deep JSON, missing values; records that are
not objects or not JSON alone) go through the bytes Keap would send and the client's decoding. The
normalizer itself must never raise on them, and every record must come out as exactly one row or
one rejection whose reason names a field and a rule, never a value.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keap_pipeline.entities import ENTITIES
from keap_pipeline.jsontext import UndecodableRecord
from tests import hostile
from tests.normalize.entity_cases import sandbox_records

EXAMPLES = int(os.environ.get("KEAP_HOSTILE_EXAMPLES", "60"))


@pytest.mark.parametrize("entity", list(hostile.ENTITY_FIELDS))
def test_no_record_can_fail_a_batch(entity: str) -> None:
    base = sandbox_records(entity)[:40]
    classes: Counter[str] = Counter()
    totals = Counter[str]()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(hostile.entity_record(entity, base, classes), min_size=10, max_size=30), st.booleans())
    def run(values: list[object], ascii_only: bool) -> None:
        records, result = hostile.normalize_wire(entity, values, ascii_only)
        assert result.frame.height + len(result.rejected) == len(records)
        assert sorted([*result.frame["ordinal"].to_list(), *(r.ordinal for r in result.rejected)]) == list(range(len(records)))
        # the normalizer itself accounts for every record (the pipeline's per-record rescue is not needed)
        decodable = [r for r in records if not isinstance(r, UndecodableRecord)]
        direct = ENTITIES[entity].resolve_normalizer()(decodable, fetched_at=datetime.now(UTC))
        assert direct.frame.height + len(direct.rejected) == len(decodable)
        for rejected, value in zip(result.rejected, (values[r.ordinal] for r in result.rejected if r.ordinal is not None), strict=True):
            assert rejected.reason and "\n" not in rejected.reason
            hostile.check_reason_private(rejected.reason, hostile.wire(value))
        totals["records"] += len(records)
        totals["rows"] += result.frame.height

    run()
    assert totals["records"] >= EXAMPLES and 0 < totals["rows"] < totals["records"], totals
    for cls in ("wrong JSON type", "invalid timestamp", "currency values", "missing", "record not an object",
                "record not JSON on its own", "lone high surrogate", "NUL", "one over the limit"):
        assert any(c.startswith(cls) for c in classes), f"{entity}: no example drew {cls!r}"
