"""SpanWindow: the rolling window of spans that Transform, the Trainers and the Evaluators read.

A run ingests one span (ExampleGen), validates it (AnomalyGate), and then trains on a window:
its span and the ``window_spans - 1`` newest spans that earlier runs accepted. This component
assembles that window as one Examples artifact with TFX's usual ``train`` and ``eval`` splits,
so everything downstream reads it exactly as it reads a single ExampleGen output:

* ``split_kind`` "random" or "temporal": each span's own train and eval splits, gathered;
* ``split_kind`` "next_span": every rating of the older spans is training data and the
  newest span is the evaluation data, so the candidate and the served model (the Evaluator's
  baseline) are both scored on the data that arrived last. A window of one span (the first
  run) has nothing older to train on: it falls back to the span's own time split, and says so.

Which spans earlier runs accepted is read from the previous window: locally (and on Vertex
AI) TFX's latest-artifact Resolver hands this node the newest window in ML Metadata; on
open-source Kubeflow Pipelines, which cannot run Resolvers, the node reads the newest record
of its file registry instead (the same approach as the Baselines). Every window records the
accepted spans in ``window.json`` beside its splits, for the windows after it.

It also keeps spans in time order, as the node that knows which spans came before: a span
that repeats ratings of an accepted span in its window (a redelivery) or holds nothing newer
than they do (a backfill) is refused, naming both spans (``check_order``). And it is the
drift gate (``data/drift.py``): the new span's statistics are compared with the previous
accepted span's, and
with ``drift`` "block" a distance beyond its threshold fails the run here, before Transform,
naming the span, the feature and the distance. A blocked span is not accepted (no window
records it), so the next run compares with the span before it again. "warn" logs it; every
window records the distances.
"""

import json
import logging
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.util import examples_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from recsys_pipeline.components import registry
from recsys_pipeline.data import drift as drift_lib
from recsys_pipeline.data import spans, splits
from recsys_pipeline.errors import DataError
from recsys_pipeline.serving.list_metrics import read_interactions

WINDOW_FILE = "window.json"
# Accepted spans a window remembers for the next ones: a window can grow to this many later.
HISTORY_SPANS = 400
NEXT_SPAN = "next_span"
WITHIN_SPANS = "within_spans"
logger = logging.getLogger(__name__)


def read_window(uri: str) -> dict:
    """The ``window.json`` record of a window artifact."""
    path = os.path.join(uri, WINDOW_FILE)
    if not fileio.exists(path):
        raise DataError(f"{uri} is not a span window: it has no {WINDOW_FILE}")
    with fileio.open(path) as f:
        return json.loads(f.read())


def latest_window_uri(registry_dir: str) -> Optional[str]:
    """The newest window recorded in ``registry_dir`` whose files still exist."""
    found = registry.newest(
        registry_dir, lambda r: fileio.exists(os.path.join(r["window_uri"], WINDOW_FILE)))
    return found["window_uri"] if found else None


def record_window(registry_dir: str, uri: str) -> None:
    """Records a window where the next one reads it on open-source Kubeflow Pipelines."""
    registry.record(registry_dir, {"window_uri": uri})


def _split_files(examples_uri: str, split: str) -> list[str]:
    folder = os.path.join(examples_uri, f"Split-{split}")
    if not fileio.isdir(folder):
        raise DataError(f"the Examples of an accepted span, {examples_uri}, have no {split} "
                        "split (deleted or damaged output?); ingest that span again with "
                        "recsys run --span N --reingest")
    return sorted(os.path.join(folder, n.rstrip("/")) for n in fileio.listdir(folder))


