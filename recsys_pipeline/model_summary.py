"""The end-of-run model table: per served model, its gate metric, bound, baseline, blessing
and the pushed version (or why nothing was pushed), read from the run's artifacts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from recsys_pipeline.pipeline.config import PipelineConfig

CANDIDATE, BASELINE = "candidate", "baseline"


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
    """Metrics and validation failures from an Evaluator's ``evaluation`` artifact."""
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
    if props.get("pushed") == 1:
        return str(props.get("pushed_destination", "?"))
    if props.get("reason"):
        return f"not pushed: {props['reason']}"
    return f"not pushed: the pusher {state or 'did not run'}"


def run_bound(summary, evaluator: str) -> Optional[float]:
    """The absolute bound the run's Evaluator applied (its ``value_bound``), if recorded."""
    for c in summary.components:
        if c.node_id == evaluator and "value_bound" in c.execution_properties:
            return float(c.execution_properties["value_bound"])
    return None


def model_rows(summary, config: PipelineConfig) -> list[ModelRow]:
    """Rows for the ScaNN, brute-force and ranking models of ``summary``'s run."""
    from recsys_pipeline.pipeline.evaluation import RMSE_METRIC, top_k_metric
    from recsys_pipeline.trainer import serving

    ev = config.evaluation
    states = {c.node_id: c.state for c in summary.components}
    rows = []
    gates = (
        ("Retrieval", top_k_metric(ev.top_k), f">= {ev.min_top_k_accuracy:g}",
         ((serving.SCANN_MODEL, "ScannPusher"), (serving.BRUTE_FORCE_MODEL, "BruteForcePusher"))),
        ("Ranking", RMSE_METRIC, f"<= {ev.max_rmse:g}",
         ((serving.RANKING_MODEL, "RankingPusher"),)),
    )
    if "SequentialEvaluator" in states:  # the GRU4Rec branch is in this run's DAG
        gates += (("Sequential", top_k_metric(ev.top_k),
                   f">= {ev.min_sequential_top_k_accuracy:g}",
                   ((serving.SEQUENTIAL_MODEL, "SequentialPusher"),)),)
    for prefix, metric, bound, pushers in gates:
        evaluator = f"{prefix}Evaluator"
        used = run_bound(summary, evaluator)
        if used is not None:  # the bound this run's Evaluator applied (a run-time value)
            bound = f"{bound.split()[0]} {used:g}"
        uri = summary.output(evaluator, "evaluation")
        evaluation = read_evaluation(uri) if uri and states.get(evaluator) in (
            "ran", "cached") else Evaluation({}, [])
        blessing = summary.properties(evaluator, "blessing")
        blessed = None if "blessed" not in blessing else blessing["blessed"] == 1
        for model, pusher in pushers:
            props = summary.properties(pusher, "pushed_model")
            pushed = _pushed(props, states.get(pusher))
            if blessed is False and evaluation.failures:
                pushed = "not pushed: " + "; ".join(evaluation.failures)
            row_blessed = blessed
            index = summary.properties("ScannIndexer", "index_blessing")
            if model == serving.SCANN_MODEL and "blessed" in index:
                row_blessed = index["blessed"] == 1
            rows.append(ModelRow(model, metric, evaluation.value(metric), bound,
                                 evaluation.value(metric, BASELINE), row_blessed, pushed))
            if model == serving.SCANN_MODEL:
                if "recall" in index:
                    rows.append(ModelRow("", f"ScaNN recall@{config.index.recall_k}",
                                         index["recall"], f">= {config.index.min_recall:g}",
                                         None, None, ""))
    return rows


def format_model_table(rows: list[ModelRow]) -> str:
    def num(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.4f}"

    def yes(v: Optional[bool]) -> str:
        return "" if v is None else ("yes" if v else "NO")

    header = (f"  {'model':<22} {'metric':<24} {'value':>7} {'bound':>8} {'baseline':>8} "
              f"{'blessed':>7}  pushed")
    lines = ["Models:", header]
    for r in rows:
        lines.append(f"  {r.model:<22} {r.metric:<24} {num(r.value):>7} {r.bound:>8} "
                     f"{num(r.baseline):>8} {yes(r.blessed):>7}  {r.pushed}")
    return "\n".join(lines)
