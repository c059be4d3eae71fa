"""Every hostile class of issue 9, one record each, through the sandbox (raw bytes over a real socket),
`sync_entity` and `dead-letters replay` into PostgreSQL, with what each must produce written down.

The property test (tests/property) mixes these classes at random; this table says, class by class,
which records load exactly and which become dead letters, with the field and the rule. Run with
``-s`` to print the table.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from keap_pipeline.pipeline.replay import replay_dead_letters
from tests import hostile
from tests.hostile import RawNumber, RawRecord, WireStr
from tests.pipeline.conftest import sync

T = "2024-05-01T10:00:00Z"


def contact(n: int, **fields: Any) -> dict[str, Any]:
    """A valid contact with id n (its own update time), then the given fields (None-valued ones removed when `_drop`)."""
    record: dict[str, Any] = {
        "id": str(n), "given_name": "Ann", "family_name": "Lee",
        "email_addresses": [{"email": f"c{n}@example.com", "field": "EMAIL1"}],
        "create_time": "2020-01-01T00:00:00Z", "update_time": f"2024-05-01T10:{n // 60:02d}:{n % 60:02d}Z",
    }
    drop = fields.pop("_drop", ())
    record.update(fields)
    for name in drop:
        record.pop(name, None)
    return record


LOAD = "loaded exactly"
# (class, case, record, expectation): LOAD, or (field, a piece of the reason)
CASES: list[tuple[str, str, Any, Any]] = [
    ("lone surrogate", "high, in given_name", contact(1, given_name="\ud83d"), ("given_name", "lone surrogate")),
    ("lone surrogate", "low, in family_name", contact(2, family_name="x\ude00"), ("family_name", "lone surrogate")),
    ("lone surrogate", "in an email", contact(3, email_addresses=[{"email": "a\ud800@x.com", "field": "EMAIL1"}]), ("email_addresses", "lone surrogate")),
    ("lone surrogate", "in a custom field's content", contact(4, custom_fields=[{"id": "1", "content": {"k": "\udfff"}}]), ("custom_fields", "lone surrogate")),
    ("lone surrogate", "in a field not stored (middle_name)", contact(5, middle_name="\ud83d"), LOAD),
    ("reversed surrogates", "low then high", contact(6, given_name="\ude00\ud83d"), ("given_name", "lone surrogate")),
    ("surrogate pair", "an emoji, escaped", contact(7, given_name="Zoë \U0001f600"), LOAD),
    ("surrogate pair", "UTF-8-encoded surrogate bytes", contact(8, given_name=WireStr(("Jo", b"\xed\xa0\xbd", "hn"))), ("given_name", "lone surrogate")),
    ("bytes not UTF-8", "in given_name", contact(9, given_name=WireStr(("Jos", b"\xe9"))), ("given_name", "not UTF-8")),
    ("bytes not UTF-8", "in a field not stored (job_title)", contact(10, job_title=WireStr((b"\xff\xfe",))), LOAD),
    ("NUL", "in given_name", contact(11, given_name="Nul\x00Byte"), ("given_name", "NUL")),
    ("NUL", "nested in a custom field", contact(12, custom_fields=[{"id": "1", "content": ["ok", "b\x00d"]}]), ("custom_fields", "NUL")),
    ("NUL", "the escape text \\u0000 (a backslash, not a NUL)", contact(13, given_name="\\u0000"), LOAD),
    ("U+2028/U+2029", "in names and a custom field", contact(14, given_name="a\u2028b", family_name="\u2029", custom_fields=[{"id": "1", "content": "x\u2028"}]), LOAD),
    ("BOM", "leading and alone", contact(15, given_name="\ufeffAnn", family_name="\ufeff"), LOAD),
    ("very long", "10,207 characters in given_name", contact(16, given_name="y" * 10207), ("given_name", "10207 characters, longer than the column limit first_name varchar(255)")),
    ("very long", "100,000 characters in a custom field (jsonb: no limit)", contact(17, custom_fields=[{"id": "1", "content": "z" * 100_000}]), LOAD),
    ("at the limit", "255 ASCII characters", contact(18, given_name="x" * 255), LOAD),
    ("at the limit", "255 emoji (1,020 bytes, 510 UTF-16 units)", contact(19, given_name="\U0001f600" * 255), LOAD),
    ("at the limit", "255 code points with combining accents", contact(20, family_name="e\u0301" * 127 + "e"), LOAD),
    ("over the limit", "256 emoji", contact(21, given_name="\U0001f600" * 256), ("given_name", "256 characters")),
    ("at the limit", "phone: 50 characters with its extension", contact(22, phone_numbers=[{"number": "1" * 42, "extension": "123", "field": "PHONE1"}]), LOAD),
    ("over the limit", "phone: 51 characters with its extension", contact(23, phone_numbers=[{"number": "1" * 43, "extension": "123", "field": "PHONE1"}]), ("phone_numbers[0] (number;ext=extension)", "phone varchar(50)")),
    ("tabs, CR, LF", "in names", contact(24, given_name="a\tb\rc\nd", family_name="\r\n"), LOAD),
    ("tabs, CR, LF", "a line holding only \\. (COPY's end marker)", contact(25, given_name="a\n\\.\nb"), LOAD),
    ("backslashes", "\\ and C:\\path\\", contact(26, given_name="\\", family_name="C:\\path\\"), LOAD),
    ("\\N", "the text \\N (COPY text's NULL)", contact(27, given_name="\\N"), LOAD),
    ("NULL", "the texts NULL and null", contact(28, given_name="NULL", family_name="null"), LOAD),
    ("quotes", "double, single, commas", contact(29, given_name='"', family_name='O\'Brien "Bob", Jr.'), LOAD),
    ("empty string", "'' kept apart from null", contact(30, given_name="", family_name=None), LOAD),
    ("numbers beyond 64 bits", "id as a JSON integer 2**70", contact(31, id=2**70), LOAD),
    ("numbers beyond 64 bits", "tag ids 2**64 and 2**64+1 as text", contact(32, tag_ids=[2**64, "18446744073709551617"]), LOAD),
    ("numbers beyond 64 bits", "custom field: -(2**70)-1 and 4,501 digits", contact(33, custom_fields=[{"id": "1", "content": -(2**70) - 1}, {"id": "2", "content": RawNumber("1" + "0" * 4500)}]), LOAD),
    ("numbers beyond 64 bits", "id of 4,501 digits (longer than keap_id)", contact(34, id=RawNumber("1" + "0" * 4500)), ("id", "longer than the column limit keap_id varchar(255)")),
    ("exact decimals", "12.50, 0.1000000000000000000001, 1E400, -0.0", contact(35, custom_fields=[{"id": "1", "content": [RawNumber("12.50"), RawNumber("0.1000000000000000000001"), RawNumber("1E400"), RawNumber("-0.0")]}]), LOAD),
    ("numeric overflow", "1E+200000 (beyond numeric)", contact(36, custom_fields=[{"id": "1", "content": RawNumber("1E+200000")}]), ("custom_fields", "numeric_value_out_of_range (22003), column custom_fields")),
    ("floats where ints are expected", "id 12.0", contact(37, id=RawNumber("37.0")), ("id", "got a JSON number")),
    ("floats where ints are expected", "tag id 1.5", contact(38, tag_ids=[1.5]), ("tag_ids[0]", "got a JSON number")),
    ("floats where ints are expected", "custom field id 7.0", contact(39, custom_fields=[{"id": 7.0, "content": 1}]), ("custom_fields[0].id", "got a JSON number")),
    ("wrong JSON type", "given_name a number", contact(40, given_name=5), ("given_name", "must be a string, got a JSON number")),
    ("wrong JSON type", "family_name an array", contact(41, family_name=["Lee"]), ("family_name", "got a JSON array")),
    ("wrong JSON type", "email_addresses an object", contact(42, email_addresses={"email": "a@b.c"}), ("email_addresses", "must be an array")),
    ("wrong JSON type", "an email entry a string", contact(43, email_addresses=["a@b.c"]), ("email_addresses[0]", "must be an object")),
    ("wrong JSON type", "email a number", contact(44, email_addresses=[{"email": 5, "field": "EMAIL1"}]), ("email_addresses[0].email", "must be a string")),
    ("wrong JSON type", "phone_numbers a string", contact(45, phone_numbers="555"), ("phone_numbers", "must be an array")),
    ("wrong JSON type", "phone number a number", contact(46, phone_numbers=[{"number": 5551234, "field": "PHONE1"}]), ("phone_numbers[0].number", "must be a string")),
    ("wrong JSON type", "phone extension a number", contact(47, phone_numbers=[{"number": "555", "extension": 12}]), ("phone_numbers[0].extension", "must be a string")),
    ("wrong JSON type", "company a string", contact(48, company="Thryv"), ("company", "must be an object")),
    ("wrong JSON type", "company_name a boolean", contact(49, company={"company_name": True}), ("company.company_name", "got a JSON boolean")),
    ("wrong JSON type", "tag_ids a string", contact(50, tag_ids="1,2"), ("tag_ids", "must be an array")),
    ("wrong JSON type", "tag id not digits", contact(51, tag_ids=["1", "vip"]), ("tag_ids[1]", "not a string of digits")),
    ("wrong JSON type", "custom_fields an object", contact(52, custom_fields={"7": "Gold"}), ("custom_fields", "must be an array")),
    ("wrong JSON type", "custom field id missing", contact(53, custom_fields=[{"content": 1}]), ("custom_fields[0].id", "missing")),
    ("wrong JSON type", "create_time a number", contact(54, create_time=1710498600), ("create_time", "ISO-8601 string")),
    ("wrong JSON type", "update_time a boolean", contact(55, update_time=True), ("update_time", "ISO-8601 string")),
    ("wrong JSON type", "the id a boolean", contact(56, id=True), ("id", "got a JSON boolean")),
    ("wrong JSON type", "the record an array", [contact(57)], (None, "the record must be a JSON object, got a JSON array")),
    ("wrong JSON type", "the record null", None, (None, "got a JSON null")),
    ("wrong JSON type", "custom field content of every JSON type", contact(58, custom_fields=[{"id": str(i), "content": v} for i, v in enumerate([None, True, 0, "s", [1, [None]], {"a": {"b": []}}])]), LOAD),
    ("empty and null arrays", "every array [] ", contact(59, email_addresses=[], phone_numbers=[], tag_ids=[], custom_fields=[]), LOAD),
    ("empty and null arrays", "every array null", contact(60, email_addresses=None, phone_numbers=None, tag_ids=None, custom_fields=None), LOAD),
    ("nested nulls", "company {company_name: null}, content null, {a: null}", contact(61, company={"id": None, "company_name": None}, custom_fields=[{"id": "1", "content": None}, {"id": "2", "content": {"a": None}}]), LOAD),
    ("nested nulls", "primary email entry {email: null}", contact(62, email_addresses=[{"email": None, "field": "EMAIL1"}]), ("email_addresses[0].email", "missing in the primary email entry")),
    ("nested nulls", "tag_ids [null]", contact(63, tag_ids=[None]), ("tag_ids[0]", "missing")),
    ("nested nulls", "phone {number: null}", contact(64, phone_numbers=[{"number": None}]), ("phone_numbers[0].number", "missing")),
    ("ids", "missing", contact(65, _drop=("id",)), ("id", "id is missing")),
    ("ids", "empty string", contact(66, id=""), ("id", "not a string of digits")),
    ("ids", "Arabic-Indic digits", contact(67, id="١٢"), ("id", "not a string of digits")),
    ("ids", "negative JSON integer", contact(68, id=-5), ("id", "negative")),
    ("ids", "256 digits", contact(69, id="1" * 256), ("id", "longer than the column limit keap_id varchar(255)")),
    ("timestamps", "odd valid offsets +14:00, -12:00, +05:45, -00:00, nanosecond zeros", contact(70, create_time="2020-01-01T00:00:00+14:00", update_time="2024-05-01T12:41:10.123456000+05:45"), LOAD),
    ("timestamps", "valid offset -23:59", contact(71, create_time="2019-12-31T23:59:59.5-23:59"), LOAD),
    ("timestamps", "impossible date", contact(72, update_time="2024-02-30T10:00:00Z"), ("update_time", "day is out of range")),
    ("timestamps", "leap second", contact(73, update_time="2024-03-15T10:30:60Z"), ("update_time", "second must be in 0..59")),
    ("timestamps", "no zone", contact(74, update_time="2024-03-15T10:30:00"), ("update_time", "with a zone")),
    ("timestamps", "offset +24:00", contact(75, create_time="2024-03-15T10:30:00+24:00"), ("create_time", "the offset is not between -24:00 and +24:00")),
    ("timestamps", "finer than a microsecond", contact(76, update_time="2024-03-15T10:30:00.1234567Z"), ("update_time", "finer than a microsecond")),
    ("timestamps", "year 1 pushed before year 1 by its offset", contact(77, create_time="0001-01-01T00:00:00+00:01"), ("create_time", "outside the years 1 to 9999")),
    ("timestamps", "update_time missing", contact(78, _drop=("update_time",)), ("update_time", "cursor needs it")),
    ("not JSON on its own", "an invalid escape", RawRecord(b'{"id":"79","given_name":"bad \\x","update_time":"2024-05-01T10:01:19Z"}'), (None, "not valid JSON (Invalid \\escape")),
    ("not JSON on its own", "a raw tab inside a string", RawRecord(b'{"id":"80","given_name":"a\tb","update_time":"2024-05-01T10:01:20Z"}'), (None, "Invalid control character")),
    ("not JSON on its own", "nested 5,000 deep", RawRecord(b'{"id":"81","custom_fields":[{"id":"1","content":' + b"[" * 5000 + b"]" * 5000 + b'}]}'), (None, "nests deeper than the JSON decoder allows")),
    ("PostgreSQL constraint", "a company name an operator's check constraint refuses", contact(82, company={"company_name": hostile.REFUSED_COMPANY}), (None, f"check_violation (23514), constraint {hostile.REFUSE_CONSTRAINT}")),
]
# duplicates: one id twice in a page and again on a later page; the last version in Keap's order wins
DUPLICATES = [contact(90, given_name="first"), contact(90, given_name="second", update_time="2024-05-01T11:00:00Z"), contact(90, given_name="third", update_time="2024-05-02T00:00:00Z")]
# ... and a bad version after a good one: the good one stays loaded, the bad one is the open letter
BAD_LAST = [contact(91, given_name="good"), contact(91, given_name="\ud83d", update_time="2024-05-03T00:00:00Z")]


@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf-8 on the wire", "ascii escapes on the wire"])
def test_every_hostile_class_loads_exactly_or_is_a_dead_letter_with_field_and_rule(
    sandbox, migrated_database: str, ascii_only: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = sandbox(contacts=0)
    values = [value for _, _, value, _ in CASES] + DUPLICATES + BAD_LAST
    items = hostile.place(values, lambda n: n - 1, [ascii_only] * len(values))
    hostile.reset(migrated_database)
    handle.state.put_raw_contacts([(i.data, i.placed_us // 1000) for i in items])

    report = sync(handle, migrated_database, page_size=7, run_id="hostile-table")
    assert report.records_seen == len(values) and report.stopped_early is None
    hostile.check_state(migrated_database, items, lambda i: i.verdict.loads)
    rows = hostile.table(migrated_database)
    letters = {bytes(d["record_bytes"]): d for d in hostile.letters(migrated_database)}
    by_data = {i.data: i for i in items}
    table = []
    for cls, case, value, expected in CASES:
        data = hostile.wire(value, ascii_only)
        item = by_data[data]
        if expected == LOAD:
            assert data not in letters, f"{cls}: {case}: dead-lettered: {letters[data]['reason'] if data in letters else ''}"
            row = rows[item.keap_id or ""]
            assert item.verdict.row is not None
            for column, want in item.verdict.row.items():
                assert hostile.same_json(row[column], want), f"{cls}: {case}: {column} differs"
            table.append((cls, case, LOAD))
        else:
            field, rule = expected
            letter = letters.get(data)
            assert letter is not None and letter["status"] == "open", f"{cls}: {case}: not an open dead letter"
            assert (letter["field"] or None) == field or (field or "") in (letter["field"] or ""), (cls, case, letter["field"])
            assert rule in letter["reason"], (cls, case, letter["reason"])
            # the record exactly as Keap sent it: its bytes, and the ASCII text decoding to the same value
            assert bytes(letter["record_bytes"]) == data and letter["record_json"].isascii()
            table.append((cls, case, f"dead letter [{letter['field'] or 'record'}]: {letter['reason']}"))
    assert rows["90"]["first_name"] == "third"
    assert rows["91"]["first_name"] == "good" and letters[hostile.wire(BAD_LAST[1], ascii_only)]["status"] == "open"

    # replay before a fix: every letter still fails, the same reason; after dropping the constraint
    # the refused one loads, exactly
    before = hostile.writes(migrated_database)
    replay = replay_dead_letters(migrated_database, "contacts")
    assert replay.replayed == [] and hostile.writes(migrated_database) == before
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute(f"alter table public.sync_contacts drop constraint {hostile.REFUSE_CONSTRAINT}")
    replay = replay_dead_letters(migrated_database, "contacts")
    assert len(replay.replayed) == 1
    assert hostile.table(migrated_database)["82"]["company"] == hostile.REFUSED_COMPANY

    # a re-run of the whole listing (each record as Keap holds it now) writes nothing
    handle.state.put_raw_contacts([(i.data, i.placed_us // 1000) for i in hostile.current_versions(items)])
    before = hostile.writes(migrated_database)
    again = sync(handle, migrated_database, page_size=7, scope="window:again")
    assert again.counts.inserted == again.counts.updated == 0
    assert hostile.writes(migrated_database) == before
    with capsys.disabled():
        if not ascii_only:
            print("\n" + "\n".join(f"| {c} | {k} | {r} |" for c, k, r in table))


def test_exact_numbers_reach_jsonb_to_the_digit(sandbox, migrated_database: str) -> None:
    handle = sandbox(contacts=0)
    record = contact(1, custom_fields=[{"id": "1", "content": RawNumber("0.1000000000000000000001")}, {"id": "2", "content": RawNumber("12.50")}])
    hostile.reset(migrated_database)
    handle.state.put_raw_contacts([(hostile.wire(record), 1_714_557_600_000)])
    sync(handle, migrated_database)
    with psycopg.connect(migrated_database) as conn:
        text = conn.execute("select custom_fields::text from public.sync_contacts").fetchone()[0]  # type: ignore[index]
    assert json.loads(text, parse_float=Decimal) == {"1": Decimal("0.1000000000000000000001"), "2": Decimal("12.50")}
    assert "12.50" in text
