"""The ScaNN index over a retrieval export's catalogue, and its recall against brute force.

``build_scann_export`` loads a brute-force ``RetrievalExport``, indexes its catalogue
embeddings with ScaNN (``build_scann``), measures recall@k of the index against exact search
on the same query embeddings, and saves a ``ScannExport`` (``Scann`` namespace allowed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Optional

import numpy as np

from recsys_pipeline.knobs import knob


# Defaults from bench/serving.py (bench/RESULTS.md, serving sixth run): at 1M candidates,
# with k-means trained on all of them for 50 iterations, the fastest settings with recall@10
# >= 0.98 on the tuning queries searched 12-14% of sqrt(N) leaves (24% with ScaNN's default
# 100,000-point sample and 12 iterations) and rescored 500-1,000 candidates exactly. The
# defaults start a little wider, at 16% and 50 x recall_k, served within the noise of the
# tuned index in all three runs; the automatic search widens from there until the recall
# gate's tuning half clears the bound. They scale with the catalogue: the leaf count as
# sqrt(N), the search as a share of the leaves.
SEARCH_FRACTION = 0.16
REORDER_PER_RECALL_K = 50


@dataclasses.dataclass
class IndexParams:
    """[index] The ScaNN index shipped with the retrieval model, and its recall gate."""

    num_leaves: int = knob(
        0, "Partitions of the catalogue (0 = about sqrt(catalogue size)).")
    num_leaves_to_search: int = knob(
        0, "Partitions searched per query. 0 = automatic: start at 16% of num_leaves "
        "(bench/serving.py's pick) and widen until half the recall queries clear min_recall "
        "(the other half grade it).")
    num_reordering_candidates: int = knob(
        0, "Candidates rescored exactly after the quantized search "
        "(0 = the larger of 50 x recall_k and 4 x k; else at least k, since ScaNN returns "
        "no more than it rescores).")
    dimensions_per_block: int = knob(2, "Asymmetric hashing: dimensions per quantized block.")
    training_iterations: int = knob(
        50, "k-means iterations when partitioning (on the whole catalogue; ScaNN's own "
        "default of 12 leaves the partitions unconverged at a million movies).")
    k: int = knob(100, "Movies the ScaNN serving signature returns.")
    recall_k: int = knob(10, "k of the recall@k measured against exact search.")
    min_recall: float = knob(
        0.95, "The index is pushed only if recall@recall_k against brute force reaches this.")
    max_queries: int = knob(
        2000, "Eval-split users whose queries tune (half) and measure (half) the recall.")

    def resolved(self, catalogue_size: int) -> dict[str, int]:
        """Concrete ScaNN settings for a catalogue of this size."""
        leaves = self.num_leaves or max(2, round(math.sqrt(catalogue_size)))
        leaves = min(leaves, max(1, catalogue_size - 1))
        search = self.num_leaves_to_search or max(1, round(leaves * SEARCH_FRACTION))
        k = min(self.k, catalogue_size)
        reorder = self.num_reordering_candidates or max(REORDER_PER_RECALL_K * self.recall_k,
                                                        4 * k)
        return {"num_leaves": leaves, "num_leaves_to_search": min(search, leaves),
                "num_reordering_candidates": min(reorder, catalogue_size), "k": k,
                "dimensions_per_block": self.dimensions_per_block,
                "training_iterations": self.training_iterations}


def recall_at_k(approximate: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of each row's exact top-k found in its approximate top-k.

    -1 marks "no movie" in either: a place the search left unfilled counts as a miss, and
    exact places that hold no movie (a user with fewer than k unrated) are not counted.
    """
    approximate, exact = approximate[:, :k], exact[:, :k]
    found = [len((set(a.tolist()) & set(e.tolist())) - {-1})
             for a, e in zip(approximate, exact, strict=True)]
    total = int(np.sum(exact >= 0))
    return float(np.sum(found) / total) if total else float("nan")


def exact_top_k(queries: np.ndarray, candidates: np.ndarray, k: int,
                excluded: Optional[list[np.ndarray]] = None) -> np.ndarray:
    """Row indices of the k highest dot products per query (brute force, numpy).

    ``excluded``: per query, rows it must not return (the user's rated movies, as served);
    places left without a row are -1.
    """
    scores = queries @ candidates.T
    if excluded is not None:
        for row, rows in zip(scores, excluded, strict=True):
            row[rows] = -np.inf
    top = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    return np.where(np.isneginf(np.take_along_axis(scores, top, axis=1)), -1, top)