def _count(files: list[str]) -> int:
    if not files:
        return 0
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def assemble(members: list[spans.AcceptedSpan], split_kind: str, uri: str) -> tuple[str, dict]:
    """Copies the members' splits into ``uri``'s train and eval splits; returns (how the
    window was split, ratings per split)."""
    how = NEXT_SPAN if split_kind == NEXT_SPAN and len(members) > 1 else WITHIN_SPANS
    sources: dict[str, list[tuple[int, str, str]]] = {s: [] for s in splits.SPLITS}
    for i, member in enumerate(members):
        newest = i == len(members) - 1
        for split in splits.SPLITS:
            target = split if how == WITHIN_SPANS else (
                splits.EVAL if newest else splits.TRAIN)
            sources[target] += [(member.number, split, f)
                                for f in _split_files(member.examples_uri, split)]
    ratings = {}
    for target, files in sources.items():
        folder = os.path.join(uri, f"Split-{target}")
        fileio.makedirs(folder)
        copied = []
        for number, split, path in files:
            copy = os.path.join(folder, f"span-{number}-{split}-{os.path.basename(path)}")
            fileio.copy(path, copy, overwrite=True)
            copied.append(copy)
        ratings[target] = _count(copied)
    return how, ratings


def _keys(examples_uri: str) -> tuple[np.ndarray, int, int]:
    """A span's ratings as (user, item, timestamp) keys, and its oldest and newest time."""
    files = [f for split in splits.SPLITS for f in _split_files(examples_uri, split)]
    keys, oldest, newest = [], None, None
    for batch in read_interactions(files):
        keys.append(np.char.add(np.char.add(batch.users.astype(bytes), b"\t"), np.char.add(
            np.char.add(batch.items.astype(bytes), b"\t"),
            batch.timestamps.astype(str).astype(bytes))))
        if len(batch.timestamps):
            low, high = int(batch.timestamps.min()), int(batch.timestamps.max())
            oldest = low if oldest is None else min(oldest, low)
            newest = high if newest is None else max(newest, high)
    return (np.concatenate(keys) if keys else np.zeros(0, bytes)), oldest or 0, newest or 0


def check_order(current: spans.AcceptedSpan, older: list[spans.AcceptedSpan]) -> None:
    """Refuses a span that repeats ratings of the accepted spans before it in its window
    (same user, item and timestamp: a redelivery), or whose newest rating is no newer than
    theirs (a backfill): trained on, it would be graded on what the model already saw, or
    replace a model with one evaluated on older data."""
    if not older:
        return
    mine, _, newest = _keys(current.examples_uri)
    latest_before, latest_span = 0, older[-1].number
    for span in older:
        theirs, _, their_newest = _keys(span.examples_uri)
        if their_newest >= latest_before:
            latest_before, latest_span = their_newest, span.number
        repeated = np.isin(mine, theirs)
        if repeated.any():
            example = mine[repeated][0].decode("utf-8", "replace").split("\t")
            raise DataError(
                f"span {current.number} repeats {int(repeated.sum()):,} of its {len(mine):,} "
                f"ratings from span {span.number} (same user, item and timestamp; e.g. user "
                f"{example[0]}, item {example[1]} at {example[2]}): a span delivered again. "
                "Nothing was trained or pushed; remove the repeated rows (or the folder) and "
                f"run span {current.number} again with --reingest")
    if newest <= latest_before:
        raise DataError(
            f"span {current.number} holds nothing newer than span {latest_span}: its newest "
            f"rating is at {_when(newest)}, span {latest_span}'s at {_when(latest_before)}. "
            "Spans arrive in time order (a backfill of older data would be graded as the "
            "newest); nothing was trained or pushed. Give it a span number before the spans "
            "it precedes, or merge it into them, and run again")


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def check_drift(current: spans.AcceptedSpan, before: Optional[spans.AcceptedSpan],
                schema_uri: str, mode: str, categorical_threshold: float,
                numeric_threshold: float) -> list[drift_lib.Distance]:
    """The new span's distances from ``before``; raises with ``mode`` "block" when one is
    beyond its threshold."""
    if mode == "off" or not (before and before.statistics_uri and current.statistics_uri):
        return []
    schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri)) \
        if schema_uri else schema_pb2.Schema()
    found = drift_lib.distances(drift_lib.load_statistics(current.statistics_uri),
                                drift_lib.load_statistics(before.statistics_uri),
                                drift_lib.with_comparators(schema, categorical_threshold,
                                                           numeric_threshold))
    beyond = [d for d in found if d.beyond]
    if beyond and mode == "block":
        raise DataError(
            f"span {current.number} has drifted from span {before.number}: "
            + "; ".join(d.describe() for d in beyond)
            + ". Nothing was trained or pushed. If the change is real, accept it with "
            "validation.drift = \"warn\" (or a higher threshold in [validation] or the "
            "curated schema's drift_comparator) and run the span again with --reingest")
    for d in beyond:
        logger.warning("SpanWindow: span %d has drifted from span %d: %s", current.number,
                       before.number, d.describe())
    return found


