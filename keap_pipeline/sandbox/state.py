"""SandboxState: the base dataset plus a small overlay of changed records per entity, OAuth tokens and recorded violations."""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from keap_pipeline.sandbox.config import SandboxConfig
from keap_pipeline.sandbox.contacts import CONTACT_FIELDS, wire_json
from keap_pipeline.sandbox.dataset import Dataset
from keap_pipeline.sandbox.entities import ENTITIES, EntitySpec
from keap_pipeline.sandbox.prefetch import PagePrefetcher
from keap_pipeline.sandbox.quota import Quota
from keap_pipeline.sandbox.timefmt import iso_ms
from keap_pipeline.sandbox.writes import WriteGate

MAX_VIOLATIONS = 1000


@dataclass
class OverlayEntry:
    """A changed record of one entity: its record (None once deleted) and its update time.

    ``raw``, when set, is served in list pages instead of the record, byte for byte: a test's (or
    ``--raw-records``) record exactly as given, hostile or not JSON at all. ``record`` is then
    what the bytes decode to, for filters and mutations ({} when they are not a JSON object).
    """

    record: dict[str, Any] | None
    time_ms: int
    raw: bytes | None = field(default=None, repr=False)


class SandboxState:
    """Everything a running sandbox knows, shared by its request threads (one lock guards changes).

    Tests and benchmarks reach it through SandboxHandle.state to change Keap between syncs. Every
    entity's records are generated from their id (Dataset); a change goes into that entity's
    overlay (``overlays[entity]``: id -> OverlayEntry), which listings and gets read first. An
    entity whose overlay is empty is served exactly as generated, at no extra cost.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.data = Dataset(config)
        self.lock = threading.RLock()
        self.overlays: dict[str, dict[int, OverlayEntry]] = {name: {} for name in ENTITIES}
        self.overlay = self.overlays["contacts"]  # the contacts' overlay, under its older name
        self._next_ids = {name: self.data.count(name) + 1 for name in ENTITIES}
        self._last_ms = 0
        self.quota = Quota(config.limits)
        self.version = 0  # bumped by every change, so no page rendered before it is served after it
        self.prefetcher = PagePrefetcher()
        self.violations: list[str] = []
        self.violation_count = 0
        # records left out of listings (a fault: the listing silently returns fewer records)
        self.hide_share = config.faults.hide_share
        self.hidden: dict[str, set[int]] = {name: set() for name in ENTITIES}
        self._deleted: dict[str, dict[int, OverlayEntry | None]] = {name: {} for name in ENTITIES}
        self.requests = 0
        self.refresh_token = config.oauth_refresh_token
        self.access_tokens: dict[str, float] = {}
        # every write answered 2xx, as (operationId, record id); and a test's hook around writes
        self.writes: list[tuple[str, int | None]] = []
        self.write_masks: list[tuple[str, int | None, tuple[str, ...] | None]] = []
        self.write_gate: WriteGate | None = None
        # per entity: (version, the (time_ms, id) keys of its overlay's existing records, sorted)
        self._changed_by_time: dict[str, tuple[int, list[tuple[int, int]]]] = {}
        for raw in config.raw_contacts:
            self._put_claimed("contacts", raw)
        for entity, lines in config.raw_records:
            for raw in lines:
                self._put_claimed(entity, raw)

    # --- time --------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Wall-clock milliseconds, strictly increasing across calls (two updates never share a time)."""
        with self.lock:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            return self._last_ms

    # --- any entity --------------------------------------------------------------------------------
    def _overlay(self, entity: str) -> dict[int, OverlayEntry]:
        try:
            return self.overlays[entity]
        except KeyError:
            raise KeyError(f"no entity {entity!r}; the sandbox serves {', '.join(ENTITIES)}") from None

    def changed_by_time(self, entity: str) -> list[tuple[int, int]]:
        """The (time_ms, id) of the entity's changed, created and raw records (not the deleted), sorted.

        Made once per version (every change bumps it) and shared by the listings until the next change:
        sorting the overlay for every page made a listing's cost grow with the overlay, page after page
        (measured small at 20,000 changed of 1M orders: 26 -> 24 us of sandbox CPU per record).
        Callers must not change the list.
        """
        with self.lock:
            cached = self._changed_by_time.get(entity)
            if cached is not None and cached[0] == self.version:
                return cached[1]
            keys = sorted((e.time_ms, i) for i, e in self._overlay(entity).items() if e.record is not None)
            self._changed_by_time[entity] = (self.version, keys)
            return keys

    def max_id(self, entity: str) -> int:
        """The highest id of an entity handed out so far (generated, created or placed raw).

        Args:
            entity: entity name (contacts, orders, tags, tag_categories, companies, products, subscriptions).

        Returns:
            The id (0 when there is none).
        """
        self._overlay(entity)
        return self._next_ids[entity] - 1

    def current(self, entity: str, ident: int) -> dict[str, Any] | None:
        """A record as served now, without a copy: read it, never change it (use update_record).

        Args:
            entity: entity name.
            ident: record id (ids are 1-based).

        Returns:
            The record (a changed record's stored dict, or a freshly generated one), or None if it
            does not exist.
        """
        entry = self._overlay(entity).get(ident)
        if entry is not None:
            return entry.record
        if 1 <= ident <= self.data.count(entity):
            return self.data.record(entity, ident)
        return None

    def record(self, entity: str, ident: int) -> dict[str, Any] | None:
        """A record's current properties (changed or generated), as a copy the caller may keep.

        Args:
            entity: entity name.
            ident: record id (ids are 1-based).

        Returns:
            The record with all its properties, or None if it does not exist (or was deleted).
        """
        entry = self._overlay(entity).get(ident)
        if entry is not None:
            return copy.deepcopy(entry.record)
        return self.current(entity, ident)

    def record_time(self, entity: str, ident: int) -> int | None:
        """A record's current update time in ms (what time windows and time ordering use).

        Args:
            entity: entity name.
            ident: record id (ids are 1-based).

        Returns:
            Epoch milliseconds, or None if the record does not exist.
        """
        entry = self._overlay(entity).get(ident)
        if entry is not None:
            return entry.time_ms if entry.record is not None else None
        if 1 <= ident <= self.data.count(entity):
            return self.data.timelines[entity].time_ms(ident)
        return None

    def update_record(
        self,
        entity: str,
        ident: int,
        changes: dict[str, Any],
        *,
        drop: Collection[str] = (),
        time_ms: int | None = None,
    ) -> dict[str, Any] | None:
        """Change a record's properties; it gets a fresh update time, so it shows in later windows.

        Each key of ``changes`` replaces that top-level property with the value given (nested
        values whole: an order's ``total``, a subscription's ``active``). The id, the creation
        times and the update time are the sandbox's: keys naming them are ignored. The update
        time (the entity's ``updated_field``: update_time, modification_time) becomes ``time_ms``.

        Args:
            entity: entity name.
            ident: record id.
            changes: property -> new value (JSON values).
            drop: properties to remove from the record.
            time_ms: the new update time (None: now, later than every earlier change).

        Returns:
            The updated record (a copy), or None if the record does not exist.

        Raises:
            ValueError: a value is not a JSON value.
        """
        return self._change(entity, ident, changes, drop, time_ms)

    def create_record(self, entity: str, fields: dict[str, Any], *, time_ms: int | None = None) -> dict[str, Any]:
        """Add a record with the next id after the highest; its creation and update times are now.

        Args:
            entity: entity name.
            fields: its properties (id and the sandbox's times are set, not taken from here).
            time_ms: its creation and update time (None: now).

        Returns:
            The new record (a copy), with its id.

        Raises:
            ValueError: a value is not a JSON value.
        """
        overlay = self._overlay(entity)
        spec = ENTITIES[entity]
        with self.lock:
            ident = self._next_ids[entity]
            when = self.now_ms() if time_ms is None else time_ms
            stamp = iso_ms(when)
            protected = _protected(spec)
            record = {"id": str(ident), **{k: v for k, v in copy.deepcopy(fields).items() if k not in protected}}
            record.update({name: stamp for name in spec.created_fields})
            if spec.updated_field is not None:
                record[spec.updated_field] = stamp
            record = _shaped(spec, record)
            self._next_ids[entity] = ident + 1
            overlay[ident] = OverlayEntry(record, when)
            self.version += 1
            return copy.deepcopy(record)

    def delete_record(self, entity: str, ident: int) -> bool:
        """Delete a record: gone from listings and gets from now on.

        Args:
            entity: entity name.
            ident: record id.

        Returns:
            False if the record did not exist.
        """
        overlay = self._overlay(entity)
        with self.lock:
            if self.current(entity, ident) is None:
                return False
            # kept for undelete_record (Keap's recycle bin): the entry it had, None when generated
            self._deleted[entity][ident] = overlay.get(ident)
            overlay[ident] = OverlayEntry(None, self.now_ms())
            self.version += 1
            return True

    def undelete_record(self, entity: str, ident: int) -> bool:
        """Bring a deleted record back as it was (restored from Keap's recycle bin, a merge undone).

        Args:
            entity: entity name.
            ident: record id.

        Returns:
            False if the record was not deleted through delete_record.
        """
        overlay = self._overlay(entity)
        with self.lock:
            if ident not in self._deleted[entity]:
                return False
            entry = self._deleted[entity].pop(ident)
            if entry is None:
                overlay.pop(ident, None)  # generated: served as generated again
            else:
                overlay[ident] = entry
            self.version += 1
            return True

    # --- listings that leave records out (a fault) ------------------------------------------------
    def hide_from_listings(self, entity: str, idents: Iterable[int]) -> None:
        """Leave these records out of the entity's listings (gets still find them), until shown again.

        Args:
            entity: entity name.
            idents: record ids.
        """
        self._overlay(entity)  # a known entity
        with self.lock:
            hidden = self.hidden[entity]
            hidden.update(idents)
            self.version += 1

    def set_hide_share(self, share: float) -> None:
        """Leave this share of every entity's records out of listings (the --hide-share fault; 0 = none).

        Args:
            share: 0 <= share < 1; the same records are left out on every page and request.

        Raises:
            ValueError: a share out of range.
        """
        if not 0.0 <= share < 1.0:
            raise ValueError(f"hide_share must be in [0, 1), got {share}")
        with self.lock:
            self.hide_share = share
            self.version += 1

    def show_in_listings(self) -> None:
        """List every record again (the hiding faults off)."""
        with self.lock:
            for hidden in self.hidden.values():
                hidden.clear()
            self.hide_share = 0.0
            self.version += 1

    def listing_hides(self, entity: str) -> Callable[[int], bool] | None:
        """A test of whether a listing of the entity leaves a record out, or None when it leaves none out."""
        hidden, share = self.hidden[entity], self.hide_share
        if not hidden and not share:
            return None
        salt = (self.config.seed * 1_000_003 + sum(map(ord, entity))) & 0xFFFFFFFF
        limit = int(share * 2**32)

        def hides(ident: int) -> bool:
            # a fixed multiplicative hash of the id: the same records on every page and request
            return ident in hidden or ((ident * 2654435761) ^ salt) & 0xFFFFFFFF < limit

        return hides

    # --- merging contacts (POST /v2/contacts:merge) ------------------------------------------------
    def merge_contacts(self, primary: int, duplicate: int) -> dict[str, Any] | None:
        """Merge the duplicate contact into the primary, as contacts:merge does.

        The primary keeps its values and gains what only the duplicate had (properties it lacks,
        tag ids it has not); the duplicate's orders and subscriptions now name the primary (each
        gets a fresh update time, so an incremental sync sees it); the duplicate is deleted.

        Args:
            primary: the contact that stays.
            duplicate: the contact merged into it (gone afterwards).

        Returns:
            The primary as merged, or None when either contact does not exist.
        """
        with self.lock:
            keep, gone = self.current("contacts", primary), self.current("contacts", duplicate)
            if keep is None or gone is None or primary == duplicate:
                return None
            protected = _protected(ENTITIES["contacts"])
            changes: dict[str, Any] = {k: v for k, v in gone.items() if k not in keep and k not in protected}
            tags = list(keep.get("tag_ids") or [])
            tags += [t for t in gone.get("tag_ids") or [] if t not in tags]
            if tags != list(keep.get("tag_ids") or []):
                changes["tag_ids"] = tags
            merged = self._change("contacts", primary, changes, (), None)
            moved_to = str(primary)
            for ident in range(1, self.max_id("orders") + 1):
                order = self.current("orders", ident)
                contact = order.get("contact") if order else None
                if isinstance(contact, dict) and contact.get("id") == str(duplicate):
                    self._change("orders", ident, {"contact": {**contact, "id": moved_to}}, (), None)
            for ident in range(1, self.max_id("subscriptions") + 1):
                subscription = self.current("subscriptions", ident)
                if subscription and subscription.get("contact_id") == str(duplicate):
                    self._change("subscriptions", ident, {"contact_id": moved_to}, (), None)
            self.delete_record("contacts", duplicate)
            return merged

    def put_raw_record(self, entity: str, raw: bytes | str, *, ident: int | None = None, time_ms: int | None = None) -> int:
        """Serve a record as exactly these bytes (any bytes: hostile values, broken JSON, another id).

        The bytes are served verbatim in list pages, whatever ``id`` or update time they claim;
        the sandbox places the record at ``ident`` (a new id when None) and at ``time_ms`` (now
        when None) for filters, ordering and paging; filters see what the bytes decode to ({}
        when that is not a JSON object). Several raw records may claim one id.

        Args:
            entity: entity name.
            raw: the record's JSON text or bytes (str is encoded as UTF-8; lone surrogates are
                not encodable, write them as escapes).
            ident: replace this record (None: a new slot after the highest id).
            time_ms: its update time in milliseconds since the epoch, for time windows and order.

        Returns:
            The slot's id.
        """
        overlay = self._overlay(entity)
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        try:
            decoded = json.loads(data)
        except (ValueError, RecursionError):
            decoded = None
        with self.lock:
            if ident is None:
                ident = self._next_ids[entity]
            self._next_ids[entity] = max(self._next_ids[entity], ident + 1)
            when = self.now_ms() if time_ms is None else time_ms
            record = decoded if isinstance(decoded, dict) else {}
            overlay[ident] = OverlayEntry(record, when, data)
            self.version += 1
            return ident

    def put_raw_records(self, entity: str, records: Iterable[tuple[bytes | str, int]]) -> list[int]:
        """Serve these raw records (bytes, update time in ms) in new slots; the entity's earlier changes are dropped.

        The generated records stay: start the sandbox with a count of 0 for that entity to serve
        only these (tag categories always have their 8).

        Args:
            entity: entity name.
            records: (bytes, time_ms) pairs.

        Returns:
            Their slot ids, in order.
        """
        overlay = self._overlay(entity)
        with self.lock:
            overlay.clear()
            self._next_ids[entity] = self.data.count(entity) + 1
            self.version += 1
            return [self.put_raw_record(entity, raw, time_ms=when) for raw, when in records]

    def _change(
        self, entity: str, ident: int, changes: dict[str, Any], drop: Iterable[str], time_ms: int | None,
        *, copied: bool = True,
    ) -> dict[str, Any] | None:
        overlay = self._overlay(entity)
        spec = ENTITIES[entity]
        protected = _protected(spec)
        with self.lock:
            stored = self.current(entity, ident)
            if stored is None:
                return None
            # a new top-level dict; the values not changed are shared with the record it replaces, which
            # is never changed in place (every change replaces top-level values), so no deep copy is needed
            current = dict(stored)
            for key, value in changes.items():
                if key not in protected:
                    current[key] = copy.deepcopy(value)
            for key in drop:
                if key not in protected:
                    current.pop(key, None)
            when = self.now_ms() if time_ms is None else time_ms
            if spec.updated_field is not None:
                current[spec.updated_field] = iso_ms(when)
            current = _shaped(spec, current)
            overlay[ident] = OverlayEntry(current, when)
            self.version += 1
            return copy.deepcopy(current) if copied else current

    def _put_claimed(self, entity: str, raw: bytes) -> None:
        """Place a --raw-records line: at the existing record its "id" names, at the time it claims."""
        spec = ENTITIES[entity]
        self.put_raw_record(
            entity, raw, ident=_existing_id(raw, self.max_id(entity)), time_ms=_claimed_time_ms(raw, spec.updated_field)
        )

    # --- keeping the changes across restarts (sandbox.saved_state) ---------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the API changed since the dataset was generated, as JSON values.

        Returns:
            {"last_ms", "next_ids", "overlays": {entity: [[id, time_ms, record or None, raw or None]]}};
            raw bytes as latin-1 text (one code point a byte, so JSON carries them exactly).
        """
        with self.lock:
            return {
                "last_ms": self._last_ms,
                "next_ids": dict(self._next_ids),
                "overlays": {
                    entity: [
                        [ident, e.time_ms, e.record, None if e.raw is None else e.raw.decode("latin-1")]
                        for ident, e in sorted(overlay.items())
                    ]
                    for entity, overlay in self.overlays.items()
                    if overlay
                },
            }

    def restore(self, snapshot: dict[str, Any]) -> int:
        """Put back what snapshot() returned (for the same dataset: same seed and counts).

        Args:
            snapshot: a snapshot() of an earlier sandbox.

        Returns:
            How many changed records it restored.

        Raises:
            KeyError, TypeError, ValueError: the snapshot is malformed or names an unknown entity.
        """
        # read it all before changing anything: a malformed snapshot leaves the state as it was
        entries: list[tuple[dict[int, OverlayEntry], int, OverlayEntry]] = []
        for entity, saved in snapshot["overlays"].items():
            overlay = self._overlay(entity)
            for ident, time_ms, record, raw in saved:
                if record is not None and not isinstance(record, dict):
                    raise TypeError(f"a saved {entity} record is not an object")
                entries.append((overlay, int(ident), OverlayEntry(record, int(time_ms), None if raw is None else raw.encode("latin-1"))))
        next_ids = {entity: int(next_id) for entity, next_id in snapshot["next_ids"].items() if self._overlay(entity) is not None}
        last_ms = int(snapshot["last_ms"])
        with self.lock:
            for overlay, ident, entry in entries:
                overlay[ident] = entry
            for entity, next_id in next_ids.items():
                self._next_ids[entity] = max(self._next_ids[entity], next_id)
            # times handed out after a restart stay later than every restored one
            self._last_ms = max(self._last_ms, last_ms)
            self.version += 1
        return len(entries)

    # --- contacts (the API's create / update / delete, and the older names tests use) --------------
    def max_contact_id(self) -> int:
        """The highest contact id handed out so far."""
        return self.max_id("contacts")

    def contact(self, ident: int) -> dict[str, Any] | None:
        """A contact's current record with all properties, or None if it does not exist.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The record, or None.
        """
        return self.record("contacts", ident)

    def contact_time(self, ident: int) -> int | None:
        """A contact's current update time in ms, or None if it does not exist.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The update time in ms, or None.
        """
        return self.record_time("contacts", ident)

    def create_contact(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add a contact (the body of POST /contacts, already checked).

        Args:
            fields: contact properties (CreateUpdateContactRequest).

        Returns:
            The new contact record with id, create_time and update_time.
        """
        return self.create_record("contacts", fields)

    def update_contact(
        self, ident: int, changes: dict[str, Any], mask: list[str] | None = None, *, copied: bool = True
    ) -> dict[str, Any] | None:
        """Change a contact; it gets a fresh update_time, so it shows up in later time windows.

        Args:
            ident: contact id.
            changes: new property values.
            mask: update_mask: only these properties are changed (None = every property given).
            copied: return a copy the caller may change (False: the stored record, read only; the
                API renders it and lets it go).

        Returns:
            The updated record, or None if the contact does not exist.
        """
        if mask is None:
            return self._change("contacts", ident, changes, (), None, copied=copied)
        given = {key: changes[key] for key in mask if key in changes}
        # masked but absent: cleared
        return self._change("contacts", ident, given, [key for key in mask if key not in changes], None, copied=copied)

    def put_raw_contact(self, raw: bytes | str, *, ident: int | None = None, time_ms: int | None = None) -> int:
        """Serve a contact as exactly these bytes: put_raw_record("contacts", ...).

        Args:
            raw: the record's JSON text or bytes.
            ident: replace this contact (None: a new contact slot).
            time_ms: its update time in milliseconds since the epoch, for the time filters.

        Returns:
            The slot's id.
        """
        return self.put_raw_record("contacts", raw, ident=ident, time_ms=time_ms)

    def put_raw_contacts(self, records: Iterable[tuple[bytes | str, int]]) -> list[int]:
        """Serve only these raw contacts (raw bytes, update time in ms): put_raw_records("contacts", ...).

        Meant for a sandbox started with contacts=0 (the generated contacts stay otherwise).

        Args:
            records: (bytes, time_ms) pairs.

        Returns:
            Their slot ids, in order.
        """
        return self.put_raw_records("contacts", records)

    def delete_contact(self, ident: int) -> bool:
        """Delete a contact; returns False if it did not exist.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            False if the contact did not exist.
        """
        return self.delete_record("contacts", ident)

    # --- writes: the log and the test's gate (sandbox.writes) ----------------------------------------
    def record_write(self, op: str, ident: int | None, mask: list[str] | None = None) -> None:
        """Log a write that was applied (tests count what a pusher sent, and what its update_mask named).

        Args:
            op: the operationId.
            ident: the record written (the created one's id for a create).
            mask: the update_mask, if the request had one.
        """
        with self.lock:
            self.writes.append((op, ident))
            self.write_masks.append((op, ident, None if mask is None else tuple(mask)))

    def gate_before(self, op: str, ident: int | None) -> None:
        """The test's hook before a write is applied (nothing when no gate is set)."""
        gate = self.write_gate
        if gate is not None:
            gate.before(op, ident)

    def gate_after(self, op: str, ident: int | None) -> None:
        """The test's hook after a write is applied, before it is answered (nothing when no gate is set)."""
        gate = self.write_gate
        if gate is not None:
            gate.after(op, ident)

    # --- OAuth -------------------------------------------------------------------------------------
    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """Trade the current refresh token for a new pair; the old refresh token stops working.

        Returns:
            The token response, or None if the refresh token is not the current one.

        Args:
            refresh_token: the refresh token presented.
        """
        with self.lock:
            if not secrets.compare_digest(refresh_token.encode(), self.refresh_token.encode()):
                return None
            access = "sbx-at-" + secrets.token_urlsafe(24)
            self.refresh_token = "sbx-rt-" + secrets.token_urlsafe(24)
            ttl = self.config.access_token_ttl_s
            self.access_tokens[access] = time.monotonic() + ttl
            return {"access_token": access, "token_type": "bearer", "expires_in": ttl,
                    "refresh_token": self.refresh_token, "scope": "full"}

    def access_token_valid(self, token: str) -> bool:
        """Whether a bearer token is a live access token.

        Args:
            token: a page token or bearer token.

        Returns:
            True if it is live.
        """
        expiry = self.access_tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired (for the client's refresh-on-401 test)."""
        with self.lock:
            self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    # --- strict mode -------------------------------------------------------------------------------
    def record_violations(self, problems: list[str]) -> None:
        """Keep contract violations found in strict mode (the first MAX_VIOLATIONS; all are counted).

        Args:
            problems: violations found.
        """
        if not problems:
            return
        with self.lock:
            self.violation_count += len(problems)
            room = MAX_VIOLATIONS - len(self.violations)
            self.violations.extend(problems[: max(0, room)])


def _protected(spec: EntitySpec) -> frozenset[str]:
    """Properties only the sandbox sets: the id, the creation times, the update time."""
    return frozenset({"id", *spec.created_fields, *((spec.updated_field,) if spec.updated_field else ())})


def _shaped(spec: EntitySpec, record: dict[str, Any]) -> dict[str, Any]:
    """A changed record checked to be JSON and put in the order the entity's records are written."""
    try:
        wire_json(record)
    except (TypeError, ValueError) as err:
        raise ValueError(f"a {spec.name} record takes JSON values only: {err}") from None
    if spec.name == "contacts":
        rank = {f: i for i, f in enumerate(CONTACT_FIELDS)}
        return dict(sorted(record.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return record


def _existing_id(raw: bytes, max_id: int) -> int | None:
    """The record a --raw-records line replaces: its "id", when that is an existing record's."""
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    ident = decoded.get("id") if isinstance(decoded, dict) else None
    if isinstance(ident, str) and ident.isascii() and ident.isdigit() and 1 <= int(ident) <= max_id:
        return int(ident)
    return None


def _claimed_time_ms(raw: bytes, time_field: str | None) -> int | None:
    """The update time a raw record claims in its time field, in ms, when it is a valid one (else None: now)."""
    from datetime import UTC, datetime, timedelta

    if time_field is None:
        return None
    try:
        decoded = json.loads(raw)
        moment = datetime.fromisoformat(decoded[time_field])
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
