"""keap-pipeline: Keap CRM -> PostgreSQL/Supabase sync schema, orchestrated by Dagster."""
