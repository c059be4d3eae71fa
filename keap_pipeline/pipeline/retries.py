"""When a batch (or a replay) is run again: concurrent writers, deadlocks, lock timeouts; and when it gives up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import psycopg

from keap_pipeline.entities import Entity
from keap_pipeline.errors import KeapPipelineError

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)
T = TypeVar("T")

# a batch whose contacts an app keeps editing while it loads is retried this often, then fails
MAX_ATTEMPTS = 5
# a loader waits at most this long for any one row lock, then retries its batch (issue 15)
DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0


class LockWaitsExhausted(KeapPipelineError):
    """A batch timed out waiting for row locks in every attempt; the run stops with its cursor exact."""


def loaded_concurrently(entity: Entity, err: psycopg.Error) -> bool:
    """Whether `err` says another transaction inserted one of the batch's records first.

    The upsert inserts only records it did not find, so a duplicate key on the target's keap_id
    (entity.concurrent_keys) means a concurrent loader (another run) inserted it after this batch looked: retrying the
    batch finds the row and treats it as an update.
    """
    if not isinstance(err, psycopg.errors.UniqueViolation):
        return False
    schema, _, table = entity.target_table.partition(".")
    return (
        err.diag.table_name == table
        and err.diag.schema_name == schema
        and err.diag.constraint_name in entity.concurrent_keys
    )


def worth_retrying(entity: Entity, err: psycopg.Error) -> bool:
    """Whether a transaction that loads `entity` failed only because a concurrent one got there first.

    An app or another run's loader changed (40001) or inserted (a duplicate keap_id) one of its
    records between classification and write, or the two deadlocked and PostgreSQL picked this
    one (40P01): run the whole transaction again, and it sees the other's rows.
    """
    return isinstance(
        err,
        (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable),
    ) or loaded_concurrently(entity, err)


def retry_pause(attempt: int) -> None:
    """A short, growing pause before attempt `attempt + 1`, so the transaction that won can finish."""
    time.sleep(min(1.0, 0.05 * 2**attempt))


def give_up(entity: Entity, err: psycopg.Error, attempts: int, lock_timeout_seconds: float) -> BaseException:
    """The error to raise after the last attempt: lock timeouts become a message that says what to do."""
    if isinstance(err, psycopg.errors.LockNotAvailable):
        return LockWaitsExhausted(
            f"a batch of {entity.name} waited more than {lock_timeout_seconds:g} s for rows another transaction "
            f"holds, in each of {attempts} attempts (a long transaction of an app or an operator on these rows?). "
            "Nothing of this batch was written; the batches before it are committed with their cursor, and the "
            "next run resumes there. pg_stat_activity shows who holds the rows; raise the wait with `--lock-timeout`."
        )
    return err


def with_retries(
    entity: Entity, attempt: Callable[[], T], *, lock_timeout_seconds: float, what: str, logger: logging.Logger
) -> T:
    """Run one transaction's work until it commits, as a batch is retried (without the batch's commit turns).

    Args:
        entity: the entity it loads (which errors mean a concurrent writer: worth_retrying).
        attempt: runs the whole transaction once; called again after a retryable error.
        lock_timeout_seconds: the attempt's lock_timeout (named by give_up).
        what: what is retried, for the log line.
        logger: the caller's logger, which says so.

    Returns:
        What the attempt that committed returned.

    Raises:
        LockWaitsExhausted: the attempts ran out on lock timeouts; any other error that is not worth
            retrying, or the last one, as it came.
    """
    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt()
        except psycopg.Error as err:
            if not worth_retrying(entity, err):
                raise
            if number == MAX_ATTEMPTS:
                raise give_up(entity, err, number, lock_timeout_seconds) from err
            logger.info("%s: %s retried (%s/%s): %s", entity.name, what, number, MAX_ATTEMPTS, err.diag.message_primary)
            retry_pause(number)
    raise AssertionError("unreachable: the last attempt returns or raises")
