"""Errors of the database layer: connecting, the embedded server, migrations."""

from keap_pipeline.errors import KeapPipelineError


class DatabaseError(KeapPipelineError):
    """Base of the database layer's errors."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be initialised, started or stopped."""


class MigrationError(DatabaseError):
    """A migration file failed or the migration history is inconsistent."""


class MigrationChecksumMismatch(MigrationError):
    """An applied migration file was edited after it was applied."""


class MigrationFileError(MigrationError):
    """The sql/ folder is malformed: a bad name, a duplicate version or a missing down script."""
