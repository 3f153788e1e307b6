"""SavedModel exports: raw-feature serving signatures with the Transform graph inside.

* ``RetrievalExport`` (brute force, pure TF, loadable by stock TF Serving):
    - ``serving_default(user_id, timestamp)`` -> top-k ``item_ids``, ``item_titles``,
      ``scores`` over the whole catalogue, and ``known_user``;
    - ``query_embedding(user_id, timestamp)`` -> ``embedding``, ``known_user``;
    - ``evaluate(examples)`` (serialized raw tf.Examples, for TFMA) -> ``top_k_hit``: 1.0 when
      the example's item ranks within the top ``eval_k`` of the catalogue for its query (the
      TFRS FactorizedTopK definition), and its ``rank``.
* ``serving.scann_export.ScannExport`` (not trained, so not here): the same
  ``serving_default``/``query_embedding`` over a ScaNN index of a loaded ``RetrievalExport``.
* ``RankingExport``: ``serving_default(user_id, item_id)`` -> ``rating``; ``evaluate``.
* ``SequentialExport`` (GRU4Rec, brute force): ``serving_default(context_items)`` -> top-k
  ``item_ids``, ``scores``; the user's recent items come with the request. The pipeline's
  ``SequentialHistoryExport`` adds ``recommend(user_id, timestamp)`` and ``evaluate`` over
  the train history exported with it.

Request-time features come from the raw ids alone: the Transform graph maps ids and
timestamps; user and item features come from tables built at training time.
Each export also writes ``assets.extra/recsys_model.json`` (``write_metadata``), which the
Pusher, ``recsys recommend`` and the run summary read.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.trainer.export_metadata import METADATA_FILE, ExportMetadata
from recsys_pipeline.trainer.inputs import (
    Catalogue,
    TrainStats,
    UserHistory,
    history_context,
    to_model_features,
)
from recsys_pipeline.transform import features as F

USER_ID_SPEC = tf.TensorSpec([None], tf.string, name=F.USER_ID)
_ITEM_ID = tf.TensorSpec([None], tf.string, name=F.ITEM_ID)
TIMESTAMP_SPEC = tf.TensorSpec([None], tf.int64, name=F.TIMESTAMP)
_EXAMPLES = tf.TensorSpec([None], tf.string, name="examples")
# Every ``evaluate`` signature's per-example model score, which the Evaluators check is finite
# and not constant before TFMA grades the model (``components/recsys_evaluator.py``).
SCORE_OUTPUT = nodes.SCORE_OUTPUT


def _table(keys: np.ndarray, default: int) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.string), tf.range(len(keys), dtype=tf.int64)),
        default_value=default)


class ServingFeatures(tf.Module):
    """Raw request values -> model features (see module docstring)."""

    def __init__(self, tft_output, sizes: dict[str, int], catalogue: Catalogue,
                 stats: TrainStats):
        super().__init__()
        self.tft_layer = tft_output.transform_features_layer()
        self._raw_spec = tft_output.raw_feature_spec()
        self._user_oov = sizes[F.index_name(F.USER_ID)] - 1
        users = stats.users.ids
        self.user_rows = _table(users if len(users) else np.array([b""], object), len(users))
        # One row past the users: what an unknown user gets.
        self.user_features = {name: tf.Variable(_with_unknown_row(values, name, sizes),
                                                trainable=False, name=name)
                              for name, values in stats.users.columns.items()}
        self.item_rows = _table(catalogue.item_ids, len(catalogue))
        self.item_features = {name: tf.Variable(_with_unknown_row(values, name, sizes),
                                                 trainable=False, name=name)
                               for name, values in catalogue.features.items()}

    def _raw(self, name: str, values: tf.Tensor) -> tf.Tensor:
        # The Transform graph takes each raw feature in its schema's shape: [batch, 1] for a
        # fixed-length-1 feature (TFX's schemas), [batch] for a scalar one.
        shape = self._raw_spec[name].shape
        return values[:, None] if list(shape) == [1] else values

    def user(self, user_id: tf.Tensor, timestamp: Optional[tf.Tensor] = None) -> dict:
        raw = {F.USER_ID: self._raw(F.USER_ID, user_id)}
        if timestamp is not None:
            raw[F.TIMESTAMP] = self._raw(F.TIMESTAMP, timestamp)
        out = to_model_features(self.tft_layer(raw))
        out.pop(F.USER_ID, None)
        out.pop(F.TIMESTAMP, None)
        if self.user_features:
            rows = self.user_rows.lookup(user_id)
            for name, values in self.user_features.items():
                out[name] = tf.gather(values, rows)
        return out

    def known_user(self, features: dict) -> tf.Tensor:
        return features[F.index_name(F.USER_ID)] != self._user_oov

    def item(self, item_id: tf.Tensor) -> dict:
        rows = self.item_rows.lookup(item_id)
        return {name: tf.gather(var, rows) for name, var in self.item_features.items()}

    def examples(self, serialized: tf.Tensor) -> dict:
        """Serialized raw tf.Examples (as ExampleGen writes them) -> model features."""
        return to_model_features(self.tft_layer(tf.io.parse_example(serialized, self._raw_spec)))


def _with_unknown_row(values: np.ndarray, name: str, sizes: dict[str, int]) -> np.ndarray:
    """A user or catalogue feature table with one more row, for an unknown user or item:
    no ids in a list, the mean (0) of a z-score, the out-of-vocabulary id otherwise."""
    if values.ndim == 2:
        row = np.full((1, values.shape[1]), F.LIST_PADDING, values.dtype)
    elif values.dtype.kind == "f":
        row = np.zeros(1, values.dtype)
    else:
        row = np.array([sizes[name] - 1], values.dtype)
    return np.concatenate([values, row])


def catalogue_embeddings(candidate_tower: tf.keras.Model, catalogue: Catalogue,
                         batch_size: int = 4096) -> np.ndarray:
    """Candidate embeddings of every catalogue row, in row order."""
    out = []
    for start in range(0, len(catalogue), batch_size):
        batch = {n: v[start:start + batch_size] for n, v in catalogue.features.items()}
        out.append(candidate_tower(batch).numpy())
    return np.concatenate(out)


def top_k_hit(scores: tf.Tensor, rows: tf.Tensor, k: int) -> dict[str, tf.Tensor]:
    """``top_k_hit`` (1.0 when candidate ``rows`` ranks within the top ``k`` of its score row),
    its ``rank`` and its ``score``.

    The rank counts every other candidate scored at least as high: a tie is not a hit, so a
    model scoring everything alike hits nothing. A non-finite score of the positive, or a row
    past the candidates (an unknown item), is a miss.
    """
    in_catalogue = rows < tf.shape(scores, out_type=tf.int64)[1]
    # The positive's score is read from the same score row, so the item never outranks
    # itself through rounding.
    positive = tf.gather(scores, tf.where(in_catalogue, rows, 0), batch_dims=1)
    rank = tf.reduce_sum(tf.cast(scores >= positive[:, None], tf.int64), axis=1) - 1
    finite = tf.math.is_finite(positive)
    hit = tf.logical_and(tf.logical_and(in_catalogue, finite), rank < k)
    return {nodes.HIT_OUTPUT: tf.cast(hit, tf.float32), "rank": tf.maximum(rank, 0),
            SCORE_OUTPUT: positive}


class RetrievalExport(tf.Module):
    """Brute-force retrieval over the catalogue (see module docstring)."""

    def __init__(self, query_tower: tf.keras.Model, features: ServingFeatures,
                 catalogue: Catalogue, embeddings: np.ndarray, k: int, eval_k: int,
                 rated: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 exclude: Optional[bool] = None):
        super().__init__()
        self.query_tower = query_tower
        self.features = features
        self.candidate_embeddings = tf.Variable(embeddings, trainable=False,
                                                name="candidate_embeddings")
        self.candidate_ids = tf.Variable(catalogue.item_ids, trainable=False,
                                         name="candidate_ids")
        self.candidate_titles = tf.Variable(catalogue.titles, trainable=False,
                                            name="candidate_titles")
        self._k = min(k, len(catalogue))
        self._eval_k = eval_k
        # Items each train user rated (``inputs.rated_items``), exported whenever given:
        # the two-stage recommender drops them. ``exclude`` (default: when given) also drops
        # them from what this model serves and from the top-k it is evaluated on.
        self._has_rated = rated is not None
        self._exclude = self._has_rated if exclude is None else exclude and self._has_rated
        values, splits = rated if rated is not None else (np.zeros(0, np.int64),
                                                          np.zeros(1, np.int64))
        self.rated_values = tf.Variable(values, trainable=False, name="rated_values")
        self.rated_splits = tf.Variable(splits, trainable=False, name="rated_splits")

    def _query(self, user_id, timestamp):
        f = self.features.user(user_id, timestamp)
        return self.query_tower(f), self.features.known_user(f)

    def _rated_pairs(self, user_id):
        """[n, 2] (request row, catalogue row) of every item the requests' users rated."""
        rows = self.features.user_rows.lookup(user_id)
        starts, ends = tf.gather(self.rated_splits, rows), tf.gather(self.rated_splits, rows + 1)
        positions = tf.ragged.range(starts, ends)
        items = tf.gather(self.rated_values, positions.flat_values)
        return tf.stack([positions.value_rowids(), items], axis=1)

    def _without_rated(self, scores, user_id):
        if not self._exclude:
            return scores
        pairs = self._rated_pairs(user_id)
        return tf.tensor_scatter_nd_update(
            scores, pairs, tf.fill([tf.shape(pairs)[0]], tf.constant(-np.inf, scores.dtype)))

    @tf.function(input_signature=[USER_ID_SPEC])
    def rated_pairs(self, user_id):
        """(request row, catalogue row) of each item the requests' users rated in the train
        split; empty when the export carries no rated items."""
        if not self._has_rated:
            return {"pairs": tf.zeros([0, 2], tf.int64)}
        return {"pairs": self._rated_pairs(user_id)}

    @tf.function(input_signature=[USER_ID_SPEC, TIMESTAMP_SPEC])
    def query_embedding(self, user_id, timestamp):
        embedding, known = self._query(user_id, timestamp)
        return {"embedding": embedding, "known_user": known}

    @tf.function(input_signature=[USER_ID_SPEC, TIMESTAMP_SPEC])
    def serve(self, user_id, timestamp):
        embedding, known = self._query(user_id, timestamp)
        scores = tf.matmul(embedding, self.candidate_embeddings, transpose_b=True)
        top = tf.math.top_k(self._without_rated(scores, user_id), k=self._k)
        return {nodes.ITEM_IDS_OUTPUT: tf.gather(self.candidate_ids, top.indices),
                nodes.ITEM_TITLES_OUTPUT: tf.gather(self.candidate_titles, top.indices),
                "scores": top.values, "known_user": known}

    @tf.function(input_signature=[_EXAMPLES])
    def evaluate(self, examples):
        f = self.features.examples(examples)
        scores = tf.matmul(self.query_tower(f), self.candidate_embeddings, transpose_b=True)
        scores = self._without_rated(scores, f[F.USER_ID])
        return top_k_hit(scores, self.features.item_rows.lookup(f[F.ITEM_ID]), self._eval_k)

    def signatures(self) -> dict:
        return {"serving_default": self.serve, "query_embedding": self.query_embedding,
                nodes.EVAL_SIGNATURE: self.evaluate}


