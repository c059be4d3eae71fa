"""List endpoints: filter, order_by, page_size and page_token paging over generated + changed records.

Every entity is listed the same way: its generated records (by id, or through its timeline) merged
with its overlay of changed, created, deleted and raw records (SandboxState.overlays). An entity
whose overlay is empty takes the generated path alone.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import heapq
import json
from collections.abc import Iterator
from typing import Any

from keap_pipeline.sandbox import filters
from keap_pipeline.sandbox.contacts import CONTACT_FIELDS, DEFAULT_LIST_FIELDS, js, wire_json
from keap_pipeline.sandbox.entities import EntitySpec
from keap_pipeline.sandbox.errors import ApiError, TimeFormatError
from keap_pipeline.sandbox.state import SandboxState

MAX_PAGE_SIZE = 1000
# The spec gives page_size no default (minimum 0, example 0); as in Google's AIP-158, which Keap v2
# follows, 0 or absent means "the server's default", here the maximum.
DEFAULT_PAGE_SIZE = 1000

Key = tuple[Any, ...]
# What a filter check or an order_by extractor may raise on a record that is not shaped as Keap's
# (a test's raw or changed record): that record does not match, or sorts as having no value.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, TimeFormatError)


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise ApiError(400, f"page_size {raw!r} is not an integer") from None
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise ApiError(400, f"page_size must be between 0 and {MAX_PAGE_SIZE}, got {size}")
    return size or DEFAULT_PAGE_SIZE


def _order(spec: EntitySpec, raw: str | None) -> tuple[str, bool]:
    if not raw:
        return "", False  # the default: id ascending
    parts = raw.split()
    if len(parts) not in (1, 2) or parts[0] not in spec.order or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
        raise ApiError(
            400,
            f"order_by {raw!r} is not '<field> [asc|desc]' with field one of {', '.join(spec.order)}",
        )
    return parts[0], len(parts) == 2 and parts[1] == "desc"


def _digest(spec: EntitySpec, filter_text: str, order: str, desc: bool) -> str:
    text = f"{spec.name}|{filter_text}|{order}|{desc}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(digest: str, key: Key) -> str:
    """An opaque page token: the query it belongs to and the last sort key returned.

    Args:
        digest: hash of the query the token belongs to.
        key: the sort key / cache key.

    Returns:
        The token (URL-safe base64).
    """
    # ASCII escapes: a key taken from a test's hostile record may hold a lone surrogate
    raw = json.dumps({"q": digest, "k": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, digest: str) -> Key:
    """The sort key inside a page token.

    Raises:
        ApiError: 400 if the token is malformed or belongs to another query.

    Args:
        token: a page token or bearer token.
        digest: hash of the query the token belongs to.

    Returns:
        The sort key.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, query = tuple(data["k"]), data["q"]
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "page_token is not a token this API issued") from None
    if query != digest:
        raise ApiError(400, "page_token belongs to a different filter or order_by; repeat the query it came from")
    return key


