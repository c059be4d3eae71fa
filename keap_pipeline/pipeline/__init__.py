"""The data path, usable without Dagster: Keap pages -> normalized frames -> COPY -> set-based upsert -> cursor."""
