"""The one base class of every error keap-pipeline raises on purpose."""


class KeapPipelineError(Exception):
    """Base of every error that keap-pipeline raises deliberately."""
