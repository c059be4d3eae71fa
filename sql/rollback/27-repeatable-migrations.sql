-- Down of 27: forget the repeatable files; the next migrate re-applies them all.
drop table keap_pipeline.repeatable_migrations;
