"""TFMA EvalConfigs of the two gates, and every gated metric's name.

Retrieval: the export's ``evaluate`` signature emits ``top_k_hit`` per eval example (1.0 when
the rated item is in the model's top k over the whole catalogue); TFMA's MeanPrediction of it
is the top-k accuracy. Ranking: TFMA's RMSE of the ``rating`` output against ``user_rating``.
Each metric has an absolute bound and a change threshold against the baseline (the last
blessed model); TFX's Evaluator ignores the latter when there is no baseline yet. The
recommender's NDCG is not a TFMA metric: its gate computes it over whole lists
(``serving.list_metrics``, ``components/recommender.py``).
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np
import tensorflow_model_analysis as tfma

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import EvaluationConfig
from recsys_pipeline.transform import features as F

EVAL_SIGNATURE = nodes.EVAL_SIGNATURE
RMSE_METRIC = nodes.METRICS[nodes.RMSE].name_format


def degenerate(scores: np.ndarray) -> Optional[str]:
    """Why a model's scores are unusable (None: they are not): any non-finite, or all alike.
    Every gate refuses such a model whatever its metric reads (a constant model ties
    everywhere; NaN compares false against any threshold)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(scores):
        return "it gave no scores"
    bad = int(len(scores) - np.isfinite(scores).sum())
    if bad:
        return f"{bad} of its {len(scores)} scores are NaN or infinite"
    if len(scores) > 1 and float(np.ptp(scores)) == 0.0:
        return f"it scores everything alike ({scores[0]:g})"
    return None


def top_k_metric(k: int) -> str:
    """Name of the retrieval metric in TFMA's results."""
    return nodes.METRICS[nodes.TOP_K_ACCURACY].name_format.format(k=k)


def metric_name(branch: nodes.Branch, ev: EvaluationConfig) -> str:
    """The name of a branch's gated metric in its evaluation (TFMA's, or the list gate's)."""
    return nodes.METRICS[branch.metric].name(ev)


def is_gated_metric(branch: Optional[nodes.Branch], name: str) -> bool:
    """Whether metric ``name`` is ``branch``'s gated metric (any branch's, for None)."""
    kinds = [branch.metric] if branch else list(nodes.METRICS)
    return any(nodes.METRICS[kind].matches(name) for kind in kinds)


def _gate(prediction_key: str, metric_class: str, metric_name: str,
          threshold: tfma.MetricThreshold) -> tfma.EvalConfig:
    """One model output, its gated metric (and the example count), on the overall slice."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, label_key=F.LABEL,
                                    prediction_key=prediction_key)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name=metric_class, config=json.dumps({"name": metric_name}),
                              threshold=threshold),
        ])])


def eval_config(branch: nodes.Branch, ev: EvaluationConfig) -> tfma.EvalConfig:
    """The TFMA EvalConfig of a trained branch's gate, by its metric."""
    builders = {nodes.TOP_K_ACCURACY: retrieval_eval_config, nodes.RMSE: ranking_eval_config}
    if branch.metric not in builders:
        raise ValueError(f"the {branch.name} branch's metric {branch.metric!r} is not a TFMA "
                         f"metric (the gates evaluate {sorted(builders)})")
    return builders[branch.metric](ev)


def retrieval_eval_config(ev: EvaluationConfig) -> tfma.EvalConfig:
    return _gate(nodes.HIT_OUTPUT, "MeanPrediction", top_k_metric(ev.top_k), tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": ev.min_top_k_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -ev.top_k_tolerance})))


def ranking_eval_config(ev: EvaluationConfig) -> tfma.EvalConfig:
    return _gate(nodes.RATING_OUTPUT, "RootMeanSquaredError", RMSE_METRIC, tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": ev.max_rmse}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": ev.rmse_tolerance})))
