"""Recommender: builds the two-stage servable from the blessed models and gates it on NDCG.

Runs after the ScannIndexer and the ranking Evaluator. When both blessed their models, it
composes (``serving.two_stage``) the ScaNN index with the ranking model into ``model`` (served
as the 'recommender' by ScaNN's TF Serving image), and the brute-force retrieval export with
the ranking model into ``brute_force_model`` (stock TF Serving), each answering
``serving_default(user_id, timestamp, k)`` with ``candidates`` retrieved and ``rank_weight``
blending the stages. What they serve never holds an item the user interacted with in any split
of ``examples`` (``two_stage.Seen``). Then it gates them as a user would see them: NDCG@k of
each list on the eval split (every eval user asked once, at their first eval rating's time;
gains are the eval ratings), from ``gate_serve``, which drops the train split's items alone,
so that the eval ratings can be hit.

``blessing`` is blessed only if both variants list items with finite, varied scores
(``evaluation.degenerate``), reach ``value_bound`` and the ScaNN variant is
at most ``tolerance`` below the last blessed recommender, scored on the same eval split here.
That baseline comes from ``blessing_registry`` (``components/registry.py``), where every
blessing is recorded, as every branch's Baseline reads its gate's (BlessedModelLookup).
``evaluation`` holds the ``ListEvaluation``; ``source_fingerprint`` keys TFX's cache. When the
last blessed recommender was built and gated from exactly these inputs (a rerun), its outputs
and verdict are copied instead (``_keep``).
"""


from typing import Optional

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from recsys_pipeline import progress
from recsys_pipeline.components import registry
from recsys_pipeline.errors import DataError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.evaluation import degenerate
from recsys_pipeline.serving import batch, two_stage
from recsys_pipeline.serving.list_metrics import (
    BASELINE,
    BRUTE_FORCE,
    CANDIDATE,
    ListEvaluation,
    ndcg,
    ndcg_metric,
    relevance,
    served_ndcg,
)


def listed_degenerate(lists: batch.Lists) -> Optional[str]:
    """Why the scores of the items ``lists`` hold are unusable (``evaluation.degenerate``),
    or that they hold none; None when they are fine."""
    filled = lists.item_ids != b""
    if not filled.any():
        return "its lists hold no item"
    return degenerate(lists.scores[filled])


def _variants(names: list[str]) -> str:
    """How a failure names the variants it holds for (nothing for the candidate alone)."""
    if names == [CANDIDATE]:
        return ""
    if len(names) > 1:
        return " (both variants)"
    return f" ({names[0].replace('_', '-')} variant)"


def _grouped(found: dict[str, str]) -> list[str]:
    """One failure per distinct text, naming the variants it holds for."""
    texts: dict[str, list[str]] = {}
    for name, text in found.items():
        texts.setdefault(text, []).append(name)
    return [text + _variants(names) for text, names in texts.items()]


def gate(metric: str, values: dict[str, float], baseline: Optional[float], bound: float,
         tolerance: float) -> list[str]:
    """Why the recommender is not blessed (empty: it is); ``values`` per variant."""
    failures = _grouped({name: f"{metric} {value:.4f} is outside its bound (>= {bound:g})"
                         for name, value in values.items() if not value >= bound})
    if baseline is not None and values[CANDIDATE] < baseline - tolerance:
        failures.append(f"{metric} differs from the last blessed model's by "
                        f"{values[CANDIDATE] - baseline:+.4f}, beyond the tolerance")
    return failures


