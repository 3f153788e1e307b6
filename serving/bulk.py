"""Every user's top k from a recommender servable, streamed with Beam into Parquet.

What TFX's BulkInferrer does for a classifier, for the two-stage recommender: the users are
the ones the servable knows (the tf.Transform user vocabulary it carries as an asset), sent
in batches of requests to its ``serving_default`` at its training time; each answer becomes
one row per place: ``user_id, rank, item_id, item_title, score, retrieval_score,
ranking_score`` (rank from 1; unfilled places are left out). The catalogue coverage (the
share of items that reach at least one user) is counted in the same pipeline and returned
in a ``BulkReport``. The BulkRecommendations node and ``recsys bulk`` both run it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Optional

import apache_beam as beam

from recsys_pipeline.errors import OutputError
from recsys_pipeline.transform import features as F

PARQUET_SUFFIX = ".parquet"
COLUMNS = (("user_id", "string"), ("rank", "int32"), ("item_id", "string"),
           ("item_title", "string"), ("score", "float32"), ("retrieval_score", "float32"),
           ("ranking_score", "float32"))


@dataclasses.dataclass(frozen=True)
class BulkReport:
    """What one bulk run wrote."""

    users: int
    rows: int
    k: int
    covered: int  # distinct items recommended
    catalogue_size: int
    seconds: float
    files: list[str]

    @property
    def coverage(self) -> float:
        return self.covered / self.catalogue_size if self.catalogue_size else float("nan")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BulkReport:
        return cls(**json.loads(text))


def known_users(model_dir: str) -> list[bytes]:
    """The user ids the servable at ``model_dir`` knows: its user vocabulary, in file order."""
    import tensorflow as tf

    path = os.path.join(model_dir, "assets", F.USER_ID)
    if not tf.io.gfile.exists(path):
        raise OutputError(f"{model_dir} carries no user vocabulary (assets/{F.USER_ID}): it is "
                          "not a recommender this pipeline built")
    with tf.io.gfile.GFile(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f if line.strip()]


def _schema():
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])


class _Recommend(beam.DoFn):
    """A batch of user ids -> their rows; the servable is loaded once per worker."""

    def __init__(self, model_dir: str, k: int):
        super().__init__()
        self.model_dir, self.k = model_dir, k
        self._serve: Any = None

    def setup(self):
        import scann  # noqa: F401  (registers ScaNN's ops, which a ScaNN servable needs)
        import tensorflow as tf

        self._serve = tf.saved_model.load(self.model_dir).signatures["serving_default"]

    def process(self, users):
        import numpy as np

        from recsys_pipeline.serving import batch

        found = batch.request(self._serve, users, [0] * len(users), self.k)
        for i, user in enumerate(found.user_ids):
            for j in np.flatnonzero(np.isfinite(found.scores[i])):
                yield {"user_id": user.decode(), "rank": int(j) + 1,
                       "item_id": found.item_ids[i, j].decode(),
                       "item_title": found.item_titles[i, j].decode("utf-8", "replace"),
                       "score": float(found.scores[i, j]),
                       "retrieval_score": float(found.retrieval_scores[i, j]),
                       "ranking_score": float(found.ranking_scores[i, j])}


def write(model_dir: str, output: str, k: int, batch_size: int, pipeline: beam.Pipeline,
          single_file: bool = True, users: Optional[list[bytes]] = None) -> BulkReport:
    """Writes every user's top ``k`` from the servable at ``model_dir`` as Parquet with
    ``pipeline`` (run here): to the file ``output`` (``single_file``), or shards
    ``output-NNNNN-of-NNNNN.parquet``."""
    import tensorflow as tf

    from recsys_pipeline.trainer import export

    metadata = export.read_metadata(model_dir)
    if not 1 <= k <= int(metadata.serving_k or 0):
        raise OutputError(f"k {k} must be from 1 to the {metadata.serving_k} candidates the "
                          "recommender retrieves (recommender.candidates)")
    users = known_users(model_dir) if users is None else users
    if not users:
        raise OutputError(f"{model_dir} knows no users to recommend to")
    parent = os.path.dirname(output)
    if parent:
        tf.io.gfile.makedirs(parent)
    counts = output + ".counts.json"
    started = time.monotonic()
    with pipeline as p:
        rows = (p | "Users" >> beam.Create(users)
                | "Batch" >> beam.BatchElements(min_batch_size=batch_size,
                                                max_batch_size=batch_size)
                | "Recommend" >> beam.ParDo(_Recommend(model_dir, k)))
        if single_file:
            _ = rows | "Write" >> beam.io.WriteToParquet(
                output, _schema(), num_shards=1, shard_name_template="")
        else:
            _ = rows | "Write" >> beam.io.WriteToParquet(
                output, _schema(), file_name_suffix=PARQUET_SUFFIX)
        total = rows | "Rows" >> beam.combiners.Count.Globally()
        covered = (rows | "Items" >> beam.Map(lambda r: r["item_id"])
                   | "Distinct" >> beam.Distinct() | "Covered" >> beam.combiners.Count.Globally())
        _ = (total | "Counts" >> beam.Map(
            lambda n, covered: json.dumps({"rows": n, "covered": covered}),
            covered=beam.pvalue.AsSingleton(covered))
             | "Save" >> beam.io.WriteToText(counts, num_shards=1, shard_name_template=""))
    with tf.io.gfile.GFile(counts) as f:
        found = json.loads(f.read())
    tf.io.gfile.remove(counts)
    files = [output] if single_file else sorted(tf.io.gfile.glob(f"{output}-*{PARQUET_SUFFIX}"))
    return BulkReport(users=len(users), rows=int(found["rows"]), k=k,
                      covered=int(found["covered"]),
                      catalogue_size=int(metadata.catalogue_size or 0),
                      seconds=round(time.monotonic() - started, 2), files=files)
