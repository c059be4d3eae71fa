"""Re-reading without normalizing: records whose exact bytes were normalized before skip decoding and normalizing.

A page is split into its records' bytes (jsontext.split_list_body), each record's bytes are hashed with
a key that is the normalizer's version (normalizer_key), and the records found in
keap_pipeline.raw_record_keys (sql/35) under their id with that hash take the keys stored there
(keap_id, keap_updated_at, content_hash) instead of being decoded and normalized: identical bytes under
an identical normalizer give an identical row. Only the others are decoded and normalized. The batch's
key/hash diff against the sync table then judges every record as before; a known record it says must
be loaded is normalized by the loader (pipeline.batch). The keys of the records normalized here are
stored by the loader in the batch's transaction, except those of dead letters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from keap_pipeline.db.raw_keys import NONE_KNOWN, KnownKeys
from keap_pipeline.entities import Entity
from keap_pipeline.jsontext import decode_list_body, decode_record, record_ids
from keap_pipeline.normalize.frame import UTC_US
from keap_pipeline.normalize.result import NormalizeResult
from keap_pipeline.pipeline.pages import normalize_records

# Raise to make every stored raw hash unknown at once (a change to what a row is made of outside
# the files normalizer_key reads, e.g. a new rule in a library it calls)
NORMALIZER_REVISION = 1

Find = Callable[[Sequence[str | None], Sequence[bytes]], KnownKeys]

_PACKAGE = Path(__file__).resolve().parent.parent
_KEYS: dict[str, bytes] = {}
HASHES_SCHEMA = pl.Schema({"ordinal": pl.Int32(), "raw_hash": pl.Binary()})


def normalizer_key(entity: Entity) -> bytes:
    """The key of the entity's raw hashes: a digest of everything that decides what a record's bytes become.

    The source of the normalizer toolkit (every file of normalize/), of jsontext (decoding) and of the
    entity table, the entity's name and normalizer, NORMALIZER_REVISION and the versions of Python,
    polars and msgspec: a change to any of them gives another key, so every stored hash is unknown and
    every record is normalized again (once) by the new code.
    """
    found = _KEYS.get(entity.name)
    if found is not None:
        return found
    digest = hashlib.sha256()
    files = sorted((_PACKAGE / "normalize").glob("*.py")) + [_PACKAGE / "jsontext.py", _PACKAGE / "entities.py"]
    module = importlib.import_module(entity.normalizer.partition(":")[0])
    files.append(Path(module.__file__ or "").resolve())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for part in (entity.name, entity.normalizer, str(NORMALIZER_REVISION), sys.version, pl.__version__, msgspec.__version__):
        digest.update(part.encode() + b"\0")
    key = _KEYS[entity.name] = digest.digest()
    return key


class PageFinder:
    """A page look-up that looks less while it finds nothing: after two pages without a known record
    (a first load), one page in eight, until a page finds one again.

    Not looking a page up is always safe (its records take the full path); it saves a first load the
    round trip and the server's index probes of a look-up per page.
    """

    def __init__(self, find: Find, every: int = 8) -> None:
        self._find = find
        self._every = every
        self._misses = 0
        self._pages = 0

    def __call__(self, ids: Sequence[str | None], hashes: Sequence[bytes]) -> KnownKeys:
        self._pages += 1
        if self._misses >= 2 and self._pages % self._every:
            return NONE_KNOWN
        found = self._find(ids, hashes)
        self._misses = 0 if found.ordinals else self._misses + 1
        return found


def raw_hashes(entity: Entity, records: Sequence[Any]) -> list[bytes]:
    """Each record's bytes hashed (BLAKE2b, 16 bytes) with the entity's normalizer key."""
    key = normalizer_key(entity)
    blake = hashlib.blake2b
    return [blake(r, digest_size=16, key=key).digest() for r in records]


class RawRecords(Sequence[Any]):
    """A split page's records: each record's bytes, decoded only when read (a dead letter, a late normalize)."""

    def __init__(self, raws: list[msgspec.Raw]) -> None:
        self._raws = raws
        self._decoded: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._raws)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("RawRecords supports integer indexes only")
        if index not in self._decoded:
            self._decoded[index] = decode_record(bytes(self._raws[index]))
        return self._decoded[index]

    def raw_record(self, index: int) -> bytes | None:
        """The record's own bytes in the page, exactly as Keap sent them."""
        return bytes(self._raws[index])


def is_split(records: Sequence[Any]) -> bool:
    """Whether a page's records are their bytes (the client's decode=False split them)."""
    return bool(records) and isinstance(records[0], msgspec.Raw)


def at_positions(result: NormalizeResult, positions: list[int]) -> NormalizeResult:
    """A result of normalizing some of a page's records, its ordinals made their positions in the page."""
    mapping = pl.Series("ordinal", positions, dtype=pl.Int32)
    frame = result.frame
    if frame.height:
        frame = frame.with_columns(mapping.gather(frame["ordinal"]).alias("ordinal"))
    rejected = [r if r.ordinal is None else dataclasses.replace(r, ordinal=positions[r.ordinal]) for r in result.rejected]
    return NormalizeResult(frame=frame, rejected=rejected, fetched_at=result.fetched_at)


def read_page(
    entity: Entity, records: list[Any], raw: bytes, find: Find | None
) -> tuple[Sequence[Any], NormalizeResult]:
    """Normalize a split page's records except those whose bytes were normalized before.

    Args:
        entity: the entity.
        records: the page's records as their bytes (is_split).
        raw: the page's body.
        find: looks records up by id and raw hash (db.raw_keys.find_known); None finds nothing.

    Returns:
        (the page's records, decoded when read; their NormalizeResult with `known` and `raw_hashes`).
    """
    fetched_at = datetime.now(UTC)
    hashes = raw_hashes(entity, records)
    ids = record_ids(records, raw, entity.list_key)
    found = find(ids, hashes) if find is not None else NONE_KNOWN
    kept = RawRecords(records)
    if not found.ordinals:
        # nothing known (a first load): the page decoded whole, as without raw hashes, when it splits
        # into the same records
        body = decode_list_body(raw, entity.list_key)[entity.list_key]
        result = normalize_records(entity, body if len(body) == len(records) else kept, fetched_at=fetched_at)
        todo = list(range(len(records)))
        known = None
    else:
        skip = set(found.ordinals)
        todo = [i for i in range(len(records)) if i not in skip]
        result = at_positions(normalize_records(entity, [kept[i] for i in todo], fetched_at=fetched_at), todo)
        known = pl.DataFrame(
            {
                "ordinal": found.ordinals,
                "keap_id": [ids[i] for i in found.ordinals],
                "keap_updated_at": found.updated_us,
                "content_hash": found.content_hashes,
            },
            schema={"ordinal": pl.Int32(), "keap_id": pl.Utf8(), "keap_updated_at": pl.Int64(), "content_hash": pl.Utf8()},
        ).with_columns(pl.col("keap_updated_at").cast(UTC_US))
    hashed = pl.DataFrame({"ordinal": todo, "raw_hash": [hashes[i] for i in todo]}, schema=HASHES_SCHEMA)
    return kept, NormalizeResult(
        frame=result.frame, rejected=result.rejected, fetched_at=result.fetched_at, known=known, raw_hashes=hashed
    )
