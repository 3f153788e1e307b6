"""InteractionsExampleGen: an interaction log -> joined tf.Examples (train/eval) + catalogue.

The log is a team's own, declared in ``[interactions]``, or a MovieLens layout (ml-100k,
ml-1m, the GroupLens CSV), which is read through the declaration of its files
(``movielens.declared_as``): one reader, so both become the same canonical examples
(``transform/features.py``) and declared features. Interactions stream through Beam (never
held in one Python list); each is joined with its item (title, categories, declared item
features) and its user's declared features, then assigned to a split. The item and user
tables stream too: they are joined by grouping on the item and user ids (``_join``),
so no table is ever one Python object. Interactions whose item is unknown are dropped and
counted; above ``max_orphan_fraction`` the run fails. Any failure removes the partial output
files, and TFX never publishes the artifacts of a failed execution, so nothing half-written
looks valid.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_pipeline.components import registry
from recsys_pipeline.data import interactions, movielens, spans, splits
from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.errors import DataError, find_recsys_error
from recsys_pipeline.transform import features as F

_METRICS_NAMESPACE = "recsys.example_gen"
logger = logging.getLogger(__name__)


def to_example(feats: dict[str, list]) -> bytes:
    """Serializes a raw feature dict as a tf.Example, typed by features.RAW_FEATURE_KINDS;
    declared features by their values (floats, else bytes), left out when missing."""
    feature = {}
    for name, values in feats.items():
        if F.is_declared(name):
            if not values:
                continue
            kind = "float" if isinstance(values[0], float) else "bytes"
        else:
            kind = F.RAW_FEATURE_KINDS[name]
        if kind == "bytes":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif kind == "int":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _position(where: str) -> tuple[str, int]:
    """(file, line or row) of a "<file> line N" / "<file> row N" location, for ordering."""
    head, _, number = where.rpartition(" ")
    return (head, int(number)) if number.isdigit() else (where, 0)


def _single(table: str, key: str, rows: list) -> Optional[Any]:
    """The one (where, record) of ``key`` in a declared table; two or more are refused."""
    if len(rows) > 1:
        first, again = sorted((where for where, _ in rows), key=_position)[:2]
        raise interactions.twice(table, key, first, again)
    return rows[0][1] if rows else None


class _ItemGroupFn(beam.DoFn):
    """One item of a declared log with every interaction naming it (a CoGroupByKey on the
    item id): the item's catalogue entry, and each user's newest interaction with it joined
    to it (the rest counted as repeats), or the interactions as orphans when the item table
    lacks it. Without an item table (``items_file`` None) every named item is in the
    catalogue, titled by its id."""

    def __init__(self, items_file: Optional[str], repeats: str):
        self._items_file = items_file
        self._refuse_repeats = repeats == "refuse"
        self._total = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "ratings")
        self._orphans = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "orphans")
        self._repeats = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "repeats")

    def process(self, grouped):
        item_id, tables = grouped
        ratings = list(tables["ratings"])
        if self._items_file is None:
            item = movielens.Item(item_id, item_id, ())
        else:
            item = _single("item", item_id, list(tables["items"]))
        if item is not None:
            yield beam.pvalue.TaggedOutput("catalogue", item)
        newest: dict[str, movielens.Rating] = {}
        if self._refuse_repeats:
            _refuse_repeats(item_id, ratings)
        for r in ratings:
            kept = newest.get(r.user_id)
            if kept is None or (r.timestamp, r.where, r.line_no) > (
                    kept.timestamp, kept.where, kept.line_no):
                newest[r.user_id] = r
        self._repeats.inc(len(ratings) - len(newest))
        for rating in newest.values():
            self._total.inc()
            if item is None:
                self._orphans.inc()
                yield beam.pvalue.TaggedOutput(
                    "orphans", f"{rating.where}: item id {item_id} is not in {self._items_file}")
            else:
                yield rating, item


def _refuse_repeats(item_id: str, ratings: list) -> None:
    """Raises naming the earliest repeat of a user's interaction with this item, if any."""
    by_user: dict[str, list[str]] = {}
    for r in ratings:
        by_user.setdefault(r.user_id, []).append(r.where)
    repeats = [(sorted(wheres, key=_position)[:2], user) for user, wheres in by_user.items()
               if len(wheres) > 1]
    if repeats:
        (first, again), user = min(repeats, key=lambda found: _position(found[0][1]))
        raise DataError(f"{again}: user {user} and item {item_id} again (first at {first}): "
                        "a repeat, refused by interactions.repeats = \"refuse\" (a damaged "
                        "or twice-delivered file)")


