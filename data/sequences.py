"""Sequential context: for every rating, the items the same user rated before it.

``BuildContexts`` is a Beam transform (group by user, sort each user's ratings by time): it
never holds more than one user's history in memory, so it scales with the DirectRunner's
workers or on Dataflow like the rest of the pipeline. The context of a rating holds only
items rated *strictly earlier* (an item rated in the same second is not "before": MovieLens
timestamps are per second and a batch of ratings entered at once has no order), the most
recent last, left-padded with ``PADDING`` to ``length``.

Each output also says whether it is the user's last rating (latest timestamp; ties broken by
item id), which is the held-out target of the leave-last-out protocol.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam

PADDING = ""


def user_contexts(user_id: str, ratings: Iterable[tuple[int, str, float]],
                  length: int) -> Iterator[dict[str, Any]]:
    """Every rating of one user with its context (see module doc).

    ``ratings``: (timestamp, item_id, rating) in any order. Yields dicts with user_id,
    item_id, rating, timestamp, context (``length`` item ids) and is_last, in time order.
    """
    if length < 1:
        raise ValueError(f"the context length must be at least 1, got {length}")
    ordered = sorted(ratings)
    earlier = 0  # ordered[:earlier] are strictly earlier than the current rating
    for i, (timestamp, item_id, rating) in enumerate(ordered):
        while ordered[earlier][0] < timestamp:
            earlier += 1
        history = [m for _, m, _ in ordered[max(0, earlier - length):earlier]]
        yield {"user_id": user_id, "item_id": item_id, "rating": rating,
               "timestamp": timestamp, "context": [PADDING] * (length - len(history)) + history,
               "is_last": i == len(ordered) - 1}


class BuildContexts(beam.PTransform):
    """PCollection of (user_id, item_id, rating, timestamp) -> rating dicts with context."""

    def __init__(self, length: int):
        super().__init__()
        if length < 1:
            raise ValueError(f"the context length must be at least 1, got {length}")
        self._length = length

    def expand(self, ratings):
        return (ratings
                | "KeyByUser" >> beam.Map(lambda r: (r[0], (int(r[3]), r[1], float(r[2]))))
                | "GroupByUser" >> beam.GroupByKey()
                | "Contexts" >> beam.FlatMap(
                    lambda kv, n: user_contexts(kv[0], kv[1], n), self._length))
