"""Replaying dead letters: run each stored record through today's normalizer and loader again."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from keap_pipeline.db.connect import connect
from keap_pipeline.db.dead_letters import (
    DeadLetter,
    NewDeadLetter,
    list_dead_letters,
    mark_replayed,
)
from keap_pipeline.db.load import UpsertCounts, begin_load
from keap_pipeline.db.locks import run_lock
from keap_pipeline.entities import ENTITIES, Entity
from keap_pipeline.pipeline.batch import load_isolating
from keap_pipeline.pipeline.pages import normalize_records
from keap_pipeline.pipeline.retries import DEFAULT_LOCK_TIMEOUT_SECONDS, with_retries
from keap_pipeline.pipeline.sync import link_dependents

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    """What a replay did."""

    replayed: list[int] = field(default_factory=list)
    still_failing: list[tuple[int, str]] = field(default_factory=list)
    # ids asked for that name no open dead letter of the entity (a typo, another entity's, replayed already)
    not_open: list[int] = field(default_factory=list)
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    linked: int = 0


def _still_failing(conn: psycopg.Connection, letter: DeadLetter, reason: str, field_name: str | None) -> None:
    conn.execute(
        "update keap_pipeline.dead_letters set reason = %s, field = %s, attempts = attempts + 1,"
        " last_seen_at = now() where id = %s",
        (reason, field_name, letter.id),
    )


def _replay(
    conn: psycopg.Connection,
    entity: Entity,
    letters: list[DeadLetter],
    strategy: str,
    merge_rule: str,
    report: ReplayReport,
) -> None:
    for letter in letters:
        record = letter.record()  # decoded as the sync decoded it (an UndecodableRecord stays one)
        result = normalize_records(entity, [record], fetched_at=datetime.now(UTC))
        if result.rejected:
            rejected = result.rejected[0]
            _still_failing(conn, letter, rejected.reason, rejected.field)
            report.still_failing.append((letter.id, rejected.reason))
            continue
        refused: list[NewDeadLetter] = []
        load_isolating(conn, entity, result.frame, [record], strategy, merge_rule, report.counts, refused)
        if refused:
            _still_failing(conn, letter, refused[0].reason, refused[0].field)
            report.still_failing.append((letter.id, refused[0].reason))
        else:
            report.replayed.append(letter.id)
    mark_replayed(conn, report.replayed)


def replay_dead_letters(
    database_url: str,
    entity_name: str,
    *,
    ids: list[int] | None = None,
    strategy: str = "keap_wins",
    merge_rule: str = "manual",
    limit: int = 10_000,
    lock_wait_seconds: float = 60.0,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> ReplayReport:
    """Load open dead letters again, each in its own savepoint; the ones that load are marked replayed.

    A replayed record older than what is stored is classified stale by the upsert and changes
    nothing, so a replay can never roll a contact back.

    Args:
        database_url: the sync database.
        entity_name: e.g. 'contacts'.
        ids: only these dead letters; every open one of the entity when None.
        strategy: conflict strategy for the upsert.
        merge_rule: merge rule for the upsert.
        limit: at most this many.
        lock_wait_seconds: how long to wait for a sync of the entity to finish (a replay holds
            the entity's run lock, as a sync does: db.locks).
        lock_timeout_seconds: the longest wait for one row lock before the replay is retried.

    Returns:
        Which ids were replayed and which still fail (with the reason).

    Raises:
        RunLocked: a sync (or replay) of the entity kept its run lock for longer than lock_wait_seconds.
    """
    entity = ENTITIES[entity_name]
    holder = f"keap-pipeline {entity_name} dead-letter replay"
    with (
        run_lock(database_url, entity_name, wait_seconds=lock_wait_seconds, holder=holder),
        connect(database_url, application_name=holder) as conn,
    ):
        letters = list_dead_letters(conn, entity_name, status="open", limit=limit, ids=ids)
        not_open = sorted(set(ids or ()) - {d.id for d in letters})

        def attempt() -> ReplayReport:
            # an app (or a writer that holds no run lock) writing one of these records meanwhile rolls
            # the replay back whole, and it runs again, as a batch does
            report = ReplayReport()
            with conn.transaction():
                begin_load(conn, lock_timeout_seconds=lock_timeout_seconds, relaxed_commit=False)
                _replay(conn, entity, letters, strategy, merge_rule, report)
            return report

        report = with_retries(entity, attempt, lock_timeout_seconds=lock_timeout_seconds, what="replay", logger=log)
        report.not_open = not_open
        if report.replayed:
            # orders or subscriptions may have waited for a replayed contact or product
            report.linked = link_dependents(conn, entity, lock_timeout_seconds)
    log.info("replayed %d dead letters, %d still failing", len(report.replayed), len(report.still_failing))
    return report
