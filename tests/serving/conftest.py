"""ScaNN indexes that come back short, for the serving tests (the tiny exports and the
two-stage stages they read are tests/shared_fixtures.py's)."""

import dataclasses

import pytest

from recsys_pipeline.serving import index
from tests.shared_fixtures import CANDIDATES, WHEN  # noqa: F401  (the stages' settings)

SHORT_FOUND = 2


@pytest.fixture
def short_scann(monkeypatch):
    """ScaNN indexes that rescore only SHORT_FOUND candidates, so every search comes back short.

    ScaNN returns no more items than it rescores. The pipeline's config refuses that setting
    (index.num_reordering_candidates below index.k), which is why it is made here, below the
    config; leaves too small to fill k would depend on ScaNN's randomly seeded k-means.
    """
    build = index.build_scann
    monkeypatch.setattr(index, "build_scann", lambda embeddings, settings: build(
        embeddings, dataclasses.replace(settings, num_reordering_candidates=SHORT_FOUND)))
    return SHORT_FOUND
