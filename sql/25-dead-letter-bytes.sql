-- 25: a dead letter keeps the record exactly as Keap sent it, and one bad record is one dead letter.
-- * record_bytes: the record's own bytes in Keap's response (its slice of the page), whatever they
--   hold: a lone surrogate escape, bytes that are not UTF-8, a record that is not JSON on its own.
--   record_json stays, as ASCII text (every other character a \uXXXX escape), which always encodes
--   and decodes to the same value; it is what the pipeline wrote before 25 and what it writes for a
--   record it did not read from a page. Reading a dead letter: record_bytes when present, else
--   record_json (keap_pipeline.db.dead_letters.DeadLetter.record).
-- * record_key: md5 of what is kept, so a record without a usable id, met again (a re-run re-reads
--   its page), refreshes its open dead letter instead of adding another: one open dead letter per
--   (entity, record_key) for those, as (entity, keap_id) is for the others. Older duplicates of an
--   open id-less letter are marked discarded first (the newest copy stays open).
-- * dead_letters_record_key_idx: a record seen again whose dead letter was closed (a later version
--   loaded, or an operator discarded it) is not reopened; the pipeline looks that up by key.

alter table keap_pipeline.dead_letters
    add column record_bytes bytea,
    add column record_key text generated always as (coalesce(pg_catalog.md5(record_bytes), pg_catalog.md5(record_json))) stored;

comment on column keap_pipeline.dead_letters.record_bytes is
    'The record exactly as Keap sent it (its bytes in the response); NULL when recorded before migration 25 or not read from a page.';
comment on column keap_pipeline.dead_letters.record_json is
    'The record as JSON text (ASCII since migration 25: other characters as \uXXXX escapes); record_bytes, when set, is exact.';
comment on column keap_pipeline.dead_letters.record_key is
    'md5 of record_bytes, else of record_json: identifies a record without a usable keap_id.';

update keap_pipeline.dead_letters as d
set status = 'discarded'
where d.status = 'open'
  and d.keap_id is null
  and exists (
      select 1
      from keap_pipeline.dead_letters as n
      where n.entity = d.entity
        and n.status = 'open'
        and n.keap_id is null
        and n.record_key = d.record_key
        and n.id > d.id
  );

create unique index dead_letters_open_unnamed_key
    on keap_pipeline.dead_letters (entity, record_key)
    where status = 'open' and keap_id is null;

create index dead_letters_record_key_idx
    on keap_pipeline.dead_letters (entity, record_key);
