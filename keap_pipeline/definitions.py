"""The one Dagster Definitions object of keap-pipeline: assets, checks, jobs, schedules and resources."""

from dagster import Definitions

from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.defs.schema import sync_schema

defs = Definitions(
    assets=[sync_schema],
    resources={
        # No URL here: the resource resolves KEAP_PIPELINE_DATABASE_URL (or the embedded
        # server) when a run starts, never at import.
        "postgres": PostgresResource(),
    },
)
