"""Contacts rendered straight to JSON text from their id: pools of pre-escaped fragments, no dicts."""

from __future__ import annotations

import _random
import json
import random
import threading
from collections.abc import Callable, Sequence

from keap_pipeline.sandbox import pools
from keap_pipeline.sandbox.model import FIELD_TYPES, USER_IDS, content_json
from keap_pipeline.sandbox.timefmt import iso_ms
from keap_pipeline.sandbox.timeline import Timeline, create_time_ms

M64 = (1 << 64) - 1
POOL = 512  # entries per pre-rendered pool: enough variety, a few hundred KB in all

# Every property a sandbox contact can carry, in the order they are written.
CONTACT_FIELDS: tuple[str, ...] = (
    "id", "given_name", "middle_name", "family_name", "preferred_name", "email_addresses", "phone_numbers",
    "addresses", "company", "job_title", "website", "birth_date", "contact_type", "source_type", "owner_id",
    "score_value", "time_zone", "preferred_locale", "tag_ids", "custom_fields", "create_time", "update_time",
)
# The spec says nothing about the list default for contacts; like companies (where the spec says
# custom_fields and others "aren't included by default") the sandbox leaves custom_fields out
# unless asked for, so a client that forgets `fields` notices.
DEFAULT_LIST_FIELDS: tuple[str, ...] = tuple(f for f in CONTACT_FIELDS if f != "custom_fields")

Fragment = Callable[[int, int, int], str]


