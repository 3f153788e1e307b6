"""``recsys recommend`` from Python: the newest pushed ScaNN retrieval and ranking versions,
loaded as TF Serving loads them, answer one user: retrieve candidates, then rank them.

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
    retrieval_score: Optional[float]
    predicted_rating: float


@dataclasses.dataclass
class Recommendations:
    user_id: str
    known_user: bool
    items: list[Recommendation]
    versions: dict[str, str]  # model name -> version directory used


class Recommender:
    """The served ScaNN retrieval + ranking versions (newest, or stable by label), loaded as
    TF Serving would."""

    def __init__(self, serving_dir: str):
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
        import scann  # noqa: F401  (registers ScaNN's ops; the retrieval model needs them)
        import tensorflow as tf

        from recsys_pipeline.trainer import export

        self._tf = tf
        self.metadata = export.read_metadata(self.version_dirs[SCANN_MODEL])
        self._retrieval = tf.saved_model.load(self.version_dirs[SCANN_MODEL])
        self._ranking = tf.saved_model.load(self.version_dirs[RANKING_MODEL])

    def recommend(self, user_id: str, k: int = 10,
                  timestamp: Optional[int] = None) -> Recommendations:
        """Top-k for a user: ScaNN candidates re-ranked by predicted rating.

        Unknown users get the most-rated movies of the training data instead (the retrieval
        model would only return what its out-of-vocabulary embedding scores highest).
        """
        tf = self._tf
        serving_k = int(self.metadata.serving_k or 0)
        if k > serving_k:
            raise ConfigError(f"--k {k} is above the {serving_k} candidates the retrieval "
                              "model returns (index.k)")
        when = timestamp if timestamp is not None else self.metadata.latest_train_timestamp
        retrieved = self._retrieval.signatures["serving_default"](
            user_id=tf.constant([user_id]), timestamp=tf.constant([when], tf.int64))
        known = bool(retrieved["known_user"].numpy()[0])
        found: list[tuple[str, str, Optional[float]]]
        if known:
            found = [(m.decode(), t.decode("utf-8", "replace"), float(s)) for m, t, s in zip(
                retrieved["movie_ids"].numpy()[0], retrieved["movie_titles"].numpy()[0],
                retrieved["scores"].numpy()[0], strict=True)
                if math.isfinite(s)]  # -inf marks places the search left unfilled
        else:
            found = [(p["movie_id"], p["title"], None)
                     for p in (self.metadata.popular or [])[:serving_k]]
        ratings = []
        if found:
            served = self._ranking.signatures["serving_default"](
                user_id=tf.constant([user_id] * len(found)),
                movie_id=tf.constant([f[0] for f in found]))
            ratings = served["rating"].numpy().reshape(-1).tolist()
        items = [Recommendation(*f, float(r)) for f, r in zip(found, ratings, strict=True)]
        if known:
            items.sort(key=lambda r: -r.predicted_rating)
        return Recommendations(user_id, known, items[:k], dict(self.version_dirs))
