"""What every entity's normalizer test checks the same way: sandbox records, one row, one rejection, text rules.

Each tests/normalize/test_<entity>.py states its entity's field rules; the rules every entity
shares (text limits, NUL, lone surrogates, ids, record shape, duplicates, deep JSON) are checked
here against its own base record, so no test file copies another.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from functools import cache
from typing import Any

from keap_pipeline.entities import ENTITIES, Entity
from keap_pipeline.normalize.frame import staging_schema
from keap_pipeline.normalize.result import NormalizeResult, Rejected
from keap_pipeline.sandbox.config import SandboxConfig
from keap_pipeline.sandbox.dataset import Dataset
from tests import hostile

FETCHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MISSING = object()


@cache
def dataset() -> Dataset:
    """The sandbox's default data for 500 contacts (what `running_sandbox` serves before any mutation)."""
    return Dataset(SandboxConfig(contacts=500))


def sandbox_records(entity: str) -> list[dict[str, Any]]:
    """Every base record of an entity as the sandbox serves it."""
    ds = dataset()
    return [ds.record(entity, i) for i in range(1, ds.count(entity) + 1)]


def normalize(entity: str, records: list[Any]) -> NormalizeResult:
    """The entity's normalizer on records; checks the invariants every result must hold."""
    e = ENTITIES[entity]
    result = e.resolve_normalizer()(records, fetched_at=FETCHED)
    assert result.frame.schema == staging_schema(e)
    assert tuple(result.frame.columns) == e.staging_column_names
    assert result.frame.height + len(result.rejected) == len(records)
    for r in result.rejected:
        assert r.reason and "\n" not in r.reason
    return result


def one_row(entity: str, record: Any) -> dict[str, Any]:
    """The one row a record must become."""
    result = normalize(entity, [record])
    assert result.rejected == [], [r.reason for r in result.rejected]
    return result.frame.row(0, named=True)


def rejection(entity: str, record: Any) -> Rejected:
    """The one rejection a record must become."""
    result = normalize(entity, [record])
    assert result.frame.height == 0, "the record loaded"
    (rejected,) = result.rejected
    assert rejected.record is record
    return rejected


def with_(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of a record with the value at a dotted path set (MISSING deletes it)."""
    out = copy.deepcopy(record)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target.setdefault(key, {})
    if value is MISSING:
        target.pop(last, None)
    else:
        target[last] = value
    return out


def check_shared_rules(
    entity: str,
    base: dict[str, Any],
    texts: list[tuple[str, str]],
    json_fields: tuple[str, ...] = (),
) -> None:
    """The rules every normalizer shares, on one entity's base record.

    Args:
        entity: the entity.
        base: a record that loads.
        texts: (Keap field path, staging column) of each stored string.
        json_fields: Keap fields stored as JSON (an array or object of the base record).
    """
    e: Entity = ENTITIES[entity]
    one_row(entity, base)
    limits = e.column_limits
    for path, column in texts:
        limit = limits.get(column)
        if limit is not None:
            at_limit = one_row(entity, with_(base, path, "\U0001f600" * limit))
            assert at_limit[column] == "\U0001f600" * limit, "the limit counts characters, not bytes"
            over = rejection(entity, with_(base, path, "x" * (limit + 1)))
            assert over.field == path and f"varchar({limit})" in over.reason
        nul = rejection(entity, with_(base, path, "a\x00b"))
        assert nul.field == path and "NUL" in nul.reason
        lone = rejection(entity, with_(base, path, "Jo\ud83dhn"))
        assert lone.field == path and "lone surrogate" in lone.reason
        assert lone.keap_id == str(base["id"])
        wrong = rejection(entity, with_(base, path, 5))
        assert wrong.field == path and "got a JSON number" in wrong.reason
        for text in ("", "\\N", "NULL", 'O\'Brien "Bob", Jr.', "a\tb\r\nc", "\u2028\ufeff", "Zoë 🧑‍💻"):
            assert one_row(entity, with_(base, path, text))[column] == text
    for path in json_fields:
        nul = rejection(entity, with_(base, path, _json_like(base[path], {"k": "a\x00"})))
        assert nul.field == path and "NUL" in nul.reason
        lone = rejection(entity, with_(base, path, _json_like(base[path], {"k": "\udc80"})))
        assert lone.field == path and "lone surrogate" in lone.reason
        deep: Any = "x"
        for _ in range(100_000):
            deep = [deep]
        too_deep = rejection(entity, with_(base, path, _json_like(base[path], {"k": deep})))
        assert too_deep.field == path
        nan = rejection(entity, with_(base, path, _json_like(base[path], {"k": float("nan")})))
        assert nan.field == path and "NaN" in nan.reason
    # the record itself and its id
    assert rejection(entity, [base]).field is None
    assert rejection(entity, "a string").keap_id is None
    for bad_id in (MISSING, None, "", "12a", "-5", -5, 1.5, True, "1" * 256, [1]):
        bad = rejection(entity, with_(base, "id", bad_id))
        assert bad.field == "id" and bad.keap_id is None
    assert one_row(entity, with_(base, "id", 2**70))["keap_id"] == str(2**70)
    # duplicates: both rows stay, in order (the SQL keeps the last by ordinal)
    twice = normalize(entity, [base, copy.deepcopy(base)])
    assert twice.frame["ordinal"].to_list() == [0, 1] and twice.frame["keap_id"].n_unique() == 1
    # a re-save with the same content keeps its content hash
    frame = normalize(entity, [base, with_(base, _updated_field(e), "2031-01-01T00:00:00.000Z")]).frame
    assert frame["content_hash"][0] == frame["content_hash"][1]
    # reasons never quote the value
    for path, _ in texts:
        secret = "customer-secret-value-\x00"
        assert "customer-secret" not in rejection(entity, with_(base, path, secret)).reason
        hostile.check_reason_private(rejection(entity, with_(base, path, secret)).reason, b"{}")


def _updated_field(e: Entity) -> str:
    return {"tags": "update_time", "products": "update_time"}.get(e.name, "modification_time")


def _json_like(shape: Any, inner: dict[str, Any]) -> Any:
    """A value of the same JSON type as `shape` (array or object) holding `inner`."""
    return [inner] if isinstance(shape, list) else inner


def reasons(entity: str, base: dict[str, Any], cases: list[tuple[str, Any, str, str]]) -> None:
    """Each (path, value, field, rule) must reject the base record naming that field and rule."""
    for path, value, field, rule in cases:
        got = rejection(entity, with_(base, path, value))
        assert (got.field, rule in got.reason) == (field, True), (path, value, got.field, got.reason)