def js(value: object) -> str:
    """Compact JSON of a value, UTF-8 kept as is (Keap answers in UTF-8, not \\u escapes).

    Args:
        value: any JSON-serialisable value.

    Returns:
        Compact JSON text.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def wire_json(value: object) -> str:
    """JSON text of a value that always encodes as UTF-8: js(), or with \\u escapes where js() cannot be.

    A string holding a lone surrogate (a test's hostile value) has no UTF-8 form; Keap writes such
    a character as its escape (``"\\ud83d"``), and so does this.

    Args:
        value: any JSON-serialisable value.

    Returns:
        Compact JSON text.
    """
    text = js(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


def mix(ident: int, salt: int) -> tuple[int, int]:
    """Two well-mixed 64-bit hashes of an id (splitmix64 steps): every random choice of a record

    Args:
        ident: record id (ids are 1-based).
        salt: the entity's hash salt (from the seed).

    Returns:
        (h, h2), two 64-bit hashes.
    is a bit slice of these, so a record depends on (seed, id) only."""
    h = (ident * 0x9E3779B97F4A7C15 + salt) & M64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & M64
    h ^= h >> 31
    h2 = ((h ^ (h >> 29)) * 0xBF58476D1CE4E5B9 + 0x632BE59BD9B4E019) & M64
    return h, h2 ^ (h2 >> 32)


_LOCAL = threading.local()


def seeded(h: int) -> random.Random:
    """This thread's generator, seeded as random.Random(h) is: the same draws, no new generator.

    _random.Random.seed is what Random(h) runs for an int (random.Random.seed adds type checks
    and resets gauss_next, which nothing here uses). One generator per thread: list pages are
    rendered on request threads and the prefetch worker at once. Take every draw of a record
    before calling anything that may seed again (another record's generator).

    Args:
        h: the seed (a record's hash).

    Returns:
        The seeded generator.
    """
    rng: random.Random | None = getattr(_LOCAL, "rng", None)
    if rng is None:
        rng = _LOCAL.rng = random.Random()
    _random.Random.seed(rng, h)
    return rng


def below(getrandbits: Callable[[int], int], n: int) -> int:
    """random.Random.randrange(n) for n > 0, and the index choice() takes of n items (_randbelow).

    The same draws as randrange(n), so records keep the values they had when generated with it
    (tests/sandbox/test_render_pinned.py fails if a Python release changes the algorithm).

    Args:
        getrandbits: a seeded generator's getrandbits.
        n: the bound (> 0).

    Returns:
        A number in [0, n).
    """
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return r


def company_name(cid: int) -> str:
    """The name of company id cid (the same function renders the company and a contact's link).

    Args:
        cid: company id.

    Returns:
        The company's name.
    """
    words, suffixes = pools.COMPANY_WORDS, pools.COMPANY_SUFFIXES
    return f"{words[cid % len(words)]} {suffixes[(cid // len(words)) % len(suffixes)]} {cid}"


class ContactFactory:
    """Renders contact ids 1..n of one seed as JSON objects, all properties or a chosen few."""

    def __init__(self, seed: int, n: int, n_tags: int, n_companies: int, timeline: Timeline) -> None:
        self.n = n
        self.salt = (seed * 0x2545F4914F6CDD1D) & M64
        self.timeline = timeline
        rng = random.Random(seed * 1_000_003 + 17)
        self._given = [js(g) for g, _ in pools.GIVEN_NAMES]
        self._given_ascii = [a for _, a in pools.GIVEN_NAMES]
        self._family = [js(f) for f, _ in pools.FAMILY_NAMES]
        self._family_ascii = [a for _, a in pools.FAMILY_NAMES]
        self._middle = ['"middle_name":' + js(m) for m in pools.MIDDLE_NAMES]
        self._preferred = ['"preferred_name":' + js(p) for p in pools.PREFERRED_NAMES]
        self._jobs = ['"job_title":' + js(j) for j in pools.JOB_TITLES]
        self._zones = ['"time_zone":' + js(z) for z in pools.TIME_ZONES]
        self._locales = ['"preferred_locale":' + js(x) for x in pools.LOCALES]
        self._types = ['"contact_type":' + js(x) for x in pools.CONTACT_TYPES]
        self._sources = ['"source_type":' + js(x) for x in pools.SOURCE_TYPES]
        self._owners = ['"owner_id":' + js(x) for x in USER_IDS]
        self._opt = [js(x) for x in pools.OPT_STATUSES]
        self._domains = pools.EMAIL_DOMAINS
        self._phones = [self._phone_list(rng) for _ in range(POOL)]
        self._addresses = [self._address_list(rng) for _ in range(POOL)]
        # the first address of each pool entry, as JSON text (what an order's shipping shows)
        self._first_addresses = [js(json.loads(a.removeprefix('"addresses":'))[0]) for a in self._addresses]
        self._tags = [self._tag_list(rng, n_tags) for _ in range(POOL)]
        self._custom = [self._custom_list(rng) for _ in range(POOL)]
        self._births = [f'"birth_date":"{iso_ms(rng.randint(-631_152_000_000, 1_104_537_600_000))[:10]}"' for _ in range(64)]
        self.n_companies = n_companies
        self._fragments: dict[str, Fragment] = self._build_fragments()
        self._compiled: dict[tuple[str, ...], tuple[Fragment, ...]] = {}

    # --- pools -----------------------------------------------------------------------------------
    @staticmethod
    def _phone_list(rng: random.Random) -> str:
        count = rng.choice((1, 1, 1, 2, 2, 3))
        items = []
        for slot in range(count):
            number, kind = rng.choice(pools.PHONES)
            ext = rng.choice(pools.PHONE_EXTENSIONS)
            items.append({"number": number, **({"extension": ext} if ext else {}), "type": kind, "field": f"PHONE{slot + 1}"})
        return '"phone_numbers":' + js(items)

    @staticmethod
    def _address_list(rng: random.Random) -> str:
        fields = rng.sample(pools.ADDRESS_FIELDS, rng.choice((1, 1, 1, 2, 3)))
        items = []
        for field in fields:
            line1, locality, region, postal, country = rng.choice(pools.ADDRESSES)
            item = {"line1": line1, "locality": locality, "region_code": region, "postal_code": postal,
                    "country_code": country, "field": field}
            if rng.random() < 0.2:
                item["line2"] = rng.choice(("Apt 4B", "3. OG", "Suite 100", "c/o Ñúñez"))
            items.append(item)
        return '"addresses":' + js(items)

    @staticmethod
    def _tag_list(rng: random.Random, n_tags: int) -> str:
        if n_tags == 0:
            return '"tag_ids":[]'
        count = min(n_tags, rng.choice((0, 0, 1, 1, 2, 3, 5)))
        return '"tag_ids":' + js([str(t) for t in sorted(rng.sample(range(1, n_tags + 1), count))])

    @staticmethod
    def _custom_list(rng: random.Random) -> str:
        chosen = sorted(rng.sample(range(1, len(FIELD_TYPES) + 1), rng.choice((0, 2, 4, 6, 8))))
        parts = [f'{{"id":"{fid}","content":{content_json(FIELD_TYPES[fid - 1], rng)}}}' for fid in chosen]
        return '"custom_fields":[' + ",".join(parts) + "]"

    # --- fragments -------------------------------------------------------------------------------
    def _email_parts(self, i: int, h: int, h2: int) -> tuple[str, str, str] | None:
        """(ascii given, ascii family, first e-mail) of contact i, or None if it has no e-mail."""
        if h2 % 100 < 8:
            return None  # no e-mail: Keap allows a phone-only contact
        g = self._given_ascii[(h >> 8) % len(self._given_ascii)]
        f = self._family_ascii[(h >> 16) % len(self._family_ascii)]
        d = self._domains[(h2 >> 8) % len(self._domains)]
        first = f"{g}.{f}{i}@{d}" if (h2 >> 24) % 10 else f"{g.title()}.{f.upper()}{i}@{d.upper()}"
        return g, f, first

    def _emails(self, i: int, h: int, h2: int) -> str:
        parts = self._email_parts(i, h, h2)
        if parts is None:
            return ""
        g, f, first = parts
        roll = h2 % 100
        opt = self._opt[(h2 >> 16) % len(self._opt)]
        out = f'"email_addresses":[{{"email":"{first}","field":"EMAIL1","email_opt_status":{opt}}}'
        if roll >= 78:
            out += f',{{"email":"{g}{i}@{self._domains[(h2 >> 28) % len(self._domains)]}","field":"EMAIL2"}}'
        if roll >= 93:
            out += f',{{"email":"{f}.{g}+keap{i}@example.com","field":"EMAIL3"}}'
        return out + "]"

    @staticmethod
    def _address_slot(h: int) -> int:
        """Index into the address pool of a contact hashed h, or -1 if it has no address."""
        return (h >> 33) % POOL if (h >> 52) % 10 < 8 else -1

    def order_fields(self, ident: int) -> tuple[str, str, str | None, str | None]:
        """What an order copies from contact `ident`, as JSON texts, without rendering the contact.

        The same bit slices as the contact's own fragments, so an order shows what the contact does.

        Args:
            ident: contact id.

        Returns:
            (given_name, family_name, first e-mail or None, first address or None), the names and
            the address as JSON texts, the e-mail as JSON text too.
        """
        h, h2 = mix(ident, self.salt)
        parts = self._email_parts(ident, h, h2)
        slot = self._address_slot(h)
        return (
            self._given[(h >> 8) % len(self._given)],
            self._family[(h >> 16) % len(self._family)],
            f'"{parts[2]}"' if parts is not None else None,  # as the contact writes it: ASCII, no escapes
            self._first_addresses[slot] if slot >= 0 else None,
        )

    def _build_fragments(self) -> dict[str, Fragment]:
        given, family, phones, addresses = self._given, self._family, self._phones, self._addresses
        tl, n, nc = self.timeline, self.n, self.n_companies

        # company_name() pieces, JSON-escaped once (without their quotes) instead of per record
        words = [js(w)[1:-1] for w in pools.COMPANY_WORDS]
        suffixes = [js(x)[1:-1] for x in pools.COMPANY_SUFFIXES]
        nw, ns = len(words), len(suffixes)

        def company(i: int, h: int, h2: int) -> str:
            if nc == 0 or (h >> 40) % 10 < 4:
                return ""
            cid = (h2 >> 20) % nc + 1
            return f'"company":{{"id":"{cid}","company_name":"{words[cid % nw]} {suffixes[(cid // nw) % ns]} {cid}"}}'

        def phone_numbers(i: int, h: int, h2: int) -> str:
            if h2 % 100 >= 8 and (h >> 44) % 10 < 3:
                return ""  # has an e-mail and no phone
            return phones[(h >> 24) % POOL]

        return {
            "id": lambda i, h, h2: f'"id":"{i}"',
            "given_name": lambda i, h, h2: '"given_name":' + given[(h >> 8) % len(given)],
            "middle_name": lambda i, h, h2: self._middle[(h >> 4) % len(self._middle)] if h % 5 == 0 else "",
            "family_name": lambda i, h, h2: '"family_name":' + family[(h >> 16) % len(family)],
            "preferred_name": lambda i, h, h2: self._preferred[(h2 >> 40) % len(self._preferred)] if (h2 >> 48) % 50 == 0 else "",
            "email_addresses": self._emails,
            "phone_numbers": phone_numbers,
            "addresses": lambda i, h, h2: addresses[slot] if (slot := self._address_slot(h)) >= 0 else "",
            "company": company,
            "job_title": lambda i, h, h2: self._jobs[(h2 >> 36) % len(self._jobs)] if (h2 >> 44) % 2 else "",
            "website": lambda i, h, h2: f'"website":"https://www.example.com/{i}"' if (h2 >> 50) % 10 == 0 else "",
            "birth_date": lambda i, h, h2: self._births[(h2 >> 52) % 64] if (h >> 56) % 3 == 0 else "",
            "contact_type": lambda i, h, h2: self._types[(h >> 58) % len(self._types)],
            "source_type": lambda i, h, h2: self._sources[(h2 >> 56) % len(self._sources)],
            "owner_id": lambda i, h, h2: self._owners[(h >> 60) % len(self._owners)],
            "score_value": lambda i, h, h2: f'"score_value":"{(h2 >> 12) % 101}"',
            "time_zone": lambda i, h, h2: self._zones[(h >> 12) % len(self._zones)],
            "preferred_locale": lambda i, h, h2: self._locales[(h2 >> 4) % len(self._locales)],
            "tag_ids": lambda i, h, h2: self._tags[(h >> 36) % POOL],
            "custom_fields": lambda i, h, h2: self._custom[(h2 >> 24) % POOL],
            "create_time": lambda i, h, h2: f'"create_time":"{iso_ms(create_time_ms(i, n))}"',
            "update_time": lambda i, h, h2: f'"update_time":"{iso_ms(tl.time_ms(i))}"',
        }

    # --- rendering -------------------------------------------------------------------------------
    def compile(self, fields: Sequence[str] | None) -> tuple[Fragment, ...]:
        """The fragment functions for a field selection (None = the list default), in canonical order.

        Args:
            fields: property names, or None for the list default.

        Returns:
            The fragment functions.
        """
        key = tuple(fields) if fields is not None else DEFAULT_LIST_FIELDS
        compiled = self._compiled.get(key)
        if compiled is None:
            wanted = set(key) | {"id"}  # the id comes with every record, asked for or not
            compiled = tuple(self._fragments[f] for f in CONTACT_FIELDS if f in wanted)
            if len(self._compiled) < 256:  # bounded cache of selections
                self._compiled[key] = compiled
        return compiled

    def render(self, ident: int, fragments: tuple[Fragment, ...]) -> str:
        """One contact as a JSON object text.

        Args:
            ident: record id (ids are 1-based).
            fragments: compiled fragment functions (compile()).

        Returns:
            The contact as a JSON object text.
        """
        h, h2 = mix(ident, self.salt)
        parts = [p for p in (f(ident, h, h2) for f in fragments) if p]
        return "{" + ",".join(parts) + "}"

    def render_many(self, idents: Sequence[int], fragments: tuple[Fragment, ...]) -> list[str]:
        """Several contacts as JSON object texts (the hot loop of a list page).

        Args:
            idents: record ids, in answer order.
            fragments: compiled fragment functions (compile()).

        Returns:
            One JSON object text per id.
        """
        salt = self.salt
        out: list[str] = []
        append = out.append
        for ident in idents:
            h, h2 = mix(ident, salt)
            append("{" + ",".join([p for p in [f(ident, h, h2) for f in fragments] if p]) + "}")
        return out

    def as_dict(self, ident: int) -> dict[str, object]:
        """All properties of a base contact as a dict (for mutations and filters).

        Args:
            ident: record id (ids are 1-based).

        Returns:
            The contact dict.
        """
        return json.loads(self.render(ident, self.compile(CONTACT_FIELDS)))
