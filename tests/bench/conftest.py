"""The trainer tests' tiny Transform output, for the benchmarks' smoke tests."""

from tests.trainer.conftest import tiny  # noqa: F401  (a fixture, used by name)
