"""ScannIndexer: builds the ScaNN-indexed retrieval model and gates it on recall.

Runs after the retrieval Evaluator. For a blessed model it indexes the catalogue embeddings
with ScaNN (``serving.index.build_scann``), measures recall@k of the index against exact
brute-force search on the same model, for the queries of up to ``max_queries`` eval-split
users (half tune automatic settings, half grade them: see
``serving.index.build_scann_export``), and saves the ScaNN SavedModel (``Format-Serving``
under ``index_model``). ``index_blessing`` is blessed only if the model was and the recall
reaches the bound; its ``reason`` says why not otherwise. ``source_fingerprint`` (the hash of
the code this runs, ``pipeline.fingerprint``) is unused here: it only keys TFX's cache.

Building and tuning the index is the slow part, and a rerun with the same model, examples and
settings would give the same index: each index is recorded in ``reuse_registry``, and a rerun
given exactly those inputs copies the recorded index and verdict instead (TFX's own cache
cannot tell, because the blessing it is given is a new artifact each time its Evaluator runs).
"""

import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from recsys_pipeline import progress
from recsys_pipeline.components import registry
from recsys_pipeline.errors import DataError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import index
from recsys_pipeline.serving.index_params import IndexParams
from recsys_pipeline.transform import features as F


def eval_queries(split_dir: str, max_users: int) -> tuple[list[str], list[int]]:
    """(user ids, timestamps): each user's first rating in the split, up to ``max_users``."""
    spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.string),
            F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}
    paths = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    users: dict[str, int] = {}
    for batch in tf.data.TFRecordDataset(paths, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        for user, when in zip(parsed[F.USER_ID].numpy(), parsed[F.TIMESTAMP].numpy(), strict=True):
            users.setdefault(user.decode(), int(when))
            if len(users) >= max_users:
                return list(users), list(users.values())
    return list(users), list(users.values())


@component
def ScannIndexer(
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    examples: InputArtifact[standard_artifacts.Examples],
    index_model: OutputArtifact[standard_artifacts.Model],
    index_blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    index_params: Parameter[str],
    source_fingerprint: Parameter[str] = "",
    reuse_registry: Parameter[str] = "",
):
    """Indexes a blessed retrieval model with ScaNN and gates on recall@k (see module doc)."""
    index_blessing.set_string_custom_property("current_model", model.uri)
    index_model.set_string_custom_property(nodes.SOURCE_MODEL_PROPERTY, model.uri)
    if model_blessing.get_int_custom_property(nodes.BLESSED_PROPERTY) != 1:
        index_blessing.set_int_custom_property(nodes.BLESSED_PROPERTY, 0)
        index_blessing.set_string_custom_property(
            nodes.REASON_PROPERTY, "the retrieval model was not blessed by its Evaluator")
        return
    given = {"model": model.uri, "examples": examples.uri, "index_params": index_params,
             "code": source_fingerprint}
    earlier = registry.same_inputs(reuse_registry, given) if reuse_registry else None
    if earlier is not None:
        registry.copy_tree(earlier["outputs"]["index_model"], index_model.uri)
        for key, value in earlier["blessing"].items():
            (index_blessing.set_int_custom_property if isinstance(value, int) else
             index_blessing.set_float_custom_property if isinstance(value, float) else
             index_blessing.set_string_custom_property)(key, value)
        source = earlier["outputs"]["index_model"]
        index_blessing.set_string_custom_property("kept_from", source)
        progress.step(f"the same model, examples and settings as {source}: its index and "
                      "recall are kept, not tuned again")
        return
    params = IndexParams(**json.loads(index_params))
    users, timestamps = eval_queries(
        artifact_utils.get_split_uri([examples], "eval"), params.max_queries)
    if not users:
        raise DataError("the eval split has no examples to measure the index recall with")
    progress.step(f"indexing the catalogue with ScaNN; recall@{params.recall_k} on "
                  f"{len(users)} eval users ...", eval_users=len(users))
    report = index.build_scann_export(path_utils.serving_model_path(model.uri),
                                      path_utils.serving_model_dir(index_model.uri),
                                      params, users, timestamps)
    recall = report.recall
    for step in report.tuning:
        progress.step(f"tuning: {step.num_leaves_to_search} of {report.settings.num_leaves} "
                      f"leaves searched -> recall {step.tuning_recall:.4f} on the tuning "
                      "queries", leaves_searched=step.num_leaves_to_search,
                      leaves=report.settings.num_leaves, tuning_recall=step.tuning_recall)
    progress.step(
        f"ScaNN recall@{report.recall_k} ({report.recall_of}) = {recall:.4f} on "
        f"{report.queries} held-out queries (bound {params.min_recall}), built in "
        f"{report.build_seconds:.2f}s; one query {report.latency_ms['scann']['p50']:.2f} ms "
        f"(brute force {report.latency_ms['brute_force']['p50']:.2f} ms), median",
        recall=recall, recall_k=report.recall_k, min_recall=params.min_recall,
        build_seconds=report.build_seconds)
    index_blessing.set_float_custom_property("recall", recall)
    index_blessing.set_float_custom_property("min_recall", params.min_recall)
    index_blessing.set_string_custom_property("report", report.to_json())
    blessed = recall >= params.min_recall
    verdict: dict = {"recall": recall, "min_recall": params.min_recall,
                     "report": report.to_json(), nodes.BLESSED_PROPERTY: int(blessed)}
    index_blessing.set_int_custom_property(nodes.BLESSED_PROPERTY, int(blessed))
    if not blessed:
        verdict[nodes.REASON_PROPERTY] = (f"ScaNN recall@{report.recall_k} {recall:.4f} is below "
                             f"index.min_recall {params.min_recall}")
        index_blessing.set_string_custom_property(nodes.REASON_PROPERTY,
                                                  verdict[nodes.REASON_PROPERTY])
    if reuse_registry:
        registry.record(reuse_registry, {"inputs": given, "blessing": verdict,
                                         "outputs": {"index_model": index_model.uri}})
