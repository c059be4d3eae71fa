"""The one Dagster Definitions object of keap-pipeline: assets, checks, jobs, schedules and resources."""

from dagster import Definitions, EnvVar

from keap_pipeline.defs.entities import entity_definitions
from keap_pipeline.defs.health import health_definitions
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.maintenance import (
    audit_partitions_job,
    audit_partitions_schedule,
    queue_retention_job,
    queue_retention_schedule,
    vacuum_analyze_job,
    vacuum_analyze_schedule,
)
from keap_pipeline.defs.outbound import outbound_definitions
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.defs.schema import sync_schema
from keap_pipeline.entities import ENTITIES

defs = Definitions.merge(
    # every Keap entity of the table: asset keap_<name>, config, checks, job, schedule; plus keap_sync_all_job
    entity_definitions(ENTITIES),
    # sync_health (recorded every 15 minutes, with its checks) and the job that also runs the freshness checks
    health_definitions(ENTITIES),
    # the outbound push: keap_outbound, its queue check, keap_push_job, keap_push_sensor
    outbound_definitions(),
    Definitions(
        assets=[sync_schema],
        jobs=[audit_partitions_job, vacuum_analyze_job, queue_retention_job],
        schedules=[audit_partitions_schedule, vacuum_analyze_schedule, queue_retention_schedule],
        resources={
            # No URL here: the resource resolves KEAP_PIPELINE_DATABASE_URL (or the embedded
            # server) when a run starts, never at import.
            "postgres": PostgresResource(),
            # Secrets only as EnvVar: resolved at run time, never shown in the UI or run config.
            # OAuth instead of a key: oauth_client_id/oauth_client_secret/oauth_token_store, also EnvVar.
            "keap": KeapResource(base_url=EnvVar("KEAP_BASE_URL"), api_key=EnvVar("KEAP_API_KEY")),
        },
    ),
)
