"""The ScaNN index's knobs and the typed records it is built from and reports: TF-free, so that
the config can hold ``IndexParams`` without importing TensorFlow or ScaNN.

``IndexParams`` is the ``[index]`` config section; ``ScannSettings`` the concrete settings it
resolves to for one catalogue; ``IndexReport`` what building and grading the index measured
(stored on the index blessing and in the ScaNN export's metadata, read by the run table and
the report).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from recsys_pipeline.knobs import knob

# The defaults' origin: at 1M candidates, k-means on all of them for 50 iterations, the
# fastest settings with recall@10 >= 0.98 searched 12-14% of sqrt(N) leaves and rescored
# 500-1,000 candidates exactly (bench/serving.py; bench/RESULTS.md). The defaults start a
# little wider; the automatic search widens from there. Both scale with the catalogue.
SEARCH_FRACTION = 0.16
REORDER_PER_RECALL_K = 50


@dataclasses.dataclass(frozen=True)
class ScannSettings:
    """Concrete ScaNN settings for one catalogue (``IndexParams.resolved``)."""

    num_leaves: int
    num_leaves_to_search: int
    num_reordering_candidates: int
    k: int
    dimensions_per_block: int
    training_iterations: int


@dataclasses.dataclass
class IndexParams:
    """[index] The ScaNN index shipped with the retrieval model, and its recall gate."""

    num_leaves: int = knob(
        0, "Partitions of the catalogue (0 = about sqrt(catalogue size)).")
    num_leaves_to_search: int = knob(
        0, "Partitions searched per query. 0 = automatic: start at 16% of num_leaves and "
        "widen until half the recall queries clear min_recall (the other half grade it).")
    num_reordering_candidates: int = knob(
        0, "Candidates rescored exactly after the quantized search "
        "(0 = the larger of 50 x recall_k and 4 x k; else at least k, since ScaNN returns "
        "no more than it rescores).")
    dimensions_per_block: int = knob(2, "Asymmetric hashing: dimensions per quantized block.")
    training_iterations: int = knob(
        50, "k-means iterations when partitioning, on the whole catalogue (fewer leave large "
        "catalogues' partitions unconverged).")
    k: int = knob(100, "Items the ScaNN serving signature returns.")
    recall_k: int = knob(10, "k of the recall@k measured against exact search.")
    min_recall: float = knob(
        0.95, "The index is pushed only if recall@recall_k against brute force reaches this.")
    max_queries: int = knob(
        2000, "Eval-split users whose queries tune (half) and measure (half) the recall.")

    def resolved(self, catalogue_size: int) -> ScannSettings:
        """Concrete ScaNN settings for a catalogue of this size."""
        leaves = self.num_leaves or max(2, round(math.sqrt(catalogue_size)))
        leaves = min(leaves, max(1, catalogue_size - 1))
        search = self.num_leaves_to_search or max(1, round(leaves * SEARCH_FRACTION))
        k = min(self.k, catalogue_size)
        reorder = self.num_reordering_candidates or max(REORDER_PER_RECALL_K * self.recall_k,
                                                        4 * k)
        return ScannSettings(
            num_leaves=leaves, num_leaves_to_search=min(search, leaves),
            num_reordering_candidates=min(reorder, catalogue_size), k=k,
            dimensions_per_block=self.dimensions_per_block,
            training_iterations=self.training_iterations)


@dataclasses.dataclass(frozen=True)
class TuningStep:
    """One step of the automatic search: leaves searched and recall on the tuning queries."""

    num_leaves_to_search: int
    tuning_recall: float


@dataclasses.dataclass(frozen=True)
class IndexReport:
    """What building and grading one ScaNN index measured."""

    settings: ScannSettings
    recall_k: int
    recall: float  # on the grading half of the queries
    tuning: tuple[TuningStep, ...]
    recall_of: str  # what was graded: the index's top-k, or what is served
    queries: int
    catalogue_size: int
    build_seconds: float
    latency_ms: dict[str, dict[str, float]]  # "scann" | "brute_force" -> {"p50", "p99"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> IndexReport:
        return cls(**{**value, "settings": ScannSettings(**value["settings"]),
                      "tuning": tuple(TuningStep(**s) for s in value["tuning"])})

    @classmethod
    def from_json(cls, text: str) -> IndexReport:
        return cls.from_dict(json.loads(text))
