"""The pipeline's fixtures (the sandbox over a real socket) for the command-line tests."""

from tests.pipeline.conftest import sandbox  # noqa: F401 - a fixture, used by name
