"""The ScaNN-indexed retrieval export: a built index saved as a ``tf.Module``, and the
``serving_default`` that searches it in place of a ``RetrievalExport``'s brute force.

Built from a blessed retrieval export by the ScannIndexer (``serving.index``), never by a
Trainer. Loading it needs ScaNN's TF ops (importing ``scann`` registers them), which stock TF
Serving lacks: ScaNN's TF Serving image serves it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import tensorflow as tf
from scann.scann_ops.py import scann_ops  # importing scann registers its TF ops

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.trainer import export

SCANN_NAMESPACE = "Scann"  # the custom ops' namespace, allowed when saving
SCANN_KIND = "retrieval_scann"  # ExportMetadata.kind of this export


class ScannIndex(tf.Module):
    """A built ScaNN index, saved with the export: ``(queries[, k]) -> (scores, rows)``.

    What TFRS's ScaNN layer does at query time, one batched search parallel across the
    batch's queries; the index is built by ``serving.index.build_scann`` instead of by that layer,
    whose build cannot set the sample k-means trains on. ``leaves_to_search`` (None: as
    built) is read per call, so a search can be widened without rebuilding the tree.
    ``reorder`` (None: as built) is how many candidates are rescored exactly: ScaNN returns
    no more than that, so a caller asking for more candidates than the index was built to
    return raises it.
    """

    def __init__(self, searcher_state: tf.Module, k: int,
                 leaves_to_search: Optional[int] = None, reorder: Optional[int] = None,
                 num_leaves: Optional[int] = None):
        super().__init__()
        self.searcher_state = searcher_state  # ScaNN's assets, as variables
        self._k = k
        self.leaves_to_search = leaves_to_search
        self.reorder = reorder
        self.num_leaves = num_leaves

    def __call__(self, queries: tf.Tensor, k: Optional[int] = None):
        searcher = scann_ops.searcher_from_module(self.searcher_state)
        result = searcher.search_batched_parallel(queries, final_num_neighbors=k or self._k,
                                                  pre_reorder_num_neighbors=self.reorder,
                                                  leaves_to_search=self.leaves_to_search)
        return result.distances, tf.cast(result.indices, tf.int64)

    def search(self, queries: tf.Tensor, k: tf.Tensor, widen: tf.Tensor):
        """Like a call, for a ``k`` known only when the graph runs, with the leaves searched
        scaled by ``widen`` (at least 1; up to every leaf): a search for ``widen`` times as
        many candidates as the leaves were tuned for has to look that much further."""
        searcher = scann_ops.searcher_from_module(self.searcher_state)
        leaves = self.leaves_to_search
        if leaves is not None:
            leaves = tf.cast(tf.math.ceil(leaves * tf.maximum(widen, 1.0)), tf.int32)
            if self.num_leaves is not None:
                leaves = tf.minimum(leaves, self.num_leaves)
        k = tf.cast(k, tf.int32)
        result = searcher.search_batched_parallel(
            queries, final_num_neighbors=k,
            pre_reorder_num_neighbors=k if self.reorder is None else tf.maximum(k, self.reorder),
            leaves_to_search=leaves)
        return result.distances, tf.cast(result.indices, tf.int64)

    @classmethod
    def of_export(cls, loaded: Any, report: dict[str, Any], k: int) -> ScannIndex:
        """The index inside a loaded ScaNN export, searched as the export searches it (its
        tuned leaves, from its ``IndexReport`` as a dict) but returning ``k`` candidates."""
        settings = report["settings"]
        return cls(loaded.index.searcher_state, k,
                   leaves_to_search=settings["num_leaves_to_search"],
                   reorder=max(k, settings["num_reordering_candidates"]),
                   num_leaves=settings["num_leaves"])


def scann_results(scores: tf.Tensor, rows: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """A ScaNN index's (scores, rows) with its padding scored -inf, k columns wide.

    ScaNN pads a short result (the leaves searched hold fewer candidates than asked for) with
    row 0 and a NaN score, and cuts the batch to its longest result. NaN has no defined place
    in top_k's order; -inf is the exports' mark for "no item".
    """
    scores = tf.where(tf.math.is_nan(scores), tf.constant(-np.inf, scores.dtype), scores)
    short = tf.maximum(k - tf.shape(scores)[1], 0)
    return (tf.pad(scores, [[0, 0], [0, short]], constant_values=-np.inf),
            tf.pad(rows, [[0, 0], [0, short]]))


def rated_mask(rows: tf.Tensor, pairs: tf.Tensor, catalogue_size: int) -> tf.Tensor:
    """[batch, n] bool: whether catalogue row ``rows[i, j]`` is one request i's user rated.

    ``pairs``: (request, catalogue row) sorted by request, then row (``rated_pairs``).
    Membership by binary search on (request, row) keys: O(n log rated) per request, never
    O(catalogue).
    """
    size = tf.constant(catalogue_size, tf.int64)
    rated = tf.concat([pairs[:, 0] * size + pairs[:, 1], [tf.int64.max]], axis=0)
    keys = tf.range(tf.shape(rows, out_type=tf.int64)[0])[:, None] * size + rows
    flat = tf.reshape(keys, [-1])
    return tf.reshape(tf.gather(rated, tf.searchsorted(rated, flat)) == flat, tf.shape(keys))


class ScannExport(tf.Module):
    """``serving_default`` over a ScaNN index of a loaded RetrievalExport's catalogue.

    With ``exclude_rated`` the index returns more than ``k`` candidates (enough to cover the
    most items any train user rated); the user's rated items are dropped from them and the
    best ``k`` of the rest are served. Places the search could not fill score -inf.
    """

    def __init__(self, base: Any, index: ScannIndex, k: int,
                 exclude_rated: bool = False):
        super().__init__()
        self.base = base
        self.index = index
        self._k = k
        self._exclude = exclude_rated
        self._catalogue_size = int(base.candidate_ids.shape[0])

    @tf.function(input_signature=[export.USER_ID_SPEC, export.TIMESTAMP_SPEC])
    def query_embedding(self, user_id, timestamp):
        return self.base.query_embedding(user_id, timestamp)

    @tf.function(input_signature=[export.USER_ID_SPEC, export.TIMESTAMP_SPEC])
    def serve(self, user_id, timestamp):
        query = self.base.query_embedding(user_id, timestamp)
        scores, rows = scann_results(*self.index(query["embedding"]), self._k)
        if self._exclude:
            found = rated_mask(rows, self.base.rated_pairs(user_id)["pairs"],
                               self._catalogue_size)
            scores = tf.where(found, tf.constant(-np.inf, scores.dtype), scores)
            top = tf.math.top_k(scores, k=self._k)
            scores, rows = top.values, tf.gather(rows, top.indices, batch_dims=1)
        return {nodes.ITEM_IDS_OUTPUT: tf.gather(self.base.candidate_ids, rows),
                nodes.ITEM_TITLES_OUTPUT: tf.gather(self.base.candidate_titles, rows),
                "scores": scores, "known_user": query["known_user"]}

    def signatures(self) -> dict:
        return {"serving_default": self.serve, "query_embedding": self.query_embedding}
