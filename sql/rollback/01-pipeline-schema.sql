-- Down of 01: the internal schema goes last; anything still in it is the pipeline's own.
drop table if exists keap_pipeline.schema_migrations;
drop schema if exists keap_pipeline cascade;
