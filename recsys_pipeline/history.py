"""Run history and lineage, read from the ML Metadata store of an output directory.

``recsys runs`` lists every run: when, the data it read, what ran or was cached, the gated
metrics, whether each model was blessed and which versions were pushed. ``recsys lineage
--version V`` walks MLMD's events upstream from a pushed version to everything behind it: the
pusher, the index, the Evaluator and its metrics, the Trainer and its hyperparameters, the
Transform graph, and the ExampleGen with the data it read.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import re
from typing import Any, Optional

from recsys_pipeline.errors import OutputError
from recsys_pipeline.local_runner import open_store, summarize_runs
from recsys_pipeline.pipeline.config import PipelineConfig

PUSHERS = {"ScannPusher": "retrieval", "BruteForcePusher": "retrieval_brute_force",
           "RankingPusher": "ranking", "SequentialPusher": "sequential"}


def _when(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


GATED_METRIC = re.compile(r"top_\d+_accuracy|root_mean_squared_error")


def _evaluation_value(summary, evaluator: str) -> Optional[float]:
    """The candidate's gated metric in a run's evaluation, if it can still be read."""
    from recsys_pipeline.model_summary import read_evaluation

    uri = summary.output(evaluator, "evaluation")
    if not uri or not os.path.isdir(uri):
        return None
    values = [v for (model, name), v in read_evaluation(uri).metrics.items()
              if model in ("", "candidate") and GATED_METRIC.fullmatch(name)]
    return values[0] if values else None


def run_rows(config: PipelineConfig, store=None, summaries=None) -> list[dict[str, Any]]:
    """One dict per run, oldest first (see module doc); ``summaries`` if already read."""
    if summaries is None:
        summaries = summarize_runs(config, store=store or open_store(config))
    rows = []
    for summary in summaries:
        states = collections.Counter(c.state for c in summary.components)
        blessed = {}
        for prefix in ("Retrieval", "Ranking", "Sequential"):
            props = summary.properties(f"{prefix}Evaluator", "blessing")
            blessed[prefix] = None if "blessed" not in props else props["blessed"] == 1
        pushed = {}
        for pusher, model in PUSHERS.items():
            props = summary.properties(pusher, "pushed_model")
            if props.get("pushed") == 1:
                pushed[model] = int(props["pushed_version"])
        rows.append({
            "run": summary.run_id, "started": summary.started,
            "data": _data(summary),
            "ran": states.get("ran", 0), "cached": states.get("cached", 0),
            "failed": states.get("failed", 0) + states.get("running", 0),
            "top_k_accuracy": _evaluation_value(summary, "RetrievalEvaluator"),
            "rmse": _evaluation_value(summary, "RankingEvaluator"),
            "blessed": blessed, "pushed": pushed,
            "seconds": {c.node_id: c.seconds for c in summary.components},
            "states": {c.node_id: c.state for c in summary.components},
        })
    return rows


def _data(summary) -> str:
    """'data_dir (fingerprint)' that the run's ExampleGen read."""
    for c in summary.components:
        if c.node_id == "MovieLensExampleGen" and c.execution_properties:
            props = c.execution_properties
            data = str(props.get("data_dir", "?"))
            if props.get("input_fingerprint"):
                data += f" ({str(props['input_fingerprint'])[:12]})"
            return data
    return "-"


def format_runs(rows: list[dict[str, Any]]) -> str:
    """The ``recsys runs`` table."""
    def num(v):
        return "-" if v is None else f"{v:.4f}"

    def yes(v):
        return "-" if v is None else ("yes" if v else "NO")

    lines = [f"{'started':<19}  {'run':<28} {'ran':>3} {'cached':>6} {'top-k':>7} "
             f"{'rmse':>7} {'blessed R/K':>11}  pushed versions; data"]
    for r in rows:
        pushed = ", ".join(f"{m}={v}" for m, v in sorted(r["pushed"].items())) or "none"
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        lines.append(
            f"{_when(r['started']):<19}  {r['run'][:28]:<28} {r['ran']:>3} {r['cached']:>6} "
            f"{num(r['top_k_accuracy']):>7} {num(r['rmse']):>7} "
            f"{yes(r['blessed']['Retrieval']) + '/' + yes(r['blessed']['Ranking']):>11}  "
            f"{pushed}; {r['data']}{failed}")
    if not rows:
        lines.append("(no runs recorded)")
    return "\n".join(lines)


# --- Lineage --------------------------------------------------------------------------------

def _node_of(store, execution) -> str:
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type == "node":
            return ctx.name.split(".", 1)[-1]
    return f"execution {execution.id}"


def _run_of(store, execution) -> str:
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type == "pipeline_run":
            return ctx.name
    return "?"


