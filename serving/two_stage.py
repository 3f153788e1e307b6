"""The two-stage recommender: retrieve, drop what the user rated, rank, in one SavedModel.

Without it a service calling TF Serving has to call retrieval, drop seen movies itself, call
ranking and merge the scores. ``TwoStageExport`` composes a retrieval export (the ScaNN one,
or the brute-force one for stock TF Serving) and a ranking export, both as loaded from disk,
into one ``serving_default(user_id, timestamp, k)``:

1. the retrieval export's top N candidates (N = its ``serving_k``) for the user at
   ``timestamp`` (0 or less: the newest train rating's time, as ``recsys recommend``
   defaults);
2. the user's train-split rated movies dropped (the retrieval export's ``rated_pairs``);
3. the rest scored by the ranking model in the same graph;
4. ``scores`` = ``rank_weight`` x ranking + (1 - rank_weight) x retrieval, each standardized
   over the request's remaining candidates (the two are on unrelated scales); the top k.

An unknown user (the retrieval vocabulary's out-of-vocabulary row) gets the retrieval
export's popular fallback instead, in its order, with ``known_user`` false. Places left
without a movie (fewer than k unrated candidates) have movie id "" and score -inf. Bad
requests fail with TF Serving's InvalidArgument and a message naming the input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_pipeline.errors import OutputError
from recsys_pipeline.serving import scann_export
from recsys_pipeline.trainer import export
from recsys_pipeline.trainer.export_metadata import ExportMetadata

KIND = "recommender"  # ExportMetadata.kind of this export
MAX_USER_ID_LENGTH = 256
K_SPEC = tf.TensorSpec([None], tf.int64, name="k")
_NO_SCORE = -np.inf


def standardized(values: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Per row, ``values`` less their mean over ``valid`` places, over their standard
    deviation there (1 where it is 0); invalid places become 0."""
    weight = tf.cast(valid, values.dtype)
    count = tf.maximum(tf.reduce_sum(weight, axis=1, keepdims=True), 1.0)
    x = tf.where(valid, values, tf.zeros_like(values))
    mean = tf.reduce_sum(x, axis=1, keepdims=True) / count
    centred = tf.where(valid, x - mean, tf.zeros_like(x))
    std = tf.sqrt(tf.reduce_sum(centred * centred, axis=1, keepdims=True) / count)
    return centred / tf.where(std > 0, std, tf.ones_like(std))


