"""Metrics of recommended lists, and the evaluation record the recommender's gate writes.

The Trainers' gates are TFMA metrics over single examples; the recommender is gated on whole
lists (what a user is shown), so its metrics are computed here, in numpy, and stored as a
``ListEvaluation`` (one JSON file in the ``evaluation`` artifact) that the run summary,
history and lineage read the way they read TFMA's results (``model_summary.read_evaluation``).

NDCG@k: per user, DCG = sum over the list's first k places i (from 0) of gain / log2(i + 2),
an item's gain being the user's eval rating of it (0 if the user did not rate it in the eval
split), over the DCG of the user's own eval ratings sorted best first; the mean over users.
Coverage: the share of the catalogue that appears in at least one list.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterator, Mapping, Sequence

import numpy as np

from recsys_pipeline.pipeline import nodes

EVALUATION_FILE = "list_evaluation.json"
CANDIDATE, BASELINE = "candidate", "baseline"  # the model names TFMA's results use too
BRUTE_FORCE = "brute_force"  # the recommender's brute-force variant, beside its candidate


def ndcg_metric(k: int) -> str:
    """The metric's name in evaluations and tables."""
    return nodes.METRICS[nodes.NDCG].name_format.format(k=k)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def ndcg_per_user(lists: Sequence[Sequence], relevant: Sequence[Mapping], k: int) -> np.ndarray:
    """NDCG@k of each list (row i: ``lists[i]`` against ``relevant[i]``, item -> gain).

    A list shorter than k (or padded with items nobody rated) simply gains nothing there; a
    user without relevant items scores 0.
    """
    if len(lists) != len(relevant):
        raise ValueError(f"{len(lists)} lists for {len(relevant)} users")
    discounts = _discounts(k)
    out = np.zeros(len(lists))
    for i, (items, gains) in enumerate(zip(lists, relevant, strict=True)):
        ideal = np.sort(np.fromiter(gains.values(), float, len(gains)))[::-1][:k]
        best = float(ideal @ discounts[:len(ideal)])
        if best <= 0:
            continue
        got = np.array([gains.get(item, 0.0) for item in list(items)[:k]], float)
        out[i] = float(got @ discounts[:len(got)]) / best
    return out


def ndcg(lists: Sequence[Sequence], relevant: Sequence[Mapping], k: int) -> float:
    """Mean NDCG@k over users (``ndcg_per_user``)."""
    return float(ndcg_per_user(lists, relevant, k).mean()) if len(lists) else float("nan")


def served_ndcg(serve, users: Sequence, timestamps: Sequence[int],
                relevant: Sequence[Mapping], k: int) -> float:
    """NDCG@k of the lists a recommender's ``serving_default`` (``serve``) answers for
    ``users`` at ``timestamps`` (``serving.batch``), against ``relevant``."""
    from recsys_pipeline.serving import batch

    return ndcg(list(batch.top_k(serve, users, timestamps, k).item_ids), relevant, k)


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Parallel arrays of one batch of raw examples: who, what, how rated, when."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray


def read_interactions(paths: Sequence[str], batch_size: int = 8192) -> Iterator[Interactions]:
    """Batches of the raw examples (ExampleGen's gzipped TFRecords) in ``paths``."""
    import tensorflow as tf

    from recsys_pipeline.transform import features as F

    spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.string),
            F.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
            F.USER_RATING: tf.io.FixedLenFeature([], tf.float32),
            F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}
    for records in tf.data.TFRecordDataset(list(paths), compression_type="GZIP").batch(
            batch_size):
        parsed = {k: v.numpy() for k, v in tf.io.parse_example(records, spec).items()}
        yield Interactions(parsed[F.USER_ID], parsed[F.ITEM_ID], parsed[F.USER_RATING],
                           parsed[F.TIMESTAMP])


def relevance(split_dir: str) -> tuple[list[bytes], list[int], list[dict[bytes, float]]]:
    """What lists are graded against on a split of raw examples (ExampleGen's): each user
    once, at their first rating's time in it, with {item id: rating} of every item they
    rated in it. (users, timestamps, gains), users sorted."""
    import tensorflow as tf

    paths = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    first: dict[bytes, int] = {}
    gains: dict[bytes, dict[bytes, float]] = {}
    for batch in read_interactions(paths):
        for user, item, rating, when in zip(batch.users, batch.items, batch.ratings,
                                             batch.timestamps, strict=True):
            first[user] = min(first.get(user, int(when)), int(when))
            gains.setdefault(user, {})[item] = float(rating)
    users = sorted(gains)
    return users, [first[u] for u in users], [gains[u] for u in users]


def coverage(lists: Sequence[Sequence], catalogue_size: int, empty=b"") -> float:
    """Share of the catalogue recommended to at least one user (``empty`` places ignored)."""
    if catalogue_size < 1:
        raise ValueError("the catalogue is empty")
    found = {item for items in lists for item in items if item != empty}
    return len(found) / catalogue_size


@dataclasses.dataclass(frozen=True)
class ListEvaluation:
    """What the recommender's gate measured: metrics per model (``CANDIDATE``, ``BASELINE``,
    and the brute-force variant's), and why it did not bless (empty: blessed)."""

    metrics: dict[str, dict[str, float]]
    failures: list[str]

    def write(self, directory: str) -> str:
        import tensorflow as tf  # the artifact may live on gs://

        path = os.path.join(directory, EVALUATION_FILE)
        tf.io.gfile.makedirs(directory)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True))
        return path

    @classmethod
    def read(cls, directory: str) -> ListEvaluation:
        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.join(directory, EVALUATION_FILE)) as f:
            return cls(**json.loads(f.read()))

    @staticmethod
    def exists(directory: str) -> bool:
        return os.path.isfile(os.path.join(directory, EVALUATION_FILE))
