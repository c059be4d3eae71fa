"""Keap's `filter` query parameter: parse `field==value;field>value`, check it, turn it into predicates."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keap_pipeline.sandbox.errors import ApiError, TimeFormatError
from keap_pipeline.sandbox.timefmt import parse_iso_ms

_CLAUSE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(==|!=|>=|<=|>|<)(.*)$", re.S)
EQ = frozenset({"=="})
CMP = frozenset({"==", ">", "<", ">=", "<="})
CMP_NE = CMP | {"!="}

Extract = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Field:
    """How one filter field of an entity is understood.

    kind: window_lo / window_hi (the entity's indexed time window), idset, idcmp, oneof, text (== with a
    trailing * for prefix), exact, time_lo / time_hi (other date-times, on the record), bool, num,
    unsupported (a Keap filter the sandbox does not implement: 501).
    """

    kind: str
    ops: frozenset[str] = EQ
    extract: Extract | None = None


@dataclass
class Parsed:
    """A parsed filter: the indexed time window, id constraints, and record predicates."""

    lo_ms: int | None = None
    hi_ms: int | None = None
    ids: set[int] | None = None
    id_checks: list[Callable[[int], bool]] = field(default_factory=list)
    record_checks: list[Callable[[dict[str, Any]], bool]] = field(default_factory=list)

    def id_ok(self, ident: int) -> bool:
        """Whether an id passes the id constraints.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            Whether it passes.
        """
        return (self.ids is None or ident in self.ids) and all(check(ident) for check in self.id_checks)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if left is None:
        return False
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]


def _text_match(pattern: str) -> Callable[[Any], bool]:
    if pattern.endswith("*"):
        prefix = pattern[:-1].casefold()
        return lambda v: isinstance(v, str) and v.casefold().startswith(prefix)
    return lambda v: v == pattern


def _any(values: Any, test: Callable[[Any], bool]) -> bool:
    if isinstance(values, list):
        return any(test(v) for v in values)
    return test(values)


def _int(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise ApiError(400, f"filter {name}: {raw!r} is not an id (ids are strings of digits)")
    return int(raw)


# What Keap takes in a time filter (the spec, listContacts' filter: "a full ISO-8601 date-time with
# milliseconds and a timezone offset (e.g. 2026-01-01T00:00:00.000Z) ... Date-only values are
# rejected"): exactly three fraction digits and Z or +HH:MM/-HH:MM. Looser forms (no
# milliseconds, microseconds, no offset, a date, a space for the T) are refused as Keap refuses
# them, so a client that sent them would fail here before it fails against Keap.
_FILTER_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(?:Z|[+-]\d{2}:\d{2})", re.ASCII)


def _time(name: str, raw: str) -> int:
    try:
        if _FILTER_TIME.fullmatch(raw) is None:
            raise TimeFormatError("not Keap's filter time format")
        return parse_iso_ms(raw)
    except TimeFormatError:
        raise ApiError(
            400,
            f"filter {name}: {raw!r} is not a full ISO-8601 date-time with milliseconds and an offset "
            "(e.g. 2026-01-01T00:00:00.000Z; encode '+' as %2B)",
        ) from None


def parse(text: str, fields: dict[str, Field]) -> Parsed:
    """Parse a filter against an entity's filter fields.

    Args:
        text: the decoded `filter` value, clauses joined by ';' (a trailing ';' is allowed).
        fields: the entity's filter fields.

    Returns:
        The window, id constraints and record predicates.

    Raises:
        ApiError: 400 for a malformed clause, unknown field or operator, bad value;
            501 for a Keap filter field the sandbox does not implement.
    """
    out = Parsed()
    for clause in (c for c in text.split(";") if c):
        match = _CLAUSE.match(clause)
        if match is None:
            raise ApiError(400, f"filter clause {clause!r} is not field<op>value (op: == != > >= < <=)")
        name, op, raw = match.groups()
        spec = fields.get(name)
        if spec is None:
            raise ApiError(400, f"filter field {name!r} is not supported; allowed: {', '.join(sorted(fields))}")
        if spec.kind == "unsupported":
            raise ApiError(501, f"filter field {name!r} is valid for Keap but not implemented by the sandbox")
        if op not in spec.ops:
            raise ApiError(400, f"filter field {name!r} does not support {op!r}; use {' '.join(sorted(spec.ops))}")
        _apply(out, name, op, raw, spec)
    return out


def _apply(out: Parsed, name: str, op: str, raw: str, spec: Field) -> None:
    kind, extract = spec.kind, spec.extract
    if kind == "window_lo":
        out.lo_ms = _time(name, raw)
    elif kind == "window_hi":
        out.hi_ms = _time(name, raw)
    elif kind == "idset":
        wanted = {_int(name, part) for part in raw.split(",") if part}
        out.ids = wanted if out.ids is None else out.ids & wanted
    elif kind == "idcmp":
        value = _int(name, raw)
        # op and value are locals of this call, so the closure binds this clause's values
        out.id_checks.append(lambda i: _compare(op, i, value))
    elif kind in ("time_lo", "time_hi"):
        bound = _time(name, raw)
        assert extract is not None
        if kind == "time_lo":
            out.record_checks.append(lambda r: (t := extract(r)) is not None and parse_iso_ms(t) >= bound)
        else:
            out.record_checks.append(lambda r: (t := extract(r)) is not None and parse_iso_ms(t) <= bound)
    elif kind == "bool":
        if raw not in ("true", "false"):
            raise ApiError(400, f"filter {name}: {raw!r} must be true or false")
        assert extract is not None
        want = raw == "true"
        out.record_checks.append(lambda r: bool(extract(r)) == want)
    elif kind == "num":
        try:
            number = float(raw)
        except ValueError:
            raise ApiError(400, f"filter {name}: {raw!r} is not a number") from None
        assert extract is not None
        out.record_checks.append(lambda r: _compare(op, extract(r), number))
    elif kind == "oneof":
        choices = frozenset(part for part in raw.split(",") if part)
        assert extract is not None
        out.record_checks.append(lambda r: _any(extract(r), lambda v: v in choices))
    else:  # text / exact on a record property (possibly a list of values)
        assert extract is not None
        test = _text_match(raw) if kind == "text" else (lambda v, raw=raw: v == raw)
        if op == "!=":
            out.record_checks.append(lambda r: not _any(extract(r), test))
        else:
            out.record_checks.append(lambda r: _any(extract(r), test))