class RankingExport(tf.Module):
    """Rating prediction from raw ids (see module docstring)."""

    def __init__(self, model: tf.keras.Model, features: ServingFeatures):
        super().__init__()
        self.model = model
        self.features = features

    @tf.function(input_signature=[USER_ID_SPEC, _ITEM_ID])
    def serve(self, user_id, item_id):
        f = self.features.user(user_id)
        f.update(self.features.item(item_id))
        return {nodes.RATING_OUTPUT: self.model(f), "known_user": self.features.known_user(f)}

    @tf.function(input_signature=[_EXAMPLES])
    def evaluate(self, examples):
        rating = self.model(self.features.examples(examples))
        return {nodes.RATING_OUTPUT: rating, SCORE_OUTPUT: rating}

    def signatures(self) -> dict:
        return {"serving_default": self.serve, nodes.EVAL_SIGNATURE: self.evaluate}


class SequentialExport(tf.Module):
    """Brute-force GRU4Rec serving over ``item_ids`` (row i = item_id_index i).

    ``serving_default(context_items)``: [batch, n] raw item ids, oldest first, "" for
    padding (any n; the model was trained on its configured context length, and a longer
    request is cut to its most recent items). Unknown ids are dropped like padding. Returns
    the top ``k`` ``item_ids`` and ``scores``.
    """

    def __init__(self, query_tower: tf.keras.Model, item_ids: np.ndarray,
                 embeddings: np.ndarray, k: int, context_length: int):
        super().__init__()
        self.query_tower = query_tower
        self.item_rows = _table(np.asarray(item_ids, object), F.LIST_PADDING)
        self.candidate_ids = tf.Variable(np.asarray(item_ids, object), trainable=False,
                                         name="candidate_ids")
        self.candidate_embeddings = tf.Variable(embeddings, trainable=False,
                                                name="candidate_embeddings")
        self._k = min(k, len(item_ids))
        self._length = context_length

    def _top_k(self, context_rows):
        query = self.query_tower({F.CONTEXT_INDEX: context_rows})
        top = tf.math.top_k(tf.matmul(query, self.candidate_embeddings, transpose_b=True),
                            k=self._k)
        return {nodes.ITEM_IDS_OUTPUT: tf.gather(self.candidate_ids, top.indices),
                "scores": top.values}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="context_items")])
    def serve(self, context_items):
        return self._top_k(self.item_rows.lookup(context_items[:, -self._length:]))

    def signatures(self) -> dict:
        return {"serving_default": self.serve}


