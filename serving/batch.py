"""Many users' lists from a recommender servable, a batch of requests at a time.

The recommender's gate, ``recsys bulk`` and the BulkRecommendations node all ask the same
``serving_default(user_id, timestamp, k)`` for many users: this sends them in batches (one
request per batch, as a client of TF Serving would) and gathers the answers as numpy.
``serve`` is the signature: a loaded SavedModel's ``signatures["serving_default"]`` or the
in-memory ``TwoStageExport.serve``, which take the same keyword arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np

from recsys_pipeline.pipeline import nodes

DEFAULT_BATCH = 256
OUTPUTS = (nodes.ITEM_IDS_OUTPUT, nodes.ITEM_TITLES_OUTPUT, "retrieval_scores", "ranking_scores",
           "scores")


@dataclasses.dataclass
class Lists:
    """Row i: user ``user_ids[i]``'s k places (item id b"" and score -inf where unfilled)."""

    user_ids: np.ndarray  # [n] bytes
    item_ids: np.ndarray  # [n, k] bytes
    item_titles: np.ndarray  # [n, k] bytes
    retrieval_scores: np.ndarray  # [n, k]
    ranking_scores: np.ndarray  # [n, k]
    scores: np.ndarray  # [n, k]
    known_user: np.ndarray  # [n] bool

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def concat(cls, parts: Sequence[Lists]) -> Lists:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in dataclasses.fields(cls)})


def request(serve: Callable[..., dict], user_ids: Sequence, timestamps: Sequence[int],
            k: int) -> Lists:
    """One request for ``user_ids`` at ``timestamps`` (0: the model's training time)."""
    import tensorflow as tf

    users = np.asarray(user_ids, object)
    got = serve(user_id=tf.constant(users, tf.string),
                timestamp=tf.constant(np.asarray(timestamps, np.int64)),
                k=tf.constant(np.full(len(users), k, np.int64)))
    return Lists(np.array([u if isinstance(u, bytes) else str(u).encode() for u in users],
                          object),
                 **{name: got[name].numpy() for name in OUTPUTS},
                 known_user=got["known_user"].numpy())


def batches(serve: Callable[..., dict], user_ids: Sequence, timestamps: Sequence[int], k: int,
            batch_size: int = DEFAULT_BATCH) -> Iterator[Lists]:
    """``request`` per ``batch_size`` users, in order."""
    for start in range(0, len(user_ids), batch_size):
        yield request(serve, user_ids[start:start + batch_size],
                      timestamps[start:start + batch_size], k)


def top_k(serve: Callable[..., dict], user_ids: Sequence, timestamps: Sequence[int], k: int,
          batch_size: int = DEFAULT_BATCH) -> Lists:
    """Every user's list (``batches``, joined)."""
    if not len(user_ids):
        raise ValueError("no users to recommend to")
    return Lists.concat(list(batches(serve, user_ids, timestamps, k, batch_size)))