@component
def SpanWindow(
    examples: InputArtifact[standard_artifacts.Examples],
    window: OutputArtifact[standard_artifacts.Examples],
    window_spans: Parameter[int],
    split_kind: Parameter[str],
    registry: Parameter[str],
    previous_window: InputArtifact[standard_artifacts.Examples] = None,
    statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    schema: InputArtifact[standard_artifacts.Schema] = None,
    read_registry: Parameter[int] = 0,
    drift: Parameter[str] = "off",
    categorical_threshold: Parameter[float] = 0.3,
    numeric_threshold: Parameter[float] = 0.2,
    source_fingerprint: Parameter[str] = "",
):
    """Writes the window ending at ``examples``' span (module doc). The previous window comes
    from ``previous_window`` or, with ``read_registry``, from ``registry``, where every
    window is recorded."""
    if examples.span is None:
        raise DataError(f"{examples.uri}: the ingested Examples carry no span")
    previous_uri = previous_window.uri if previous_window is not None else None
    if read_registry:
        previous_uri = latest_window_uri(registry)
    earlier: list[spans.AcceptedSpan] = []
    if previous_uri:
        earlier = [spans.AcceptedSpan.from_json(r) for r in read_window(previous_uri)["history"]]
    current = spans.AcceptedSpan(int(examples.span), examples.uri, time.time_ns(),
                                 statistics.uri if statistics is not None else "")
    before = spans.previous(earlier, current)
    distances = check_drift(current, before, schema.uri if schema is not None else "", drift,
                            categorical_threshold, numeric_threshold)
    members = spans.window(earlier, current, window_spans)
    check_order(current, members[:-1])
    numbers = [m.number for m in members]
    if len(members) < window_spans:
        logger.warning("SpanWindow: window_spans is %d but only %d accepted span(s) exist "
                       "up to span %d: the window is spans %s", window_spans, len(members),
                       current.number, ", ".join(map(str, numbers)))
    how, ratings = assemble(members, split_kind, window.uri)
    if split_kind == NEXT_SPAN and how != NEXT_SPAN:
        logger.warning("SpanWindow: split.kind next_span needs an older span to train on; "
                       "span %d is the only one, so it is split by time within itself",
                       current.number)
    record = {"span": current.number, "spans": numbers, "split": how, "ratings": ratings,
              "window_spans": window_spans,
              "drift": {"against": before.number if before else None, "mode": drift,
                        "distances": [d.to_json() for d in distances]},
              "history": [s.to_json() for s in spans.history([*earlier, current],
                                                             HISTORY_SPANS)]}
    with fileio.open(os.path.join(window.uri, WINDOW_FILE), "w") as f:
        f.write(json.dumps(record, indent=1))
    window.split_names = artifact_utils.encode_split_names(list(splits.SPLITS))
    window.span = current.number
    examples_utils.set_payload_format(window, example_gen_pb2.FORMAT_TF_EXAMPLE)
    window.set_string_custom_property("window_spans", ",".join(map(str, numbers)))
    window.set_int_custom_property("window_ratings", sum(ratings.values()))
    window.set_string_custom_property("window_split", how)
    window.set_string_custom_property("span_examples", examples.uri)
    if drift != "off":
        window.set_string_custom_property(
            "drift", drift_lib.summary(distances, before.number if distances and before else None))
    logger.info("SpanWindow: spans %s (%d train, %d eval ratings, %s)",
                ", ".join(map(str, numbers)), ratings[splits.TRAIN], ratings[splits.EVAL], how)
    record_window(registry, window.uri)