def without_excluded(found: np.ndarray, excluded: list[np.ndarray], k: int) -> np.ndarray:
    """Each row's first k found rows that are not excluded, as the ScaNN export serves them
    (-1 past the end)."""
    out = np.full((len(found), k), -1, np.int64)
    for i, (row, rows) in enumerate(zip(found, excluded, strict=True)):
        kept = row[(row >= 0) & ~np.isin(row, rows)][:k]
        out[i, :len(kept)] = kept
    return out


def configure(builder, settings: dict[str, int], catalogue_size: int):
    """A ScaNN builder (TF ops' or pybind's) configured with ``settings``.

    k-means trains on the whole catalogue, not ScaNN's default sample of 100,000: at a
    million candidates that sample's partitions need about twice the leaves searched for the
    same recall (bench/RESULTS.md, serving sixth run). One function for both builders, so the
    serving benchmark tunes the very configuration that is served.
    """
    return (builder.tree(num_leaves=settings["num_leaves"],
                         num_leaves_to_search=settings["num_leaves_to_search"],
                         training_sample_size=catalogue_size,
                         training_iterations=settings["training_iterations"])
            .score_ah(settings["dimensions_per_block"])
            .reorder(settings["num_reordering_candidates"]))


def build_scann(embeddings: np.ndarray, settings: dict[str, int]):
    """The ScaNN index (``export.ScannIndex``) over ``embeddings``; its ids are row numbers."""
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops

    from recsys_pipeline.trainer import export

    builder = scann_ops.builder(tf.constant(embeddings), settings["k"], "dot_product")
    searcher = configure(builder, settings, len(embeddings)).build()
    return export.ScannIndex(searcher.serialize_to_module(), settings["k"])


def scann_top_k(layer, queries: np.ndarray, k: int) -> np.ndarray:
    """Row ids of a ScaNN index's top-k per query; -1 where it found fewer than k (read as
    returned, ScaNN's padding would count as finding row 0: ``export.scann_results``)."""
    import tensorflow as tf

    from recsys_pipeline.trainer import export

    scores, ids = export.scann_results(*layer(tf.constant(queries), k=k), k)
    return np.where(np.isneginf(scores.numpy()), -1, ids.numpy())


def _recall(layer, queries: np.ndarray, exact: np.ndarray, k: int,
            excluded: Optional[list[np.ndarray]], search_k: int) -> float:
    """recall@k of what the export serves against ``exact`` (``exact_top_k`` with the same
    exclusion): with an exclusion list, the index's ``search_k`` results less the user's
    rated movies."""
    if excluded is None:
        found = scann_top_k(layer, queries, k)
    else:
        found = without_excluded(scann_top_k(layer, queries, search_k), excluded, k)
    return recall_at_k(found, exact, k)


def _excluded_rows(base: Any, user_ids: list[str]) -> list[np.ndarray]:
    """Per request, the catalogue rows the export excludes for its user."""
    import tensorflow as tf

    pairs = base.rated_pairs(tf.constant(user_ids))["pairs"].numpy()  # sorted by request
    bounds = np.searchsorted(pairs[:, 0], np.arange(len(user_ids) + 1))
    return [pairs[bounds[i]:bounds[i + 1], 1] for i in range(len(user_ids))]


def single_query_latency_ms(layer, queries: np.ndarray, embeddings: np.ndarray, k: int,
                           limit: int = 200) -> dict[str, dict[str, float]]:
    """p50/p99 milliseconds of one-query searches: the ScaNN layer and exact brute force.

    Both eager TensorFlow calls on this machine, so the ratio is what the index buys at this
    catalogue size (bench/serving.py measures the served SavedModels at scale).
    """
    import tensorflow as tf

    candidates = tf.constant(embeddings.T)

    def brute_force(q):
        return tf.math.top_k(tf.matmul(q, candidates), k=k)

    def scann(q):
        return layer(q, k=k)

    result = {}
    for name, search in (("scann", scann), ("brute_force", brute_force)):
        batch = [tf.constant(q[None, :]) for q in queries[:limit]]
        search(batch[0])  # the first call traces and allocates: not a query's cost
        times = []
        for q in batch:
            started = time.perf_counter()
            search(q)
            times.append((time.perf_counter() - started) * 1000)
        result[name] = {"p50": round(float(np.percentile(times, 50)), 3),
                        "p99": round(float(np.percentile(times, 99)), 3)}
    return result


