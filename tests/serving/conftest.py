"""The trainer tests' tiny retrieval export, the stages of a two-stage recommender over it, and
ScaNN indexes that come back short."""

import dataclasses

import pytest

from recsys_pipeline.serving import index
from recsys_pipeline.trainer import ranking_trainer, retrieval_trainer
from recsys_pipeline.trainer.hparams import RankingHParams
from tests.trainer.conftest import data, excluding, retrieval, tiny  # noqa: F401  (fixtures, used by name)

SHORT_FOUND = 2
CANDIDATES = 20  # the whole tiny catalogue: a reference sees every candidate
WHEN = 880_000_000


@pytest.fixture(scope="module")
def stages(retrieval, data, tiny, tmp_path_factory):  # noqa: F811  (fixtures, by name)
    """(retrieval dir, ScaNN dir, ranking dir): the retrieval export with its rated movies
    (not excluded from its own serving), its ScaNN index, and a ranking export."""
    root = tmp_path_factory.mktemp("two_stage")
    model, _, _ = retrieval
    rated = retrieval_trainer.rated_by_user(data, tiny.train_files)
    retrieval_dir = str(root / "retrieval")
    retrieval_trainer.export_model(model, data, retrieval_dir, serving_k=CANDIDATES, eval_k=5,
                                   rated=rated, exclude=False)
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    scann_dir = str(root / "scann")
    index.build_scann_export(retrieval_dir, scann_dir, index.IndexParams(
        k=CANDIDATES, recall_k=3, num_leaves=2, num_leaves_to_search=2,
        num_reordering_candidates=CANDIDATES), users, [WHEN] * len(users))
    ranking, _, _ = ranking_trainer.train(data, RankingHParams(epochs=1, ensemble=1),
                                          tiny.train_files, tiny.eval_files)
    ranking_dir = str(root / "ranking")
    ranking_trainer.export_model(ranking, data, ranking_dir)
    return retrieval_dir, scann_dir, ranking_dir


@pytest.fixture
def short_scann(monkeypatch):
    """ScaNN indexes that rescore only SHORT_FOUND candidates, so every search comes back short.

    ScaNN returns no more movies than it rescores. The pipeline's config refuses that setting
    (index.num_reordering_candidates below index.k), which is why it is made here, below the
    config; leaves too small to fill k would depend on ScaNN's randomly seeded k-means.
    """
    build = index.build_scann
    monkeypatch.setattr(index, "build_scann", lambda embeddings, settings: build(
        embeddings, dataclasses.replace(settings, num_reordering_candidates=SHORT_FOUND)))
    return SHORT_FOUND