class Lister:
    """One list request against one entity."""

    def __init__(self, state: SandboxState, spec: EntitySpec, params: dict[str, str]) -> None:
        self.state = state
        self.spec = spec
        self.data = state.data
        self.size = _page_size(params.get("page_size"))
        self.order, self.desc = _order(spec, params.get("order_by"))
        filter_text = params.get("filter", "")
        self.filter = filters.parse(filter_text, spec.filters)
        self.digest = _digest(spec, filter_text, self.order, self.desc)
        token = params.get("page_token")
        self.after: Key | None = decode_token(token, self.digest) if token else None
        self.is_contacts = spec.name == "contacts"
        self.overlay = state.overlays[spec.name]
        self.count = self.data.count(spec.name)
        self.timeline = self.data.timelines[spec.name]
        self.fields = self._fields(params.get("fields"))

    def _fields(self, raw: str | None) -> tuple[str, ...] | None:
        if raw is None or not self.spec.fields_param:
            return None
        names = tuple(n for n in raw.split(",") if n)
        allowed = self._schema_properties()
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ApiError(400, f"fields: unknown properties {', '.join(unknown)}")
        return names

    def _schema_properties(self) -> frozenset[str]:
        from keap_pipeline.sandbox.contract import load_contract

        schema = "Contact" if self.is_contacts else "Company"
        return frozenset(load_contract()["components"]["schemas"][schema]["properties"])

    # --- candidates --------------------------------------------------------------------------------
    def _max_id(self) -> int:
        return self.state.max_id(self.spec.name)

    def _time(self, ident: int) -> int | None:
        entry = self.overlay.get(ident)
        if entry is not None:
            return entry.time_ms if entry.record is not None else None
        if 1 <= ident <= self.count:
            return self.timeline.time_ms(ident)
        return None

    def _in_window(self, t: int) -> bool:
        f = self.filter
        return (f.lo_ms is None or t >= f.lo_ms) and (f.hi_ms is None or t <= f.hi_ms)

    def _by_id(self) -> Iterator[tuple[Key, int]]:
        after = self.after[0] if self.after else None
        if self.filter.ids is not None:
            seq: Any = sorted(self.filter.ids, reverse=self.desc)
        elif (narrow := self._narrow_window_ids()) is not None:
            seq = sorted(narrow, reverse=self.desc)
        elif self.desc:
            seq = range(self._max_id() if after is None else min(after - 1, self._max_id()), 0, -1)
        else:
            seq = range(1 if after is None else after + 1, self._max_id() + 1)
        windowed = self.filter.lo_ms is not None or self.filter.hi_ms is not None
        overlay, count = self.overlay, self.count
        for ident in seq:
            if after is not None and (ident <= after if not self.desc else ident >= after):
                continue
            if not self.filter.id_ok(ident):
                continue
            if windowed:
                t = self._time(ident)
                if t is None or not self._in_window(t):
                    continue
            elif ident in overlay:
                if overlay[ident].record is None:
                    continue  # deleted
            elif not 1 <= ident <= count:
                continue
            yield (ident,), ident

    def _narrow_window_ids(self) -> list[int] | None:
        """The ids inside a time window that holds few of the records, or None to scan ids instead.

        A window over a quarter or less of the records is enumerated through the timeline (plus
        the changed contacts) and sorted, O(m log m) for m records in it; a wide one is cheaper to
        walk in id order, checking each id's time.
        """
        f = self.filter
        if f.lo_ms is None and f.hi_ms is None or self.spec.time_field is None:
            return None
        timeline, overlay = self.timeline, self.overlay
        if timeline.count_window(f.lo_ms, f.hi_ms) * 4 > max(1, timeline.n):
            return None
        ids = [i for _, i in timeline.iter_window(f.lo_ms, f.hi_ms, None, False) if i not in overlay]
        keys = self.state.changed_by_time(self.spec.name)
        start, end = self._window_span(keys)
        ids += [keys[k][1] for k in range(start, end)]
        return ids

    def _window_span(self, keys: list[tuple[int, int]]) -> tuple[int, int]:
        """The index range of sorted (time_ms, id) keys inside the filter's time window (bounds inclusive)."""
        f = self.filter
        start = 0 if f.lo_ms is None else bisect.bisect_left(keys, (f.lo_ms, -1))  # ids are 1 or more
        end = len(keys) if f.hi_ms is None else bisect.bisect_left(keys, (f.hi_ms + 1, -1))
        return start, max(start, end)

    def _by_time(self) -> Iterator[tuple[Key, int]]:
        f = self.filter
        after = (int(self.after[0]), int(self.after[1])) if self.after else None
        timeline, overlay = self.timeline, self.overlay
        if not overlay:  # nothing changed: the timeline alone
            for key in timeline.iter_window(f.lo_ms, f.hi_ms, after, self.desc):
                if f.id_ok(key[1]):
                    yield key, key[1]
            return
        # a changed record leaves its base place and is merged in at its new time
        base = (
            (key, key[1])
            for key in timeline.iter_window(f.lo_ms, f.hi_ms, after, self.desc)
            if key[1] not in overlay
        )
        # the changed records in the window after the page token's key, in order: a slice of the sorted keys
        keys = self.state.changed_by_time(self.spec.name)
        start, end = self._window_span(keys)
        if after is not None:
            if self.desc:
                end = min(end, bisect.bisect_left(keys, after))
            else:
                start = max(start, bisect.bisect_right(keys, after))
        span = range(end - 1, start - 1, -1) if self.desc else range(start, end)
        changed = ((keys[k], keys[k][1]) for k in span)
        for key, ident in heapq.merge(base, changed, reverse=self.desc):
            if f.id_ok(ident):
                yield key, ident

    def _by_value(self) -> Iterator[tuple[Key, int]]:
        extract = self.spec.order[self.order]
        assert callable(extract)
        keyed = []
        for _, ident in self._by_id_all():
            try:
                value = extract(self._record(ident))
            except _SHAPE_ERRORS:
                value = None
            keyed.append((_value_key(value, ident), ident))
        keyed.sort(reverse=self.desc)
        for key, ident in keyed:
            if self.after is not None and (key <= self.after if not self.desc else key >= self.after):
                continue
            yield key, ident

    def _by_id_all(self) -> Iterator[tuple[Key, int]]:
        saved, self.after, desc = self.after, None, self.desc
        self.desc = False
        try:
            yield from self._by_id()
        finally:
            self.after, self.desc = saved, desc

    def _record(self, ident: int) -> dict[str, Any]:
        record = self.state.current(self.spec.name, ident)
        assert record is not None  # candidates are existing records
        return record

    def _matches(self, ident: int) -> bool:
        record = self._record(ident)
        try:
            return all(check(record) for check in self.filter.record_checks)
        except _SHAPE_ERRORS:
            return False

    # --- the page ----------------------------------------------------------------------------------
    def page(self) -> bytes:
        """The JSON body of this page: {"<list key>": [...], "next_page_token": "..."}."""
        return self.page_and_token()[0]

    def page_and_token(self) -> tuple[bytes, str]:
        """The JSON body of this page and its next_page_token ("" on the last page)."""
        kind = self.spec.order.get(self.order, "id") if self.order else "id"
        candidates = self._by_id() if kind == "id" else self._by_time() if kind == "time" else self._by_value()
        checks = self.filter.record_checks
        hides = self.state.listing_hides(self.spec.name)
        picked: list[tuple[Key, int]] = []
        for key, ident in candidates:
            if hides is not None and hides(ident):
                continue  # the fault: a listing that silently leaves records out
            if checks and not self._matches(ident):
                continue
            picked.append((key, ident))
            if len(picked) > self.size:
                break
        more = len(picked) > self.size
        picked = picked[: self.size]
        items = self._render([ident for _, ident in picked])
        token = encode_token(self.digest, picked[-1][0]) if more else ""
        texts = [i for i in items if isinstance(i, str)]
        if len(texts) < len(items):  # raw records: their bytes are served as they are
            parts = [i if isinstance(i, bytes) else i.encode() for i in items]
            head = f'{{"{self.spec.list_key}":['.encode()
            return head + b",".join(parts) + f'],"next_page_token":{js(token)}}}'.encode(), token
        body = f'{{"{self.spec.list_key}":[{",".join(texts)}],"next_page_token":{js(token)}}}'
        return body.encode(), token

    def _render(self, idents: list[int]) -> list[str | bytes]:
        overlay = self.overlay
        if not overlay or not any(i in overlay for i in idents):
            return list(self._generated(idents))
        generated = iter(self._generated([i for i in idents if i not in overlay]))
        out: list[str | bytes] = []
        for ident in idents:
            entry = overlay.get(ident)
            if entry is None:
                out.append(next(generated))
            elif entry.raw is not None:
                out.append(entry.raw)
            else:
                assert entry.record is not None
                out.append(wire_json(select(self.spec, entry.record, self.fields)))
        return out

    def _generated(self, idents: list[int]) -> list[str]:
        """Base records as JSON texts (contacts and orders straight to text, the others via dicts)."""
        if self.is_contacts:
            factory = self.data.contacts
            return factory.render_many(idents, factory.compile(self.fields))
        spec, record = self.spec, self.data.record
        if self.fields is None and not spec.not_default:  # the whole record: its text when it has one
            texts = self.data.texts(spec.name, idents)
            if texts is not None:
                return texts
        return [js(select(spec, record(spec.name, i), self.fields)) for i in idents]


