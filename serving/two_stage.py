"""The two-stage recommender: retrieve, drop what the user rated, rank, in one SavedModel.

Without it a service calling TF Serving has to call retrieval, drop seen items itself, call
ranking and merge the scores. ``TwoStageExport`` composes a retrieval export (the ScaNN one,
or the brute-force one for stock TF Serving) and a ranking export, both as loaded from disk,
into one ``serving_default(user_id, timestamp, k)``:

1. the N best candidates of the retrieval stage that the user has not interacted with
   (``recommender.candidates``, by default the retrieval export's own k; what is dropped is
   ``Seen``: every interaction of every split of the run's data, or, where the module is
   built without one, the train split's, the retrieval export's ``rated_pairs``), for the
   user at ``timestamp`` (0 or
   less: the newest train rating's time): the search goes N plus the request's most rated
   items deep, in the ScaNN export's index (with the leaves its indexer tuned, widened in
   proportion to the depth) or exactly in the brute-force export;
2. those rated items dropped, leaving N;
3. the rest scored by the ranking model in the same graph;
4. ``scores`` = ``rank_weight`` x ranking + (1 - rank_weight) x retrieval, each standardized
   over the request's remaining candidates (the two are on unrelated scales); the top k.

An unknown user (the retrieval vocabulary's out-of-vocabulary row) gets the retrieval
export's popular fallback instead, in its order, less what the user interacted with, with
``known_user`` false.

``gate_serve`` (a saved function, not a signature: TF Serving never exposes it) answers the
same request dropping the train split's items alone: the recommender's gate grades lists
against the eval split, whose items the served lists must never show. Places left
without an item (fewer than k unrated candidates) have item id "" and score -inf. Bad
requests fail with TF Serving's InvalidArgument and a message naming the input.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Optional

import numpy as np
import tensorflow as tf

from recsys_pipeline.errors import OutputError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import scann_export
from recsys_pipeline.serving.list_metrics import read_interactions
from recsys_pipeline.trainer import export
from recsys_pipeline.trainer.export_metadata import ExportMetadata

KIND = nodes.RECOMMENDER.name  # ExportMetadata.kind of this export
MAX_USER_ID_LENGTH = 256
K_SPEC = tf.TensorSpec([None], tf.int64, name="k")
_NO_SCORE = -np.inf


@dataclasses.dataclass(frozen=True)
class Seen:
    """Every (user, item) interaction to keep out of served lists, as ragged catalogue rows:
    user ``users[i]`` (sorted ids) interacted with ``rows[splits[i]:splits[i + 1]]``."""

    users: np.ndarray
    rows: np.ndarray
    splits: np.ndarray

    @property
    def pairs(self) -> int:
        return int(len(self.rows))

    @classmethod
    def of(cls, users: np.ndarray, items: np.ndarray, candidate_ids: np.ndarray) -> Seen:
        """From parallel arrays of user and item ids (bytes); items outside the catalogue
        (``candidate_ids``) cannot be served and are left out."""
        by_id = np.argsort(candidate_ids)
        ordered = candidate_ids[by_id]
        found = np.minimum(np.searchsorted(ordered, items), max(len(ordered) - 1, 0))
        known = (ordered[found] == items) if len(ordered) else np.zeros(len(items), bool)
        rows = by_id[found[known]].astype(np.int64)
        user_ids, user_rows = np.unique(np.asarray(users, object)[known], return_inverse=True)
        keys = np.unique(user_rows.astype(np.int64) * max(len(ordered), 1) + rows)
        user_rows, rows = np.divmod(keys, max(len(ordered), 1))
        counts = np.bincount(user_rows, minlength=len(user_ids))
        splits = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(user_ids, rows.astype(np.int64), splits)


def seen_in(split_dirs: Iterable[str], candidate_ids: np.ndarray) -> Seen:
    """``Seen`` from every raw example (ExampleGen's layout) under ``split_dirs``."""
    users, items = [], []
    for batch in read_interactions(
            [p for d in split_dirs for p in tf.io.gfile.glob(os.path.join(d, "*"))]):
        users.append(batch.users)
        items.append(batch.items)
    return Seen.of(np.concatenate(users) if users else np.zeros(0, object),
                   np.concatenate(items) if items else np.zeros(0, object), candidate_ids)


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

    def __init__(self, base: Any, retrieval_metadata: ExportMetadata, ranking: Any,
                 rank_weight: float, candidates: Optional[int] = None,
                 index: Optional[scann_export.ScannIndex] = None, seen: Optional[Seen] = None):
        """``base``: a loaded brute-force retrieval export (or a module with its
        ``query_embedding``, ``rated_pairs``, ``candidate_ids`` and ``candidate_titles``, and
        ``candidate_embeddings`` when there is no ``index``); ``index``: a ScaNN index over
        its candidates, searched in place of exact scores; ``retrieval_metadata``: the
        retrieval export's (its k, fallback and training time); ``seen``: what ``serve``
        drops (default: the train split's rated items)."""
        super().__init__()
        if retrieval_metadata.rated_pairs is None:
            raise OutputError(
                "the retrieval export carries no rated items to drop (it predates them): "
                "retrain it with this version of the pipeline")
        if not 0.0 <= rank_weight <= 1.0:
            raise OutputError(f"rank_weight must be within [0, 1] (got {rank_weight})")
        self.ranking = ranking
        self.base = base
        self.index = index
        self._source = retrieval_metadata
        ids = self.base.candidate_ids.numpy()
        n = min(int(candidates or retrieval_metadata.serving_k or 0), len(ids))
        if n < 1:
            raise OutputError(f"candidates must be at least 1 (got {candidates})")
        self._catalogue_size = len(ids)
        self._candidates = n
        self._rank_weight = float(rank_weight)
        self._latest = int(retrieval_metadata.latest_train_timestamp or 0)
        row_of = {m: i for i, m in enumerate(ids.tolist())}
        popular = [p for p in (retrieval_metadata.popular or [])
                   if p["item_id"].encode() in row_of][:n]
        pad = n - len(popular)
        self.popular_rows = tf.Variable(
            np.array([row_of[p["item_id"].encode()] for p in popular] + [0] * pad, np.int64),
            trainable=False, name="popular_rows")
        self.popular_scores = tf.Variable(
            np.array([float(p.get("score", p.get("ratings", 0))) for p in popular]
                     + [_NO_SCORE] * pad, np.float32), trainable=False, name="popular_scores")
        self._seen = seen
        if seen is not None:
            users = seen.users if len(seen.users) else np.array([b""], object)
            self.seen_users = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(users, tf.string), tf.range(len(users), dtype=tf.int64)),
                default_value=len(seen.users))
            self.seen_rows = tf.Variable(seen.rows, trainable=False, name="seen_rows")
            # One more split, so that an unknown user (row len(users)) has none.
            self.seen_splits = tf.Variable(np.append(seen.splits, seen.splits[-1]),
                                           trainable=False, name="seen_splits")

    @property
    def candidates(self) -> int:
        return self._candidates

    @property
    def rank_weight(self) -> float:
        return self._rank_weight

    @property
    def scann(self) -> bool:
        return self.index is not None

    def excluding(self, seen: Seen) -> TwoStageExport:
        """The same stages, dropping ``seen`` from what ``serve`` answers."""
        return TwoStageExport(self.base, self._source, self.ranking, self._rank_weight,
                              self._candidates, self.index, seen)

    @property
    def seen(self) -> Optional[Seen]:
        return self._seen

    @property
    def source_metadata(self) -> ExportMetadata:
        """The retrieval export's metadata, which the module was built with."""
        return self._source

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

    def _retrieve(self, user_id, when, pairs):
        """(scores, catalogue rows, known_user): each user's N best candidates that they did
        not rate (score -inf where the catalogue has fewer). The search goes as deep as N plus
        the most items a user of the request rated, so that dropping them leaves N."""
        query = self.base.query_embedding(user_id, when)
        batch = tf.shape(user_id)[0]
        rated_per_user = tf.math.bincount(tf.cast(pairs[:, 0], tf.int32), minlength=batch,
                                          maxlength=batch)
        n = self._candidates
        depth = tf.minimum(n + tf.reduce_max(rated_per_user), self._catalogue_size)
        if self.index is not None:
            scores, rows = scann_export.scann_results(
                *self.index.search(query["embedding"], depth, tf.cast(depth, tf.float32) / n),
                depth)
        else:
            exact = tf.matmul(query["embedding"], self.base.candidate_embeddings,
                              transpose_b=True)
            top = tf.math.top_k(exact, k=depth)
            scores, rows = top.values, tf.cast(top.indices, tf.int64)
        rated = scann_export.rated_mask(rows, pairs, self._catalogue_size)
        best = tf.math.top_k(tf.where(rated, tf.constant(_NO_SCORE, scores.dtype), scores), k=n)
        return (best.values, tf.gather(rows, best.indices, batch_dims=1),
                query["known_user"])

    def _seen_pairs(self, user_id):
        """[n, 2] (request row, catalogue row) of every interaction of the requests' users,
        sorted by request, then row (what ``rated_mask`` searches)."""
        rows = self.seen_users.lookup(user_id)
        starts, ends = tf.gather(self.seen_splits, rows), tf.gather(self.seen_splits, rows + 1)
        positions = tf.ragged.range(starts, ends)
        return tf.stack([positions.value_rowids(), tf.gather(self.seen_rows,
                                                             positions.flat_values)], axis=1)

    @tf.function(input_signature=[export.USER_ID_SPEC, export.TIMESTAMP_SPEC, K_SPEC])
    def serve(self, user_id, timestamp, k):
        pairs = (self._seen_pairs(user_id) if self._seen is not None
                 else self.base.rated_pairs(user_id)["pairs"])
        return self._answer(user_id, timestamp, k, pairs)

    @tf.function(input_signature=[export.USER_ID_SPEC, export.TIMESTAMP_SPEC, K_SPEC])
    def gate_serve(self, user_id, timestamp, k):
        """``serve`` dropping the train split's items alone (what the gate grades)."""
        return self._answer(user_id, timestamp, k, self.base.rated_pairs(user_id)["pairs"])

    def _answer(self, user_id, timestamp, k, pairs):
        top_k = self._checked(user_id, k)
        when = tf.where(timestamp > 0, timestamp, tf.constant(self._latest, tf.int64))
        found, found_rows, known = self._retrieve(user_id, when, pairs)
        batch = tf.shape(user_id)[0]
        tiled = lambda v: tf.tile(v[None, :], [batch, 1])  # noqa: E731
        rows = tf.where(known[:, None], found_rows, tiled(self.popular_rows))
        retrieval = tf.where(known[:, None], found, tiled(self.popular_scores))
        # Retrieval already dropped a known user's items; the fallback has not.
        valid = tf.logical_and(tf.math.is_finite(retrieval), tf.logical_not(
            scann_export.rated_mask(rows, pairs, self._catalogue_size)))
        ids = tf.gather(self.base.candidate_ids, rows)
        n = tf.shape(ids)[1]
        ranked = self.ranking.serve(tf.repeat(user_id, n), tf.reshape(ids, [-1]))
        rating = tf.reshape(ranked[nodes.RATING_OUTPUT], [batch, n])
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

        return {nodes.ITEM_IDS_OUTPUT: pick(ids, ""),
                nodes.ITEM_TITLES_OUTPUT: pick(tf.gather(self.base.candidate_titles, rows), ""),
                "retrieval_scores": pick(retrieval, _NO_SCORE),
                "ranking_scores": pick(rating, _NO_SCORE), "scores": top.values,
                "known_user": known}

    def signatures(self) -> dict:
        return {"serving_default": self.serve}