def _join_user(grouped):
    """One user of a declared log with their joined interactions and their user table row
    (a CoGroupByKey on the user id); a user missing from the table has no feature values."""
    user_id, tables = grouped
    user = _single("user", user_id, list(tables["users"]))
    for rating, item in tables["rated"]:
        yield rating, movielens.join_features(rating, item, user)


def _write(pcoll, uri: str, split: str):
    return pcoll | f"Write{split}" >> beam.io.WriteToTFRecord(
        os.path.join(uri, f"Split-{split}", "data_tfrecord"), file_name_suffix=".gz")


def _remove_outputs(*uris: str) -> None:
    for uri in uris:
        for entry in tf.io.gfile.listdir(uri) if tf.io.gfile.exists(uri) else []:
            tf.io.gfile.rmtree(os.path.join(uri, entry.rstrip("/")))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads an interaction log and writes the examples and catalogue artifacts."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        catalogue = artifact_utils.get_single_instance(output_dict["catalogue"])
        try:
            self._run(examples, catalogue, exec_properties)
        except Exception:
            _remove_outputs(examples.uri, catalogue.uri)
            raise

    def _run(self, examples, catalogue, exec_properties) -> None:
        declaration = (InteractionsLayout(**json.loads(exec_properties["interactions"]))
                       if exec_properties.get("interactions") else None)
        span = exec_properties.get("span")
        if exec_properties.get("span_choice"):
            span = choose_registered_span(exec_properties["data_dir"],
                                          exec_properties["span_choice"],
                                          exec_properties["span_registry"])
        if span is None:
            dataset = movielens.detect_layout(exec_properties["data_dir"],
                                              exec_properties["layout"],
                                              declaration=declaration)
        else:
            dataset = spans.span_dataset(exec_properties["data_dir"], int(span),
                                         exec_properties["layout"], declaration)
            examples.span = catalogue.span = int(span)
        if declaration is None:  # a MovieLens layout: read through its declaration, as any
            declaration = movielens.declared_as(dataset)
            dataset = movielens.as_declared(dataset, declaration)
        split_cfg = json.loads(exec_properties["split_config"])
        max_orphans = float(exec_properties["max_orphan_fraction"])
        logger.info("InteractionsExampleGen: %s layout in %s", dataset.spec.kind, dataset.data_dir)

        examples.split_names = artifact_utils.encode_split_names(list(splits.SPLITS))
        catalogue.split_names = artifact_utils.encode_split_names([splits.CATALOGUE])
        for artifact in (examples, catalogue):
            examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
        orphan_sample = os.path.join(examples.uri, "_orphan_sample")

        p = self._make_beam_pipeline()
        ratings = (
            p
            | "Dataset" >> beam.Create(dataset.sources())
            | "ReadRatings" >> beam.FlatMap(movielens.iter_ratings)
            # Spread each file's ratings over workers for the rest of the pipeline.
            | "Redistribute" >> beam.Reshuffle()
        )
        joined, orphans, listed = self._join(p, ratings, dataset, declaration)
        (
            orphans
            | "SampleOrphans" >> beam.combiners.Sample.FixedSizeGlobally(5)
            | "OrphansJson" >> beam.Map(json.dumps)
            | "WriteOrphans" >> beam.io.WriteToText(orphan_sample, shard_name_template="")
        )
        if split_cfg["kind"] == "random":
            seed, fraction = split_cfg["seed"], split_cfg["eval_fraction"]

            def split_of(kv, _n, *_):
                r = kv[0]
                return splits.SPLITS.index(
                    splits.random_split(r.user_id, r.item_id, r.timestamp, seed, fraction))

            parts = joined | "Split" >> beam.Partition(split_of, len(splits.SPLITS))
        else:
            cutoff = self._temporal_cutoff(joined, split_cfg)

            def split_by_time(kv, _n, cut):
                return splits.SPLITS.index(splits.temporal_split(kv[0].timestamp, cut))

            parts = joined | "Split" >> beam.Partition(
                split_by_time, len(splits.SPLITS), cutoff)
        for index, split in enumerate(splits.SPLITS):
            _write(parts[index] | f"Serialize{split}" >> beam.Map(lambda kv: to_example(kv[1])),
                   examples.uri, split)
        _write(
            listed | "SerializeCatalogue" >> beam.Map(
                lambda m: to_example(movielens.item_features(m))),
            catalogue.uri, splits.CATALOGUE)

        try:
            result = p.run()
            result.wait_until_finish()
        except Exception as e:  # Beam wraps DoFn errors; surface ours unchanged.
            inner = find_recsys_error(e)
            if inner is not None:
                raise inner from None
            raise
        if self._counter(result, "repeats"):
            logger.warning("InteractionsExampleGen: %d repeated interactions of a user with an "
                           "item: kept the newest of each", self._counter(result, "repeats"))
        self._check_orphans(result, orphan_sample, max_orphans, dataset)
        if exec_properties.get("span_registry") and span is not None:
            registry.record(exec_properties["span_registry"],
                            {"span": int(span), "examples_uri": examples.uri})

    @staticmethod
    def _join(p, ratings, dataset, declaration: InteractionsLayout):
        """(joined examples, orphans, catalogue) of the log: interactions grouped with
        their item table row by item id, then with their user table row by user id. Neither
        table is ever one Python object: both stream through Beam like the log."""
        tables = {"ratings": ratings | "ByItem" >> beam.Map(lambda r: (r.item_id, r))}
        if dataset.items_file:
            tables["items"] = (
                p
                | "ItemTable" >> beam.Create([dataset.items_file])
                | "ReadItems" >> beam.FlatMap(
                    lambda path: interactions.iter_items(declaration, path))
                | "ItemKey" >> beam.Map(lambda row: (row[1].item_id, row))
            )
        items = (
            tables
            | "GroupByItem" >> beam.CoGroupByKey()
            | "JoinItems" >> beam.ParDo(
                _ItemGroupFn(dataset.items_file, declaration.repeats)).with_outputs(
                    "orphans", "catalogue", main="rated")
        )
        if dataset.users_table:
            users = (
                p
                | "UserTable" >> beam.Create([dataset.users_table])
                | "ReadUsers" >> beam.FlatMap(
                    lambda path: interactions.iter_users(declaration, path))
                | "UserKey" >> beam.Map(lambda row: (row[1].user_id, row))
            )
            joined = (
                {"rated": items.rated | "ByUser" >> beam.Map(lambda ri: (ri[0].user_id, ri)),
                 "users": users}
                | "GroupByUser" >> beam.CoGroupByKey()
                | "JoinUsers" >> beam.FlatMap(_join_user)
            )
        else:
            joined = items.rated | "Features" >> beam.Map(
                lambda ri: (ri[0], movielens.join_features(ri[0], ri[1], None)))
        return joined, items.orphans, items.catalogue

    @staticmethod
    def _temporal_cutoff(joined, split_cfg):
        if split_cfg.get("cutoff_timestamp") is not None:
            return split_cfg["cutoff_timestamp"]
        q = 1000
        index = round((1.0 - split_cfg["eval_fraction"]) * q)
        return beam.pvalue.AsSingleton(
            joined
            | "Timestamps" >> beam.Map(lambda kv: kv[0].timestamp)
            | "Quantiles" >> beam.ApproximateQuantiles.Globally(q + 1)
            # Train is everything up to and including the (1 - eval_fraction) quantile;
            # timestamps are whole seconds, so the first eval second is one after it.
            | "Cutoff" >> beam.Map(lambda qs: qs[index] + 1)
        )

    @staticmethod
    def _counter(result, name: str) -> int:
        found = result.metrics().query(
            MetricsFilter().with_namespace(_METRICS_NAMESPACE).with_name(name))["counters"]
        return sum(c.result for c in found)

    @staticmethod
    def _read_sample(path: str) -> list[str]:
        sample = []
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                sample = [x for line in f if line.strip() for x in json.loads(line)]
            tf.io.gfile.remove(path)
        return sample

    def _check_orphans(self, result, sample_path: str, max_fraction: float, dataset) -> None:
        total, orphans = self._counter(result, "ratings"), self._counter(result, "orphans")
        sample = self._read_sample(sample_path)
        if orphans == 0:
            logger.info("InteractionsExampleGen: %d ratings, none dropped", total)
            return
        fraction = orphans / max(total, 1)
        details = "; ".join(sample[:3])
        tables = f"an item missing from {dataset.items_path}"
        if fraction > max_fraction:
            raise DataError(
                f"{dataset.ratings_path}: {orphans} of {total} ratings ({fraction:.2%}) refer to "
                f"{tables}, above "
                f"data.max_orphan_fraction = {max_fraction:g}. For example: {details}"
            )
        logger.warning("InteractionsExampleGen: dropped %d of %d ratings (%.2f%%) with unknown "
                        "item/user ids, e.g. %s", orphans, total, 100 * fraction, details)


