"""The trainer tests' tiny Transform output and the serving tests' exports over it, for the
benchmarks' smoke tests."""

from tests.serving.conftest import data, excluding, retrieval, stages, tiny  # noqa: F401  (fixtures, used by name)