class SequentialHistoryExport(SequentialExport):
    """``SequentialExport`` plus the train split's history (``inputs.UserHistory``).

    Two more signatures: ``recommend(user_id, timestamp)`` reads the context from the history
    exported with the model (the user's train items before ``timestamp``), and
    ``evaluate(examples)`` (for TFMA) does the same for raw eval examples and reports
    ``top_k_hit``/``rank`` of their item, like ``RetrievalExport.evaluate``.
    """

    def __init__(self, query_tower: tf.keras.Model, item_ids: np.ndarray,
                 embeddings: np.ndarray, k: int, context_length: int, *,
                 history: UserHistory, features: ServingFeatures, eval_k: int):
        super().__init__(query_tower, item_ids, embeddings, k, context_length)
        self.features = features
        self.history_keys = tf.Variable(history.keys, trainable=False, name="history_keys")
        self.history_items = tf.Variable(history.items, trainable=False,
                                          name="history_items")
        self._eval_k = eval_k

    def _history_context(self, f):
        return history_context(self.history_keys, self.history_items,
                               f[F.index_name(F.USER_ID)], f[F.TIMESTAMP], self._length)

    @tf.function(input_signature=[USER_ID_SPEC, TIMESTAMP_SPEC])
    def recommend(self, user_id, timestamp):
        f = self.features.user(user_id, timestamp)
        f[F.TIMESTAMP] = timestamp
        return {**self._top_k(self._history_context(f)),
                "known_user": self.features.known_user(f)}

    @tf.function(input_signature=[_EXAMPLES])
    def evaluate(self, examples):
        f = self.features.examples(examples)
        query = self.query_tower({F.CONTEXT_INDEX: self._history_context(f)})
        scores = tf.matmul(query, self.candidate_embeddings, transpose_b=True)
        return top_k_hit(scores, f[F.index_name(F.ITEM_ID)], self._eval_k)

    def signatures(self) -> dict:
        return {**super().signatures(), "recommend": self.recommend,
                nodes.EVAL_SIGNATURE: self.evaluate}


