"""The ScaNN index over a retrieval export's catalogue, and its recall against brute force.

Serving code, not training: the ScannIndexer component runs it after the retrieval gate, and
the serving benchmark tunes with the same ``configure``. ``build_scann_export`` loads a
brute-force ``RetrievalExport``, indexes its catalogue embeddings with ScaNN
(``build_scann``), measures recall@k of the index against exact search on the same query
embeddings, and saves a ``ScannExport`` (``Scann`` namespace allowed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Optional

import numpy as np
import tensorflow as tf
from scann.scann_ops.py import scann_ops  # importing scann registers its TF ops

from recsys_pipeline.serving import scann_export
from recsys_pipeline.serving.index_params import IndexParams, IndexReport, ScannSettings, TuningStep
from recsys_pipeline.trainer import export


def recall_at_k(approximate: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of each row's exact top-k found in its approximate top-k.

    -1 marks "no item" in either: a place the search left unfilled counts as a miss, and
    exact places that hold no item (a user with fewer than k unrated) are not counted.
    """
    approximate, exact = approximate[:, :k], exact[:, :k]
    found = [len((set(a.tolist()) & set(e.tolist())) - {-1})
             for a, e in zip(approximate, exact, strict=True)]
    total = int(np.sum(exact >= 0))
    return float(np.sum(found) / total) if total else float("nan")


def exact_top_k(queries: np.ndarray, candidates: np.ndarray, k: int,
                excluded: Optional[list[np.ndarray]] = None) -> np.ndarray:
    """Row indices of the k highest dot products per query (brute force, numpy).

    ``excluded``: per query, rows it must not return (the user's rated items, as served);
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


def configure(builder, settings: ScannSettings, catalogue_size: int):
    """A ScaNN builder (TF ops' or pybind's) configured with ``settings``.

    k-means trains on the whole catalogue, not ScaNN's default sample of 100,000: at a
    million candidates that sample's partitions need about twice the leaves searched for the
    same recall (bench/RESULTS.md). One function for both builders, so the
    serving benchmark tunes the very configuration that is served.
    """
    return (builder.tree(num_leaves=settings.num_leaves,
                         num_leaves_to_search=settings.num_leaves_to_search,
                         training_sample_size=catalogue_size,
                         training_iterations=settings.training_iterations)
            .score_ah(settings.dimensions_per_block)
            .reorder(settings.num_reordering_candidates))


def build_scann(embeddings: np.ndarray, settings: ScannSettings):
    """The ScaNN index (``scann_export.ScannIndex``) over ``embeddings``; ids are row numbers."""
    builder = scann_ops.builder(tf.constant(embeddings), settings.k, "dot_product")
    searcher = configure(builder, settings, len(embeddings)).build()
    return scann_export.ScannIndex(searcher.serialize_to_module(), settings.k)


def scann_top_k(layer, queries: np.ndarray, k: int) -> np.ndarray:
    """Row ids of a ScaNN index's top-k per query; -1 where it found fewer than k (read as
    returned, ScaNN's padding would count as finding row 0: ``scann_export.scann_results``)."""
    raw_scores, raw_ids = layer(tf.constant(queries), k=k)
    scores, ids = scann_export.scann_results(raw_scores, raw_ids, k)
    return np.where(np.isneginf(scores.numpy()), -1, ids.numpy())


def _recall(layer, queries: np.ndarray, exact: np.ndarray, k: int,
            excluded: Optional[list[np.ndarray]], search_k: int) -> float:
    """recall@k of what the export serves against ``exact`` (``exact_top_k`` with the same
    exclusion): with an exclusion list, the index's ``search_k`` results less the user's
    rated items."""
    if excluded is None:
        found = scann_top_k(layer, queries, k)
    else:
        found = without_excluded(scann_top_k(layer, queries, search_k), excluded, k)
    return recall_at_k(found, exact, k)


def _excluded_rows(base: Any, user_ids: list[str]) -> list[np.ndarray]:
    """Per request, the catalogue rows the export excludes for its user."""
    pairs = base.rated_pairs(tf.constant(user_ids))["pairs"].numpy()  # sorted by request
    bounds = np.searchsorted(pairs[:, 0], np.arange(len(user_ids) + 1))
    return [pairs[bounds[i]:bounds[i + 1], 1] for i in range(len(user_ids))]


