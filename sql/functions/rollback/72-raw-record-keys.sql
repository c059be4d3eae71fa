-- Drop script of functions/72-raw-record-keys.sql: `keap-pipeline rollback --to N` runs it for N below 35.
drop function if exists keap_pipeline.remember_raw_record_keys(text, text, bytea, bigint[], text);
drop function if exists keap_pipeline.find_raw_record_keys(text, text, bytea);