class TwoStageExport(tf.Module):
    """Retrieve -> drop rated -> rank -> blend, over loaded exports (see the module doc)."""

    def __init__(self, retrieval: Any, retrieval_metadata: ExportMetadata, ranking: Any,
                 rank_weight: float):
        super().__init__()
        if not retrieval_metadata.rated_pairs and retrieval_metadata.rated_pairs != 0:
            raise OutputError(
                "the retrieval export carries no rated movies to drop (it predates them): "
                "retrain it with this version of the pipeline")
        if not 0.0 <= rank_weight <= 1.0:
            raise OutputError(f"rank_weight must be within [0, 1] (got {rank_weight})")
        self.retrieval = retrieval
        self.ranking = ranking
        base = retrieval.base if retrieval_metadata.kind == scann_export.SCANN_KIND else retrieval
        self.base = base
        ids = base.candidate_ids.numpy()
        self.movie_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids, tf.string), tf.range(len(ids), dtype=tf.int64)), -1)
        self._catalogue_size = len(ids)
        self._candidates = int(retrieval_metadata.serving_k or 0)
        self._rank_weight = float(rank_weight)
        self._latest = int(retrieval_metadata.latest_train_timestamp or 0)
        popular = (retrieval_metadata.popular or [])[:self._candidates]
        pad = self._candidates - len(popular)
        self.popular_ids = tf.Variable(
            np.array([p["movie_id"].encode() for p in popular] + [b""] * pad, object),
            trainable=False, name="popular_ids")
        self.popular_titles = tf.Variable(
            np.array([p["title"].encode() for p in popular] + [b""] * pad, object),
            trainable=False, name="popular_titles")
        self.popular_scores = tf.Variable(
            np.array([float(p.get("score", p.get("ratings", 0))) for p in popular]
                     + [_NO_SCORE] * pad, np.float32), trainable=False, name="popular_scores")

    @property
    def candidates(self) -> int:
        return self._candidates

    def _checked(self, user_id, k):
        n = self._candidates
        length = tf.strings.length(user_id, unit="UTF8_CHAR")
        checks = [
            tf.debugging.assert_greater(length, 0, message="user_id: an empty user id"),
            tf.debugging.assert_less_equal(
                length, MAX_USER_ID_LENGTH,
                message=f"user_id: longer than {MAX_USER_ID_LENGTH} characters"),
            tf.debugging.assert_equal(tf.size(k), tf.size(user_id),
                                      message="k: one value per user_id"),
            tf.debugging.assert_greater_equal(k, tf.constant(1, tf.int64),
                                              message="k: must be at least 1"),
            tf.debugging.assert_less_equal(
                k, tf.constant(n, tf.int64),
                message=f"k: above the {n} candidates retrieval returns"),
            tf.debugging.assert_equal(k, tf.fill(tf.shape(k), tf.reduce_max(k)),
                                      message="k: one value for every row of a request"),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(tf.reduce_max(k))

    @tf.function(input_signature=[export.USER_ID_SPEC, export.TIMESTAMP_SPEC, K_SPEC])
    def serve(self, user_id, timestamp, k):
        top_k = self._checked(user_id, k)
        when = tf.where(timestamp > 0, timestamp, tf.constant(self._latest, tf.int64))
        found = self.retrieval.serve(user_id, when)
        known = found["known_user"]
        batch = tf.shape(user_id)[0]
        tiled = lambda v: tf.tile(v[None, :], [batch, 1])  # noqa: E731
        ids = tf.where(known[:, None], found["movie_ids"], tiled(self.popular_ids))
        titles = tf.where(known[:, None], found["movie_titles"], tiled(self.popular_titles))
        retrieval = tf.where(known[:, None], found["scores"], tiled(self.popular_scores))
        rows = self.movie_rows.lookup(ids)
        rated = scann_export.rated_mask(tf.maximum(rows, 0),
                                        self.base.rated_pairs(user_id)["pairs"],
                                        self._catalogue_size)
        valid = tf.math.is_finite(retrieval) & (rows >= 0) & ~rated
        n = tf.shape(ids)[1]
        ranked = self.ranking.serve(tf.repeat(user_id, n), tf.reshape(ids, [-1]))
        rating = tf.reshape(ranked["rating"], [batch, n])
        w = self._rank_weight
        blended = w * standardized(rating, valid) + (1 - w) * standardized(retrieval, valid)
        # Unknown users keep the popular fallback's order: the ranking model knows nothing of them.
        final = tf.where(known[:, None], blended, retrieval)
        final = tf.where(valid, final, tf.constant(_NO_SCORE, final.dtype))
        top = tf.math.top_k(final, k=tf.cast(top_k, tf.int32))
        kept = tf.gather(valid, top.indices, batch_dims=1)

        def pick(values, empty):
            picked = tf.gather(values, top.indices, batch_dims=1)
            return tf.where(kept, picked, tf.fill(tf.shape(picked), empty))

        return {"movie_ids": pick(ids, ""), "movie_titles": pick(titles, ""),
                "retrieval_scores": pick(retrieval, _NO_SCORE),
                "ranking_scores": pick(rating, _NO_SCORE), "scores": top.values,
                "known_user": known}

    def signatures(self) -> dict:
        return {"serving_default": self.serve}


def load(retrieval_dir: str, ranking_dir: str, rank_weight: float) -> TwoStageExport:
    """A ``TwoStageExport`` over the exports saved at the two paths."""
    if export.read_metadata(retrieval_dir).kind == scann_export.SCANN_KIND:
        import scann  # noqa: F401  (registers ScaNN's ops, which the index needs)
    return TwoStageExport(tf.saved_model.load(retrieval_dir), export.read_metadata(retrieval_dir),
                          tf.saved_model.load(ranking_dir), rank_weight)


def build(retrieval_dir: str, ranking_dir: str, out_dir: str,
          rank_weight: float) -> ExportMetadata:
    """Saves the two-stage export of the two exports at ``out_dir``; returns its metadata."""
    module = load(retrieval_dir, ranking_dir, rank_weight)
    source = export.read_metadata(retrieval_dir)
    users = list(source.warmup_inputs.get("user_id", []))
    metadata = dataclasses.replace(
        source, kind=KIND, serving_k=module.candidates, index=None, exclude_rated=None,
        warmup_inputs={"user_id": users, "timestamp": [0] * len(users),
                       "k": [min(10, module.candidates)] * len(users)},
        warm_start=None, hparams={"rank_weight": rank_weight})
    scann = source.kind == scann_export.SCANN_KIND
    export.save(module, out_dir, metadata,
                namespace_whitelist=[scann_export.SCANN_NAMESPACE] if scann else None)
    return metadata
