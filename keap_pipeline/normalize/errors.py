"""Errors of the normalizers: a batch that cannot be normalized at all (single bad records are rejected, not raised)."""

from keap_pipeline.errors import KeapPipelineError


class NormalizeError(KeapPipelineError):
    """Base of the normalizers' errors."""


class NaiveFetchedAtError(NormalizeError):
    """fetched_at has no time zone, so it cannot be placed on the UTC timeline without guessing."""


class BatchTooLargeError(NormalizeError):
    """A batch has more records than the Int32 ordinal column can number."""


class TimestampError(NormalizeError):
    """A date-time string that is not a strict ISO-8601 instant we can store exactly."""
