"""The outbound sender: app changes queued in sync_queue reach Keap (claim, check, send, write back, recover).

- ``push.push``: one run (the CLI's ``keap-pipeline push`` and Dagster's ``keap_push_job``).
- ``specs``: the entities it sends, one spec each (``contacts``, ``tags``): how to read Keap's
  current records, how a row becomes requests, how a create is found again after a crash.
- ``send``: a plan's requests through the Keap client, and what each failure means.
- ``recover``: finding a record an unconfirmed create may have made, before creating again.
The database side is keap_pipeline/db/outbound.py and sql/functions/81-outbound.sql.
"""
