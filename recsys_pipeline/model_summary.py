"""The end-of-run model rows: per served model, its gate metric, bound, baseline, blessing
and the pushed version (or why nothing was pushed), read from the run's artifacts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving.list_metrics import (
    BASELINE,
    BRUTE_FORCE,
    CANDIDATE,
    ListEvaluation,
)


@dataclasses.dataclass
class ModelRow:
    model: str
    metric: str
    value: Optional[float]
    bound: str
    baseline: Optional[float]
    blessed: Optional[bool]
    pushed: str  # version directory, or why nothing was pushed


@dataclasses.dataclass
class Evaluation:
    """Overall-slice metrics of one Evaluator run and the reasons it did not bless."""

    metrics: dict[tuple[str, str], float]  # (model name, metric name) -> value
    failures: list[str]

    def value(self, metric: str, model: str = CANDIDATE) -> Optional[float]:
        # A run without baseline has one unnamed model.
        return self.metrics.get((model, metric), self.metrics.get(("", metric))
                                if model == CANDIDATE else None)


def read_evaluation(uri: str) -> Evaluation:
    """Metrics and validation failures from an Evaluator's ``evaluation`` artifact: TFMA's
    results, or the recommender's ``ListEvaluation``."""
    if ListEvaluation.exists(uri):
        found = ListEvaluation.read(uri)
        return Evaluation({(model, name): value for model, values in found.metrics.items()
                           for name, value in values.items()}, list(found.failures))
    import tensorflow_model_analysis as tfma

    metrics: dict[tuple[str, str], float] = {}
    for per_slice in tfma.load_metrics(uri):
        if per_slice.slice_key.single_slice_keys:
            continue
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            metrics[(kv.key.model_name, kv.key.name)] = kv.value.double_value.value
    failures = []
    result = tfma.load_validation_result(uri)
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            key, value = failure.metric_key, failure.metric_value.double_value.value
            if key.is_diff:
                failures.append(f"{key.name} differs from the last blessed model's by "
                                f"{value:+.4f}, beyond the tolerance")
            else:
                failures.append(f"{key.name} {value:.4f} is outside its bound")
    if not result.validation_ok and not failures:
        failures.append("TFMA validation failed: " + str(result.validation_details))
    return Evaluation(metrics, failures)


def _pushed(props: dict[str, Any], state: Optional[str]) -> str:
    if props.get(nodes.PUSHED_PROPERTY) == 1:
        destination = str(props.get(nodes.PUSHED_DESTINATION_PROPERTY, "?"))
        reason = props.get(nodes.REASON_PROPERTY)
        return f"{destination} ({reason})" if reason else destination
    if props.get(nodes.REASON_PROPERTY):
        return f"not pushed: {props[nodes.REASON_PROPERTY]}"
    return f"not pushed: the pusher {state or 'did not run'}"


def run_bound(summary, evaluator: str) -> Optional[float]:
    """The absolute bound the run's Evaluator applied (its ``value_bound``), if recorded."""
    for c in summary.components:
        if c.node_id == evaluator and "value_bound" in c.execution_properties:
            return float(c.execution_properties["value_bound"])
    return None


def variant_of(push: nodes.Push) -> str:
    """The model name an evaluation gives a push's model: the candidate, or for the
    recommender's brute-force variant its own (``components/recommender.py``)."""
    return BRUTE_FORCE if push.model_name == nodes.RECOMMENDER_BRUTE_FORCE_MODEL else CANDIDATE


def model_rows(summary, config: PipelineConfig) -> list[ModelRow]:
    """One row per served model of every branch in ``summary``'s run (and the index recall)."""
    from recsys_pipeline.pipeline.evaluation import metric_name

    ev = config.evaluation
    states = {c.node_id: c.state for c in summary.components}
    index = summary.properties(nodes.SCANN_INDEXER, "index_blessing")
    rows = []
    for branch in nodes.BRANCHES:
        if branch.optional and branch.evaluator not in states:
            continue  # an opt-in branch that is not in this run's DAG
        metric = metric_name(branch, ev)
        used = run_bound(summary, branch.evaluator)  # the bound the run applied (run-time)
        bound = f"{branch.bound_text} {getattr(ev, branch.bound) if used is None else used:g}"
        uri = summary.output(branch.evaluator, "evaluation")
        evaluation = read_evaluation(uri) if uri and states.get(branch.evaluator) in (
            "ran", "cached") else Evaluation({}, [])
        blessing = summary.properties(branch.evaluator, "blessing")
        blessed = nodes.verdict(blessing)
        for push in branch.pushes:
            props = summary.properties(push.node_id, "pushed_model")
            pushed = _pushed(props, states.get(push.node_id))
            if blessed is False and evaluation.failures:
                pushed = "not pushed: " + "; ".join(evaluation.failures)
            row_blessed = blessed
            indexed = branch is nodes.RETRIEVAL and push.needs_scann
            if indexed and nodes.BLESSED_PROPERTY in index:
                row_blessed = index[nodes.BLESSED_PROPERTY] == 1
            variant = variant_of(push)
            # The baseline is scored as the candidate is: a variant beside it has none.
            baseline = evaluation.value(metric, BASELINE) if variant == CANDIDATE else None
            rows.append(ModelRow(push.model_name, metric, evaluation.value(metric, variant),
                                 bound, baseline, row_blessed, pushed))
            if indexed and "recall" in index:
                rows.append(ModelRow("", f"ScaNN recall@{config.index.recall_k}",
                                     index["recall"], f">= {config.index.min_recall:g}",
                                     None, None, ""))
    return rows
