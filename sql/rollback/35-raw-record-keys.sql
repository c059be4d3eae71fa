-- Down of 35: drop the raw record keys (a re-read then normalizes every record again, as before 35).
drop table if exists keap_pipeline.raw_record_keys;