@component
def Recommender(
    retrieval_model: InputArtifact[standard_artifacts.Model],
    index_model: InputArtifact[standard_artifacts.Model],
    index_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    ranking_model: InputArtifact[standard_artifacts.Model],
    ranking_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    examples: InputArtifact[standard_artifacts.Examples],
    model: OutputArtifact[standard_artifacts.Model],
    brute_force_model: OutputArtifact[standard_artifacts.Model],
    evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    candidates: Parameter[int],
    rank_weight: Parameter[float],
    k: Parameter[int],
    value_bound: Parameter[float],
    tolerance: Parameter[float],
    blessing_registry: Parameter[str],
    source_fingerprint: Parameter[str] = "",
):
    """Builds, gates and blesses the two-stage recommender (see module doc)."""
    blessing.set_string_custom_property("current_model", model.uri)
    metric = ndcg_metric(k)
    unblessed = [f"the {what} was not blessed ({why})" for what, why, artifact in (
        ("ScaNN index", "its recall or the retrieval gate", index_blessing),
        ("ranking model", "its Evaluator", ranking_blessing))
        if artifact.get_int_custom_property(nodes.BLESSED_PROPERTY) != 1]
    if unblessed:
        reason = "; ".join(unblessed) + ": nothing to build the recommender from"
        ListEvaluation({}, [reason]).write(evaluation.uri)
        blessing.set_int_custom_property(nodes.BLESSED_PROPERTY, 0)
        blessing.set_string_custom_property(nodes.REASON_PROPERTY, reason)
        return
    ranking_dir = path_utils.serving_model_path(ranking_model.uri)
    # What the servable is made of: the same trained models and settings make the same
    # servable, which the Pusher does not push again (a rebuilt index is not a new model).
    trained = (index_model.get_string_custom_property(nodes.SOURCE_MODEL_PROPERTY)
               or retrieval_model.uri)
    source_model = (f"two-stage({trained}, {ranking_model.uri}, candidates={candidates}, "
                    f"rank_weight={rank_weight:g})")
    given = {nodes.SOURCE_MODEL_PROPERTY: source_model, "examples": examples.uri, "k": k,
             "value_bound": value_bound, "tolerance": tolerance, "code": source_fingerprint}
    latest = registry.latest_blessed(blessing_registry)
    if latest is not None and latest.get("given") == given and all(
            fileio.exists(latest.get(key, "")) for key in (
                "model_uri", "brute_force_model_uri", "evaluation_uri")):
        _keep(latest, model, brute_force_model, evaluation, blessing, metric, source_model)
        return
    split_dirs = [artifact_utils.get_split_uri([examples], split) for split in
                  artifact_utils.decode_split_names(examples.split_names)]
    progress.step(f"reading every interaction of {len(split_dirs)} splits, never to be served "
                  "again ...")
    seen = None
    built = {}
    for name, label, source, out in (
            (CANDIDATE, "ScaNN", path_utils.serving_model_path(index_model.uri), model),
            (BRUTE_FORCE, "brute-force", path_utils.serving_model_path(retrieval_model.uri),
             brute_force_model)):
        progress.step(f"building the recommender over {label} retrieval: {candidates} "
                      f"candidates, rank_weight {rank_weight:g} ...")
        module = two_stage.load(source, ranking_dir, rank_weight, candidates, seen)
        if seen is None:  # both variants share one catalogue, the retrieval export's
            seen = two_stage.seen_in(split_dirs, module.base.candidate_ids.numpy())
            module = module.excluding(seen)
        two_stage.save(module, path_utils.serving_model_dir(out.uri))
        out.set_string_custom_property(nodes.SOURCE_MODEL_PROPERTY, source_model)
        built[name] = module

    users, timestamps, gains = relevance(artifact_utils.get_split_uri([examples], "eval"))
    if not users:
        raise DataError("the eval split has no examples to score the recommender's lists on")
    lists = {name: batch.top_k(module.gate_serve, users, timestamps, k)
             for name, module in built.items()}
    values = {name: ndcg(list(found.item_ids), gains, k) for name, found in lists.items()}
    metrics = {CANDIDATE: {metric: values[CANDIDATE], "users": float(len(users))},
               BRUTE_FORCE: {metric: values[BRUTE_FORCE]}}
    found = registry.latest_blessed(blessing_registry)
    baseline = None
    if found is not None:
        served = tf.saved_model.load(path_utils.serving_model_path(found["model_uri"]))
        baseline = served_ndcg(two_stage.gate_function(served), users, timestamps, gains, k)
        metrics[BASELINE] = {metric: baseline}
        blessing.set_string_custom_property(nodes.BASELINE_MODEL_PROPERTY, found["model_uri"])
    failures = _grouped({name: f"the recommender is degenerate: {why}"
                         for name, found in lists.items()
                         if (why := listed_degenerate(found)) is not None})
    failures += gate(metric, values, baseline, value_bound, tolerance)
    ListEvaluation(metrics, failures).write(evaluation.uri)
    progress.step(
        f"recommender {metric} = {values[CANDIDATE]:.4f} (brute-force variant "
        f"{values[BRUTE_FORCE]:.4f}) on {len(users)} eval users; bound {value_bound:g}, "
        f"baseline {'-' if baseline is None else f'{baseline:.4f}'}",
        ndcg=values[CANDIDATE], brute_force_ndcg=values[BRUTE_FORCE], baseline_ndcg=baseline,
        users=len(users))
    blessing.set_float_custom_property(metric, values[CANDIDATE])
    blessing.set_int_custom_property(nodes.BLESSED_PROPERTY, int(not failures))
    if failures:
        blessing.set_string_custom_property(nodes.REASON_PROPERTY, "; ".join(failures))
        return
    registry.record(blessing_registry, {
        "model_uri": model.uri, "brute_force_model_uri": brute_force_model.uri,
        "blessing_uri": blessing.uri, metric: float(np.round(values[CANDIDATE], 6)),
        "evaluation_uri": evaluation.uri, "given": given})


def _keep(latest: dict, model, brute_force_model, evaluation, blessing, metric: str,
          source_model: str) -> None:
    """The outputs of the last blessed recommender, which was built and gated from exactly
    these inputs: copied with its verdict, not rebuilt or re-scored."""
    for artifact, key in ((model, "model_uri"), (brute_force_model, "brute_force_model_uri"),
                          (evaluation, "evaluation_uri")):
        registry.copy_tree(latest[key], artifact.uri)
    for artifact in (model, brute_force_model):
        artifact.set_string_custom_property(nodes.SOURCE_MODEL_PROPERTY, source_model)
    blessing.set_string_custom_property(nodes.BASELINE_MODEL_PROPERTY, latest["model_uri"])
    blessing.set_string_custom_property("kept_from", latest["blessing_uri"])
    blessing.set_float_custom_property(metric, float(latest[metric]))
    blessing.set_int_custom_property(nodes.BLESSED_PROPERTY, 1)
    progress.step(f"the same models, settings and examples as {latest['model_uri']}, the last "
                  f"blessed recommender: kept with its verdict ({metric} {latest[metric]:.4f}), "
                  "not rebuilt")