def _value_key(value: Any, ident: int) -> Key:
    """The sort key of a record under a value ordering: no value first, then numbers, then text.

    A list sorts by its first item. Values of other kinds (only a test's changed or raw record
    has them) sort last, by their JSON text, so mixed kinds never make the sort fail.
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return (0, "", ident)
    if isinstance(value, str):
        return (2, value, ident)
    if isinstance(value, int | float):
        return (1, value, ident)
    return (3, js(value), ident)


def select(spec: EntitySpec, record: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """The properties of a record a list answer shows: `fields` if given, else the list default.

    Args:
        spec: the listed entity.
        record: a record with all its properties.
        fields: property names, or None for the list default.

    Returns:
        The properties to show.
    """
    if spec.name == "contacts":
        wanted = set(fields) if fields is not None else set(DEFAULT_LIST_FIELDS)
        wanted.add("id")
        extra = [k for k in record if k not in CONTACT_FIELDS and (fields is not None and k in wanted)]
        return {k: record[k] for k in (*CONTACT_FIELDS, *extra) if k in wanted and k in record}
    if spec.not_default:
        hidden = spec.not_default - set(fields or ())
        return {k: v for k, v in record.items() if k not in hidden}
    return record


def list_page(state: SandboxState, spec: EntitySpec, params: dict[str, str]) -> bytes:
    """Answer a list request, from the prefetched page when there is one, and prefetch the next.

    Args:
        state: the sandbox state (holds the prefetcher and the data version).
        spec: the entity listed.
        params: the decoded query parameters.

    Returns:
        The JSON body.

    Raises:
        ApiError: a bad parameter (checked before any prefetched page is used).
    """
    lister = Lister(state, spec, params)  # validates every parameter, cheap
    query = tuple(sorted((k, v) for k, v in params.items() if k != "page_token"))
    key = (spec.name, query, params.get("page_token", ""), state.version)
    future = state.prefetcher.take(key)
    body, token = future.result() if future is not None else lister.page_and_token()
    if token:
        following = {**params, "page_token": token}
        state.prefetcher.defer(
            (spec.name, query, token, key[3]),
            lambda: Lister(state, spec, following).page_and_token(),
        )
    return body