# Automatic settings are widened until the tuning queries clear the bound by this margin:
# ScaNN's partitioning is randomized, and recall varies by a few points between builds.
AUTO_MARGIN = 0.02


def _halves(items):
    """(tuning, gating): alternate queries, or the same one twice if there is only one."""
    return (items[0::2], items[1::2]) if len(items) > 1 else (items, items)


def build_scann_export(base_dir: str, out_dir: str, params: IndexParams,
                       user_ids: list[str], timestamps: list[int]) -> dict[str, Any]:
    """Indexes the export at ``base_dir``, measures recall, saves the ScaNN export.

    The queries are split in two halves: with automatic ``num_leaves_to_search``, the search
    is widened (by half again each step) until recall on the first half clears
    ``min_recall`` by a margin; the reported recall is always measured on the second half, so
    the gate never grades settings on the queries that picked them. Returns the index report
    (settings, recall, timings); the caller gates on the recall. The export is written either
    way so that a failed gate can be inspected.
    """
    import scann  # noqa: F401  (registers the Scann ops before TensorFlow needs them)
    import tensorflow as tf

    from recsys_pipeline.trainer import export

    base = tf.saved_model.load(base_dir)
    metadata = export.read_metadata(base_dir)
    embeddings = base.candidate_embeddings.numpy()
    settings = params.resolved(len(embeddings))
    serving_k = settings["k"]
    exclusion = metadata.get("exclude_rated")
    if exclusion:
        # Room for the user's rated movies, which are dropped after the search.
        settings["k"] = min(len(embeddings), serving_k + int(exclusion["max_per_user"]))
        settings["num_reordering_candidates"] = min(
            len(embeddings), max(settings["num_reordering_candidates"], settings["k"]))
    queries = base.query_embedding(tf.constant(user_ids), tf.constant(timestamps, tf.int64))
    queries = queries["embedding"].numpy()
    tuning, gating = _halves(queries)
    k = min(params.recall_k, len(embeddings))
    # With exclusion, recall is measured on what is served: the index's results less the
    # user's rated movies, against exact search over the unrated ones (deeper in the index's
    # ranking than its raw top-k).
    tuning_excluded, gating_excluded = (_halves(_excluded_rows(base, user_ids)) if exclusion
                                        else (None, None))

    started = time.monotonic()
    layer = build_scann(embeddings, settings)
    steps = []
    if not params.num_leaves_to_search:
        # Exact search once, and one tree: each widening step only searches more of its leaves.
        tuning_exact = exact_top_k(tuning, embeddings, k, tuning_excluded)
        while True:
            tuned = _recall(layer, tuning, tuning_exact, k, tuning_excluded, settings["k"])
            steps.append({"num_leaves_to_search": settings["num_leaves_to_search"],
                          "tuning_recall": round(tuned, 4)})
            if (tuned >= params.min_recall + AUTO_MARGIN
                    or settings["num_leaves_to_search"] >= settings["num_leaves"]):
                break
            settings["num_leaves_to_search"] = min(
                settings["num_leaves"], math.ceil(settings["num_leaves_to_search"] * 1.5))
            layer.leaves_to_search = settings["num_leaves_to_search"]
    build_seconds = time.monotonic() - started
    recall = _recall(layer, gating, exact_top_k(gating, embeddings, k, gating_excluded), k,
                     gating_excluded, settings["k"])
    latency = single_query_latency_ms(layer, gating, embeddings, k)

    module = export.ScannExport(base, layer, k=serving_k, exclude_rated=bool(exclusion))
    report = {"settings": settings, "recall_k": k, "recall": recall, "tuning": steps,
              "recall_of": "served, rated movies excluded" if exclusion else "index top-k",
              "queries": len(gating), "catalogue_size": len(embeddings),
              "build_seconds": round(build_seconds, 3), "latency_ms": latency}
    metadata = dict(metadata, kind="retrieval_scann", serving_k=serving_k, index=report)
    export.save(module, out_dir, metadata, namespace_whitelist=[export.SCANN_NAMESPACE])
    return report
