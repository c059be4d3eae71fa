-- Down of 25: dead letters keep record_json only. The exact bytes of records whose text alone is not
-- exact (bytes that were not UTF-8) are lost; letters discarded as duplicates stay discarded.
drop index keap_pipeline.dead_letters_record_key_idx;
drop index keap_pipeline.dead_letters_open_unnamed_key;

alter table keap_pipeline.dead_letters
    drop column record_key,
    drop column record_bytes;

comment on column keap_pipeline.dead_letters.record_json is null;
