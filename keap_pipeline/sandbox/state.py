"""SandboxState: the base dataset plus a small overlay of changed contacts, OAuth tokens and recorded violations."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from keap_pipeline.sandbox.config import SandboxConfig
from keap_pipeline.sandbox.contacts import CONTACT_FIELDS
from keap_pipeline.sandbox.dataset import Dataset
from keap_pipeline.sandbox.prefetch import PagePrefetcher
from keap_pipeline.sandbox.quota import Quota
from keap_pipeline.sandbox.timefmt import iso_ms

MAX_VIOLATIONS = 1000


@dataclass
class OverlayEntry:
    """A changed contact: its record (None once deleted) and its update time.

    ``raw``, when set, is served in list pages instead of the record, byte for byte: a test's (or
    ``--raw-contacts``) record exactly as given, hostile or not JSON at all. ``record`` is then
    what the bytes decode to, for filters and mutations ({} when they are not a JSON object).
    """

    record: dict[str, Any] | None
    time_ms: int
    raw: bytes | None = field(default=None, repr=False)


class SandboxState:
    """Everything a running sandbox knows, shared by its request threads (one lock guards changes).

    Tests and benchmarks reach it through SandboxHandle.state to change Keap between syncs.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.data = Dataset(config)
        self.lock = threading.RLock()
        self.overlay: dict[int, OverlayEntry] = {}
        # entity -> id -> bytes served instead of that generated record (entities other than contacts)
        self.raw_records: dict[str, dict[int, bytes]] = {}
        self.next_contact_id = self.data.count("contacts") + 1
        self._last_ms = 0
        self.quota = Quota(config.limits)
        self.version = 0  # bumped by every change, so no page rendered before it is served after it
        self.prefetcher = PagePrefetcher()
        self.violations: list[str] = []
        self.violation_count = 0
        self.requests = 0
        self.refresh_token = config.oauth_refresh_token
        self.access_tokens: dict[str, float] = {}
        for raw in config.raw_contacts:
            self.put_raw_contact(raw, ident=_existing_id(raw, self.next_contact_id - 1), time_ms=_update_time_ms(raw))

    # --- time --------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Wall-clock milliseconds, strictly increasing across calls (two updates never share a time)."""
        with self.lock:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            return self._last_ms

    # --- contacts ----------------------------------------------------------------------------------
    def max_contact_id(self) -> int:
        """The highest contact id handed out so far."""
        return self.next_contact_id - 1

    def contact(self, ident: int) -> dict[str, Any] | None:
        """A contact's current record with all properties, or None if it does not exist.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The record, or None.
        """
        entry = self.overlay.get(ident)
        if entry is not None:
            return dict(entry.record) if entry.record is not None else None
        if 1 <= ident <= self.data.count("contacts"):
            return self.data.contacts.as_dict(ident)
        return None

    def contact_time(self, ident: int) -> int | None:
        """A contact's current update time in ms, or None if it does not exist.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The update time in ms, or None.
        """
        entry = self.overlay.get(ident)
        if entry is not None:
            return entry.time_ms if entry.record is not None else None
        if 1 <= ident <= self.data.count("contacts"):
            return self.data.timelines["contacts"].time_ms(ident)
        return None

    def create_contact(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add a contact (the body of POST /contacts, already checked).

        Args:
            fields: contact properties (CreateUpdateContactRequest).

        Returns:
            The new contact record with id, create_time and update_time.
        """
        with self.lock:
            ident = self.next_contact_id
            self.next_contact_id += 1
            now = self.now_ms()
            record = {"id": str(ident), **_contact_props(fields), "create_time": iso_ms(now), "update_time": iso_ms(now)}
            self.overlay[ident] = OverlayEntry(_ordered(record), now)
            self.version += 1
            return dict(record)

    def update_contact(self, ident: int, changes: dict[str, Any], mask: list[str] | None = None) -> dict[str, Any] | None:
        """Change a contact; it gets a fresh update_time, so it shows up in later time windows.

        Args:
            ident: contact id.
            changes: new property values.
            mask: update_mask: only these properties are changed (None = every property given).

        Returns:
            The updated record, or None if the contact does not exist.
        """
        with self.lock:
            current = self.contact(ident)
            if current is None:
                return None
            props = _contact_props(changes)
            keys = mask if mask is not None else list(props)
            for key in keys:
                if key in ("id", "create_time", "update_time"):
                    continue
                if key in props:
                    current[key] = props[key]
                else:
                    current.pop(key, None)  # masked but absent: cleared, as an update mask means
            now = self.now_ms()
            current["update_time"] = iso_ms(now)
            self.overlay[ident] = OverlayEntry(_ordered(current), now)
            self.version += 1
            return dict(current)

    def put_raw_contact(self, raw: bytes | str, *, ident: int | None = None, time_ms: int | None = None) -> int:
        """Serve a contact as exactly these bytes (any bytes: hostile values, broken JSON, another id).

        The bytes are served verbatim in list pages, whatever ``id`` or ``update_time`` they
        claim; the sandbox places the record at ``ident`` (a new id when None) and at ``time_ms``
        (now when None) for filters, ordering and paging. Several raw records may claim one id.

        Args:
            raw: the record's JSON text or bytes (str is encoded as UTF-8; lone surrogates are
                not encodable, write them as escapes).
            ident: replace this contact (None: a new contact slot).
            time_ms: its update time in milliseconds since the epoch, for the time filters.

        Returns:
            The slot's id.
        """
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        try:
            decoded = json.loads(data)
        except (ValueError, RecursionError):
            decoded = None
        with self.lock:
            if ident is None:
                ident = self.next_contact_id
                self.next_contact_id += 1
            elif ident >= self.next_contact_id:
                self.next_contact_id = ident + 1
            when = self.now_ms() if time_ms is None else time_ms
            record = decoded if isinstance(decoded, dict) else {}
            self.overlay[ident] = OverlayEntry(record, when, data)
            self.version += 1
            return ident

    def put_raw_record(self, entity: str, raw: bytes | str, *, ident: int) -> None:
        """Serve record `ident` of an entity as exactly these bytes in list pages (contacts: put_raw_contact).

        The record keeps its place (id, update time) for filters, ordering and paging; only the
        bytes served change, e.g. a tag category with a name too long, a NUL, or no id at all.

        Args:
            entity: the entity (contacts, tags, tag_categories, products, orders, subscriptions, companies).
            raw: the bytes (str is encoded as UTF-8).
            ident: an existing record id of that entity (1-based).

        Raises:
            ValueError: no such generated record.
        """
        if entity == "contacts":
            self.put_raw_contact(raw, ident=ident)
            return
        if not 1 <= ident <= self.data.count(entity):
            raise ValueError(f"no generated {entity} record {ident} to replace")
        with self.lock:
            self.raw_records.setdefault(entity, {})[ident] = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
            self.version += 1

    def put_raw_contacts(self, records: Iterable[tuple[bytes | str, int]]) -> list[int]:
        """Serve only these raw contacts (raw bytes, update time in ms), in new slots: every earlier change is dropped.

        Meant for a sandbox started with contacts=0 (the generated contacts stay otherwise).

        Args:
            records: (bytes, time_ms) pairs.

        Returns:
            Their slot ids, in order.
        """
        with self.lock:
            self.overlay.clear()
            self.next_contact_id = self.data.count("contacts") + 1
            self.version += 1
            return [self.put_raw_contact(raw, time_ms=when) for raw, when in records]

    def delete_contact(self, ident: int) -> bool:
        """Delete a contact; returns False if it did not exist.

        Args:
            ident: record id (ids are 1-based).

        Returns:
            False if the contact did not exist.
        """
        with self.lock:
            if self.contact(ident) is None:
                return False
            self.overlay[ident] = OverlayEntry(None, self.now_ms())
            self.version += 1
            return True

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


def _existing_id(raw: bytes, max_id: int) -> int | None:
    """The contact a --raw-contacts line replaces: its "id", when that is an existing contact's."""
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    ident = decoded.get("id") if isinstance(decoded, dict) else None
    if isinstance(ident, str) and ident.isascii() and ident.isdigit() and 1 <= int(ident) <= max_id:
        return int(ident)
    return None


def _update_time_ms(raw: bytes) -> int | None:
    """The update time a raw record claims, in ms, when it is a valid one (else None: now)."""
    from datetime import UTC, datetime, timedelta

    try:
        decoded = json.loads(raw)
        moment = datetime.fromisoformat(decoded["update_time"])
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _contact_props(fields: dict[str, Any]) -> dict[str, Any]:
    """A request body's properties as a stored contact has them (requests use EmailAddressRequest etc.)."""
    out = {k: v for k, v in fields.items() if k in CONTACT_FIELDS and k not in ("id", "create_time", "update_time")}
    for key in fields:
        if key not in out and key not in ("id", "create_time", "update_time"):
            out[key] = fields[key]  # spec properties the generator never fills are kept as given
    return out


def _ordered(record: dict[str, Any]) -> dict[str, Any]:
    """Properties in the order base contacts are written, unknown ones after."""
    rank = {f: i for i, f in enumerate(CONTACT_FIELDS)}
    return dict(sorted(record.items(), key=lambda kv: rank.get(kv[0], len(rank))))