def choose_registered_span(data_dir: str, choice: str, registry_dir: str) -> int:
    """The span a Kubeflow step ingests: ``choice`` "latest" (the oldest span folder newer
    than every span earlier runs of the pipeline ingested, by ``registry_dir``) or a number
    (taken again if ingested: a scheduler's rerun). None newer: "no new span", an error,
    since a step cannot end a Kubeflow run early."""
    found = spans.list_spans(data_dir)
    if not found:
        raise DataError(f"span {choice!r}: {data_dir!r} holds no span-<N> folders")
    ingested = {int(r["span"]) for r in registry.records(registry_dir)}
    span = spans.choose_span(found, choice, ingested, reingest=True, data_dir=data_dir)
    if span is None:
        raise DataError(f"no new span: {data_dir} holds spans "
                        f"{', '.join(str(s.number) for s in found)}, none newer than those "
                        f"ingested by earlier runs ({registry_dir}); nothing was trained or "
                        "pushed")
    logger.info("InteractionsExampleGen: span %s -> span %d", choice, span.number)
    return span.number


class InteractionsExampleGenSpec(types.ComponentSpec):
    """Parameters and outputs of InteractionsExampleGen."""

    PARAMETERS = {
        "data_dir": ExecutionParameter(type=str),
        "layout": ExecutionParameter(type=str),
        "split_config": ExecutionParameter(type=str),
        "max_orphan_fraction": ExecutionParameter(type=float),
        # The [interactions] declaration (JSON) when the layout is "interactions".
        "interactions": ExecutionParameter(type=str, optional=True),
        # The span folder to read (data/spans.py); unset: the whole directory.
        "span": ExecutionParameter(type=int, optional=True),
        # On Kubeflow, where the step chooses it (a run-time parameter): latest or a number,
        # and the registry of the spans earlier runs ingested (components/registry.py).
        "span_choice": ExecutionParameter(type=str, optional=True),
        "span_registry": ExecutionParameter(type=str, optional=True),
        # Not read by the executor: changes when the input files change, so TFX's cache
        # (keyed on exec properties) re-runs ExampleGen on new data.
        "input_fingerprint": ExecutionParameter(type=str),
        # The hash of this component's code (pipeline.fingerprint): it only keys TFX's cache.
        "source_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: dict[str, Any] = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "catalogue": ChannelParameter(type=standard_artifacts.Examples),
    }


class InteractionsExampleGen(base_beam_component.BaseBeamComponent):
    """ExampleGen for the MovieLens 100K, 1M and GroupLens CSV layouts, and for a declared
    interaction log (data/interactions.py)."""

    SPEC_CLASS = InteractionsExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, data_dir, layout: str, split_config: str, max_orphan_fraction: float,
                 input_fingerprint: str = "", source_fingerprint: str = "",
                 span: Optional[int] = None, span_choice=None,
                 span_registry: Optional[str] = None, interactions: Optional[str] = None):
        super().__init__(spec=InteractionsExampleGenSpec(
            data_dir=data_dir,
            interactions=interactions,
            span=span,
            span_choice=span_choice,
            span_registry=span_registry,
            layout=layout,
            split_config=split_config,
            max_orphan_fraction=max_orphan_fraction,
            input_fingerprint=input_fingerprint,
            source_fingerprint=source_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples),
            catalogue=types.Channel(type=standard_artifacts.Examples),
        ))