def single_query_latency_ms(layer, queries: np.ndarray, embeddings: np.ndarray, k: int,
                           limit: int = 200) -> dict[str, dict[str, float]]:
    """p50/p99 milliseconds of one-query searches: the ScaNN layer and exact brute force.

    Both eager TensorFlow calls on this machine, so the ratio is what the index buys at this
    catalogue size (bench/serving.py measures the served SavedModels at scale).
    """
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
# ScaNN's partitioning is randomized, and recall varies by a few points between builds and
# between the two halves of few queries (0.974 on the tuning half and 0.949 on the gating
# half of 220 users' queries, measured on 3,000 ratings).
AUTO_MARGIN = 0.03


def _halves(items):
    """(tuning, gating): alternate queries, or the same one twice if there is only one."""
    return (items[0::2], items[1::2]) if len(items) > 1 else (items, items)


def build_scann_export(base_dir: str, out_dir: str, params: IndexParams,
                       user_ids: list[str], timestamps: list[int]) -> IndexReport:
    """Indexes the export at ``base_dir``, measures recall, saves the ScaNN export.

    The queries are split in two halves: with automatic ``num_leaves_to_search``, the search
    is widened (by half again each step) until recall on the first half clears
    ``min_recall`` by a margin; the reported recall is always measured on the second half, so
    the gate never grades settings on the queries that picked them. Returns the index report
    (settings, recall, timings); the caller gates on the recall. The export is written either
    way so that a failed gate can be inspected.
    """
    base = tf.saved_model.load(base_dir)
    metadata = export.read_metadata(base_dir)
    embeddings = base.candidate_embeddings.numpy()
    settings = params.resolved(len(embeddings))
    serving_k = settings.k
    exclusion = metadata.exclude_rated
    if exclusion:
        # Room for the user's rated items, which are dropped after the search.
        search_k = min(len(embeddings), serving_k + int(exclusion["max_per_user"]))
        settings = dataclasses.replace(
            settings, k=search_k, num_reordering_candidates=min(
                len(embeddings), max(settings.num_reordering_candidates, search_k)))
    queries = base.query_embedding(tf.constant(user_ids), tf.constant(timestamps, tf.int64))
    queries = queries["embedding"].numpy()
    tuning, gating = _halves(queries)
    k = min(params.recall_k, len(embeddings))
    # With exclusion, recall is measured on what is served: the index's results less the
    # user's rated items, against exact search over the unrated ones (deeper in the index's
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
            tuned = _recall(layer, tuning, tuning_exact, k, tuning_excluded, settings.k)
            steps.append(TuningStep(settings.num_leaves_to_search, round(tuned, 4)))
            if (tuned >= params.min_recall + AUTO_MARGIN
                    or settings.num_leaves_to_search >= settings.num_leaves):
                break
            settings = dataclasses.replace(settings, num_leaves_to_search=min(
                settings.num_leaves, math.ceil(settings.num_leaves_to_search * 1.5)))
            layer.leaves_to_search = settings.num_leaves_to_search
    build_seconds = time.monotonic() - started
    recall = _recall(layer, gating, exact_top_k(gating, embeddings, k, gating_excluded), k,
                     gating_excluded, settings.k)
    latency = single_query_latency_ms(layer, gating, embeddings, k)

    module = scann_export.ScannExport(base, layer, k=serving_k, exclude_rated=bool(exclusion))
    report = IndexReport(
        settings=settings, recall_k=k, recall=recall, tuning=tuple(steps),
        recall_of="served, rated items excluded" if exclusion else "index top-k",
        queries=len(gating), catalogue_size=len(embeddings),
        build_seconds=round(build_seconds, 3), latency_ms=latency)
    export.save(module, out_dir, dataclasses.replace(
        metadata, kind=scann_export.SCANN_KIND, serving_k=serving_k, index=report.to_dict()),
        namespace_whitelist=[scann_export.SCANN_NAMESPACE])
    return report
