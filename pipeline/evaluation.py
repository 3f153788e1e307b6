"""TFMA EvalConfigs of the two gates.

Retrieval: the export's ``evaluate`` signature emits ``top_k_hit`` per eval example (1.0 when
the rated movie is in the model's top k over the whole catalogue); TFMA's MeanPrediction of it
is the top-k accuracy. Ranking: TFMA's RMSE of the ``rating`` output against ``user_rating``.
Each metric has an absolute bound and a change threshold against the baseline (the last
blessed model); TFX's Evaluator ignores the latter when there is no baseline yet.
"""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from recsys_pipeline.pipeline.config import EvaluationConfig
from recsys_pipeline.transform import features as F

EVAL_SIGNATURE = "evaluate"
RMSE_METRIC = "root_mean_squared_error"


def top_k_metric(k: int) -> str:
    """Name of the retrieval metric in TFMA's results."""
    return f"top_{k}_accuracy"


def retrieval_eval_config(ev: EvaluationConfig) -> tfma.EvalConfig:
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": ev.min_top_k_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -ev.top_k_tolerance}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, label_key=F.LABEL,
                                    prediction_key="top_k_hit")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="MeanPrediction",
                              config=json.dumps({"name": top_k_metric(ev.top_k)}),
                              threshold=threshold),
        ])])


def ranking_eval_config(ev: EvaluationConfig) -> tfma.EvalConfig:
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": ev.max_rmse}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": ev.rmse_tolerance}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, label_key=F.LABEL,
                                    prediction_key="rating")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="RootMeanSquaredError",
                              config=json.dumps({"name": RMSE_METRIC}), threshold=threshold),
        ])])
