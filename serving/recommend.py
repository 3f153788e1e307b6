"""``recsys recommend`` from Python: a thin client of the served 'recommender'.

It loads the served version of the two-stage recommender (``serving.two_stage``: ScaNN
candidates, the user's rated items dropped, the rest ranked) as TF Serving loads it, and
sends it the request TF Serving would get, so that its answers are the servable's answers.
The version is the one TF Serving serves: the newest, or with version labels the stable one.

It reads the model base that ``serving.layout`` describes; no Trainer runs this code, so
editing it re-trains nothing (the Trainers' cache fingerprints do not cover it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from recsys_pipeline.errors import ConfigError, OutputError
from recsys_pipeline.pipeline.nodes import RECOMMENDER_MODEL
from recsys_pipeline.serving.layout import version_problem
from recsys_pipeline.serving.model_config import served_version_dir


@dataclasses.dataclass
class Recommendation:
    item_id: str
    title: str
    retrieval_score: Optional[float]  # None for the unknown users' popular fallback
    predicted_rating: float
    score: float  # the two stages blended (recommender.rank_weight)


@dataclasses.dataclass
class Recommendations:
    user_id: str
    known_user: bool
    items: list[Recommendation]
    versions: dict[str, str]  # model name -> version directory used


def served_recommender(serving_dir: str) -> str:
    """The version directory TF Serving serves for the recommender; an error saying what to
    do when there is none, or when it is not a version this pipeline pushed."""
    path = served_version_dir(serving_dir, RECOMMENDER_MODEL)
    if path is None:
        raise OutputError(
            f"no pushed version of model '{RECOMMENDER_MODEL}' under {serving_dir}. Run "
            "`recsys run` (with recommender.enabled) until the recommender is blessed and "
            "pushed, or pass the --output-dir of a run that pushed it.")
    problem = version_problem(path)
    if problem:
        raise OutputError(
            f"{path} is not a version this pipeline pushed: {problem}. TF Serving "
            "serves the highest version number, so it would serve this directory too: "
            "move it out of the model directory (or `recsys rollback` to a good one).")
    return path


class Recommender:
    """The served recommender, loaded as TF Serving would (see the module doc)."""

    def __init__(self, serving_dir: str):
        path = served_recommender(serving_dir)
        self.version_dirs = {RECOMMENDER_MODEL: path}
        import scann  # noqa: F401  (registers ScaNN's ops, which the served index needs)
        import tensorflow as tf

        from recsys_pipeline.trainer import export

        self.metadata = export.read_metadata(path)
        self._serve = tf.saved_model.load(path).signatures["serving_default"]

    @property
    def candidates(self) -> int:
        return int(self.metadata.serving_k or 0)

    def recommend(self, user_id: str, k: int = 10,
                  timestamp: Optional[int] = None) -> Recommendations:
        """Top-k for a user, as the servable answers ``serving_default`` (unknown users get
        the popular fallback the retrieval model was exported with)."""
        from recsys_pipeline.serving import batch

        if not 1 <= k <= self.candidates:
            raise ConfigError(f"--k {k} must be from 1 to the {self.candidates} candidates the "
                              "recommender retrieves (recommender.candidates)")
        served = batch.request(self._serve, [user_id], [timestamp or 0], k)
        known = bool(served.known_user[0])
        items = [Recommendation(m.decode(), t.decode("utf-8", "replace"),
                                float(r) if known else None, float(p), float(s))
                 for m, t, r, p, s in zip(
                     served.item_ids[0], served.item_titles[0], served.retrieval_scores[0],
                     served.ranking_scores[0], served.scores[0], strict=True)
                 if math.isfinite(s)]  # -inf: fewer unrated candidates than k
        return Recommendations(user_id, known, items, dict(self.version_dirs))