def load(retrieval_dir: str, ranking_dir: str, rank_weight: float,
         candidates: Optional[int] = None, seen: Optional[Seen] = None) -> TwoStageExport:
    """A ``TwoStageExport`` over the exports saved at the two paths (``candidates``: N, by
    default the retrieval export's own k; ``seen``: what it drops, by default the train
    split's rated items)."""
    source = export.read_metadata(retrieval_dir)
    ranking = tf.saved_model.load(ranking_dir)
    if source.kind != scann_export.SCANN_KIND:
        return TwoStageExport(tf.saved_model.load(retrieval_dir), source, ranking, rank_weight,
                              candidates, seen=seen)
    import scann  # noqa: F401  (registers ScaNN's ops, which the index needs)

    if not source.index:
        raise OutputError(f"{retrieval_dir}: the ScaNN export records no index report (its "
                          "tuned leaves): rebuild it with this version of the pipeline")
    loaded = tf.saved_model.load(retrieval_dir)
    # The export's own search returns its index.k; the same index searched here returns N,
    # with the leaves the indexer tuned.
    index = scann_export.ScannIndex.of_export(loaded, source.index, int(source.serving_k or 1))
    return TwoStageExport(loaded.base, source, ranking, rank_weight, candidates, index, seen)


def save(module: TwoStageExport, out_dir: str) -> ExportMetadata:
    """Saves ``module`` at ``out_dir`` with its metadata (its retrieval export's, made the
    recommender's) and warm-up inputs; returns the metadata."""
    source = module.source_metadata
    users = list(source.warmup_inputs.get("user_id", []))
    metadata = dataclasses.replace(
        source, kind=KIND, serving_k=module.candidates, exclude_rated=None,
        seen_pairs=None if module.seen is None else module.seen.pairs,
        retrieval_kind=source.kind,
        warmup_inputs={"user_id": users, "timestamp": [0] * len(users),
                       "k": [min(10, module.candidates)] * len(users)},
        warm_start=None, hparams={"rank_weight": module.rank_weight,
                                  "candidates": module.candidates})
    export.save(module, out_dir, metadata,
                namespace_whitelist=[scann_export.SCANN_NAMESPACE] if module.scann else None)
    return metadata


def build(retrieval_dir: str, ranking_dir: str, out_dir: str, rank_weight: float,
          candidates: Optional[int] = None, seen: Optional[Seen] = None) -> ExportMetadata:
    """Saves the two-stage export of the two exports at ``out_dir``; returns its metadata."""
    return save(load(retrieval_dir, ranking_dir, rank_weight, candidates, seen), out_dir)


def gate_function(loaded: Any) -> Any:
    """What the gate grades of a loaded recommender: its ``gate_serve``, or, in one saved
    before served lists dropped every interaction, its ``serving_default`` (which dropped the
    train split's alone)."""
    return getattr(loaded, "gate_serve", None) or loaded.signatures["serving_default"]