def lineage(config: PipelineConfig, version: int, model: Optional[str] = None,
            store=None) -> str:
    """Everything behind pushed version ``version`` (of ``model``), as indented text."""
    from ml_metadata.proto import metadata_store_pb2

    store = store or open_store(config)
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if a.custom_properties.get("pushed_version") is not None
              and a.custom_properties["pushed_version"].int_value == version]
    candidates = []
    for artifact in pushed:
        events = store.get_events_by_artifact_ids([artifact.id])
        producer = [e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
        if not producer:
            continue
        execution = store.get_executions_by_id(producer[:1])[0]
        name = PUSHERS.get(_node_of(store, execution), "?")
        if model in (None, name):
            candidates.append((name, artifact, execution))
    if not candidates:
        raise OutputError(f"no pushed version {version}"
                          f"{f' of {model}' if model else ''} in {config.metadata_path} "
                          "(recsys runs lists the pushed versions)")
    return "\n\n".join(_trace(store, *c) for c in candidates)


def _trace(store, model_name: str, pushed, pusher) -> str:
    from ml_metadata.proto import metadata_store_pb2

    Event = metadata_store_pb2.Event
    lines = [f"{model_name} version {pushed.custom_properties['pushed_version'].int_value}: "
             f"{pushed.custom_properties['pushed_destination'].string_value}",
             f"  pushed in run {_run_of(store, pusher)}"]
    seen = set()
    queue = collections.deque([(pusher, 1)])
    while queue:
        execution, depth = queue.popleft()
        if execution.id in seen:
            continue
        seen.add(execution.id)
        node = _node_of(store, execution)
        indent = "  " * depth
        lines.append(f"{indent}{node} (execution {execution.id}, "
                     f"{_when(execution.create_time_since_epoch / 1000)})")
        for key, value in sorted(_interesting(node, execution).items()):
            lines.append(f"{indent}  {key}: {value}")
        events = store.get_events_by_execution_ids([execution.id])
        if node.endswith("Evaluator"):
            lines += [f"{indent}  {line}" for line in _metrics(store, events)]
        inputs = [e for e in events if e.type == Event.INPUT]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in inputs])}
        for event in sorted(inputs, key=lambda e: e.path.steps[0].key if e.path.steps else ""):
            artifact = artifacts.get(event.artifact_id)
            if artifact is None:
                continue
            key = event.path.steps[0].key if event.path.steps else "?"
            lines.append(f"{indent}  <- {key}: {artifact.uri}{_artifact_note(artifact)}")
            producers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id])
                         if e.type == Event.OUTPUT]
            for parent in store.get_executions_by_id(producers[:1]):
                queue.append((parent, depth + 1))
    return "\n".join(lines)


def _metrics(store, events) -> list[str]:
    """The gated metric (and its baseline) from an Evaluator's ``evaluation`` output."""
    from ml_metadata.proto import metadata_store_pb2

    from recsys_pipeline.model_summary import BASELINE, read_evaluation

    outputs = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT
               and e.path.steps and e.path.steps[0].key == "evaluation"]
    lines = []
    for artifact in store.get_artifacts_by_id(outputs):
        if not os.path.isdir(artifact.uri):
            continue
        evaluation = read_evaluation(artifact.uri)
        for (model, name), value in sorted(evaluation.metrics.items()):
            if GATED_METRIC.fullmatch(name) and model != BASELINE:
                baseline = evaluation.value(name, BASELINE)
                lines.append(f"{name}: {value:.4f} (baseline "
                             f"{'-' if baseline is None else f'{baseline:.4f}'})")
        lines += [f"not blessed: {failure}" for failure in evaluation.failures]
    return lines


def _artifact_note(artifact) -> str:
    props = {k: v for k, v in _props(artifact).items()
             if k in ("blessed", "recall", "reason", "source_model")}
    return f"  {json.dumps(props, sort_keys=True)}" if props else ""


def _props(message) -> dict[str, Any]:
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in message.custom_properties.items()
            if value.WhichOneof("value") in ("int_value", "double_value", "string_value")}


def _interesting(node: str, execution) -> dict[str, Any]:
    """The execution properties that say what the step did (not every TFX internal)."""
    props = _props(execution)
    keep = {"MovieLensExampleGen": ("data_dir", "layout", "split_config", "input_fingerprint"),
            "Transform": ("custom_config",), "ScannIndexer": ("index_params",),
            "RetrievalEvaluator": ("value_bound",), "RankingEvaluator": ("value_bound",),
            "SequentialEvaluator": ("value_bound",)}
    if node.endswith("Trainer"):
        return {k: props[k] for k in ("run_fn", "custom_config", "epochs") if k in props}
    return {k: props[k] for k in keep.get(node, ()) if k in props}
