"""``recsys recommend`` from Python: the newest pushed ScaNN retrieval and ranking versions,
loaded as TF Serving loads them, answer one user through the two-stage recommender's graph
(``serving.two_stage``): retrieve candidates, drop the user's rated movies, rank the rest.

It reads the model base that ``serving.layout`` describes; no Trainer runs this code, so
editing it re-trains nothing (the Trainers' cache fingerprints do not cover it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from recsys_pipeline.errors import ConfigError, OutputError
from recsys_pipeline.pipeline.nodes import RANKING_MODEL, SCANN_MODEL
from recsys_pipeline.serving.layout import version_problem
from recsys_pipeline.serving.model_config import served_version_dir


@dataclasses.dataclass
class Recommendation:
    movie_id: str
    title: str
    retrieval_score: Optional[float]  # None for the unknown users' popular fallback
    predicted_rating: float
    score: float  # the two stages blended (serving.rank_weight)


@dataclasses.dataclass
class Recommendations:
    user_id: str
    known_user: bool
    items: list[Recommendation]
    versions: dict[str, str]  # model name -> version directory used


class Recommender:
    """The served ScaNN retrieval + ranking versions (newest, or stable by label), loaded as
    TF Serving would and joined by the two-stage graph (``serving.two_stage``)."""

    def __init__(self, serving_dir: str, rank_weight: float = 1.0):
        self.version_dirs = {}
        for name in (SCANN_MODEL, RANKING_MODEL):
            path = served_version_dir(serving_dir, name)
            if path is None:
                raise OutputError(
                    f"no pushed version of model '{name}' under {serving_dir}. Run "
                    "`recsys run` until the model is blessed and pushed, or pass the "
                    "--output-dir of a run that pushed it.")
            problem = version_problem(path)
            if problem:
                raise OutputError(
                    f"{path} is not a version this pipeline pushed: {problem}. TF Serving "
                    "serves the highest version number, so it would serve this directory too: "
                    "move it out of the model directory (or `recsys rollback` to a good one).")
            self.version_dirs[name] = path
        import tensorflow as tf

        from recsys_pipeline.serving import two_stage
        from recsys_pipeline.trainer import export

        self._tf = tf
        self.metadata = export.read_metadata(self.version_dirs[SCANN_MODEL])
        self._graph = two_stage.load(self.version_dirs[SCANN_MODEL],
                                     self.version_dirs[RANKING_MODEL], rank_weight)

    def recommend(self, user_id: str, k: int = 10,
                  timestamp: Optional[int] = None) -> Recommendations:
        """Top-k for a user: ScaNN candidates less the user's rated movies, ranked by the
        blend of both stages' scores.

        Unknown users get the popular fallback the retrieval model was exported with.
        """
        tf = self._tf
        candidates = self._graph.candidates
        if not 1 <= k <= candidates:
            raise ConfigError(f"--k {k} must be from 1 to the {candidates} candidates the "
                              "retrieval model returns (index.k)")
        served = self._graph.serve(
            user_id=tf.constant([user_id]), timestamp=tf.constant([timestamp or 0], tf.int64),
            k=tf.constant([k], tf.int64))
        known = bool(served["known_user"].numpy()[0])
        items = [Recommendation(m.decode(), t.decode("utf-8", "replace"),
                                float(r) if known else None, float(p), float(s))
                 for m, t, r, p, s in zip(
                     served["movie_ids"].numpy()[0], served["movie_titles"].numpy()[0],
                     served["retrieval_scores"].numpy()[0], served["ranking_scores"].numpy()[0],
                     served["scores"].numpy()[0], strict=True)
                 if math.isfinite(s)]  # -inf: fewer unrated candidates than k
        return Recommendations(user_id, known, items, dict(self.version_dirs))
