"""The serving tests' two-stage fixtures (a tiny retrieval export, its ScaNN index and a
ranking export), for the Recommender component's tests."""

from tests.serving.conftest import data, excluding, retrieval, stages, tiny  # noqa: F401  (fixtures, used by name)