def save(module: tf.Module, path: str, metadata: ExportMetadata,
         namespace_whitelist: Optional[list[str]] = None) -> None:
    """Saves a module with its signatures and writes its metadata file."""
    options = tf.saved_model.SaveOptions(namespace_whitelist=namespace_whitelist)
    tf.saved_model.save(module, path, signatures=module.signatures(), options=options)
    write_metadata(path, metadata)


def write_metadata(path: str, metadata: ExportMetadata) -> None:
    extra = os.path.join(path, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, METADATA_FILE), "w") as f:
        f.write(metadata.to_json())


def read_metadata(path: str) -> ExportMetadata:
    """The metadata a saved export carries (see ``save``)."""
    with tf.io.gfile.GFile(os.path.join(path, "assets.extra", METADATA_FILE)) as f:
        return ExportMetadata.from_json(f.read(), where=f"the model at {path}")


def popular_metadata(stats: TrainStats, catalogue: Catalogue, half_life_days: float,
                     n: int = 100) -> list[dict]:
    """The fallback for unknown users, titled: the most popular items, recency-weighted by
    ``half_life_days`` (``TrainStats.recent_popular``), with their rating counts."""
    titles = dict(zip(catalogue.item_ids.tolist(), catalogue.titles.tolist(), strict=True))
    return [{"item_id": m.decode(), "title": titles.get(m, b"").decode("utf-8", "replace"),
             "ratings": stats.item_counts[m], "score": round(score, 6)}
            for m, score in stats.recent_popular(n, half_life_days)]
