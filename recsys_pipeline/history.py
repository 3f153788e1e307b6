"""Run history and lineage, read from the ML Metadata store of an output directory.

``recsys runs`` lists every run: when, the data it read, what ran or was cached, the gated
metrics, whether each model was blessed and which versions were pushed. ``recsys lineage
--version V`` walks MLMD's events upstream from a pushed version to everything behind it: the
pusher, the index, the Evaluator and its metrics, the Trainer and its hyperparameters, the
Transform graph, and the ExampleGen with the data it read.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Optional

from recsys_pipeline import metadata
from recsys_pipeline.errors import OutputError
from recsys_pipeline.metadata import open_store, summarize_runs
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.tables import when


@dataclasses.dataclass
class RunRow:
    """One run as ``recsys runs`` and the report's history show it."""

    run: str
    started: Optional[float]
    data: str  # what ExampleGen read: "data_dir (fingerprint)"
    ran: int
    cached: int
    failed: int
    gated: dict[str, Optional[float]]  # branch name -> its gated metric (None: not evaluated)
    # branch name -> the served model's gated metric in the same evaluation (its baseline)
    served: dict[str, Optional[float]]
    blessed: dict[str, Optional[bool]]  # branch name -> blessed (None: not evaluated)
    pushed: dict[str, int]  # served model -> the version this run pushed
    seconds: dict[str, Optional[float]]  # node id -> wall time
    states: dict[str, str]  # node id -> ran / cached / failed / ...
    span: Optional[int] = None  # the span its ExampleGen ingested (span folders only)


def gated_values(summary, branch: nodes.Branch) -> tuple[Optional[float], Optional[float]]:
    """The candidate's and the baseline's gated metric in a run's evaluation, where it can
    still be read (the baseline's: None without one)."""
    from recsys_pipeline.model_summary import BASELINE, CANDIDATE, read_evaluation
    from recsys_pipeline.pipeline.evaluation import is_gated_metric

    uri = summary.output(branch.evaluator, "evaluation")
    if not uri or not os.path.isdir(uri):
        return None, None
    evaluation = read_evaluation(uri)
    names = [name for (_, name) in evaluation.metrics if is_gated_metric(branch, name)]
    if not names:
        return None, None
    return evaluation.value(names[0], CANDIDATE), evaluation.value(names[0], BASELINE)


def run_rows(config: PipelineConfig, store=None, summaries=None) -> list[RunRow]:
    """One row per run, oldest first (see module doc); ``summaries`` if already read."""
    if summaries is None:
        summaries = summarize_runs(config, store=store or open_store(config))
    rows = []
    for summary in summaries:
        states = collections.Counter(c.state for c in summary.components)
        blessed = {}
        for branch in nodes.BRANCHES:
            props = summary.properties(branch.evaluator, "blessing")
            blessed[branch.name] = nodes.verdict(props)
        pushed = {}
        for push in nodes.PUSHES:
            props = summary.properties(push.node_id, "pushed_model")
            if props.get(nodes.PUSHED_PROPERTY) == 1:
                pushed[push.model_name] = int(props["pushed_version"])
        gated = {b.name: gated_values(summary, b) for b in nodes.BRANCHES}
        rows.append(RunRow(
            run=summary.run_id, started=summary.started, data=_data(summary),
            ran=states.get("ran", 0), cached=states.get("cached", 0),
            failed=states.get("failed", 0) + states.get("running", 0),
            gated={name: v[0] for name, v in gated.items()},
            served={name: v[1] for name, v in gated.items()},
            blessed=blessed, pushed=pushed,
            seconds={c.node_id: c.seconds for c in summary.components},
            states={c.node_id: c.state for c in summary.components}, span=_span(summary)))
    return rows


def _span(summary) -> Optional[int]:
    span = _example_gen_properties(summary).get("span")
    return None if span is None else int(span)


def _example_gen_properties(summary) -> dict[str, Any]:
    for c in summary.components:
        if c.node_id == nodes.EXAMPLE_GEN and c.execution_properties:
            return c.execution_properties
    return {}


def _data(summary) -> str:
    """'data_dir (fingerprint)' that the run's ExampleGen read, its span and window."""
    props = _example_gen_properties(summary)
    if not props:
        return "-"
    data = str(props.get("data_dir", "?"))
    if props.get("span") is not None:
        data += f" span {props['span']}"
    if props.get("input_fingerprint"):
        data += f" ({str(props['input_fingerprint'])[:12]})"
    window = summary.properties(nodes.SPAN_WINDOW, "window").get("window_spans")
    if window:
        data += f", window {window}"
    return data


# --- Lineage --------------------------------------------------------------------------------

def lineage(config: PipelineConfig, version: int, model: Optional[str] = None,
            store=None) -> str:
    """Everything behind pushed version ``version`` (of ``model``), as indented text."""
    store = store or open_store(config)
    candidates = []
    for artifact in metadata.pushed_artifacts(store, version):
        execution = metadata.producer(store, artifact)
        if execution is None:
            continue
        push = nodes.push_of_node(metadata.node_of(store, execution))
        name = push.model_name if push else "?"
        if model in (None, name):
            candidates.append((name, artifact, execution))
    if not candidates:
        raise OutputError(f"no pushed version {version}"
                          f"{f' of {model}' if model else ''} in {config.metadata_path} "
                          "(recsys runs lists the pushed versions)")
    return "\n\n".join(_trace(store, *c) for c in candidates)


def _trace(store, model_name: str, pushed, pusher) -> str:
    lines = [f"{model_name} version {pushed.custom_properties['pushed_version'].int_value}: "
             f"{pushed.custom_properties[nodes.PUSHED_DESTINATION_PROPERTY].string_value}",
             f"  pushed in run {metadata.run_of(store, pusher)}"]
    seen = set()
    queue = collections.deque([(pusher, 1)])
    while queue:
        execution, depth = queue.popleft()
        if execution.id in seen:
            continue
        seen.add(execution.id)
        node = metadata.node_of(store, execution)
        indent = "  " * depth
        lines.append(f"{indent}{node} (execution {execution.id}, "
                     f"{when(execution.create_time_since_epoch / 1000)})")
        for key, value in sorted(_interesting(node, execution).items()):
            lines.append(f"{indent}  {key}: {value}")
        if node in {b.evaluator for b in nodes.BRANCHES}:
            lines += [f"{indent}  {line}" for line in _metrics(
                metadata.outputs(store, execution, "evaluation"))]
        for key, artifact in metadata.inputs(store, execution):
            lines.append(f"{indent}  <- {key}: {artifact.uri}{_artifact_note(artifact)}")
            parent = metadata.producer(store, artifact)
            if parent is not None:
                queue.append((parent, depth + 1))
    return "\n".join(lines)


def _metrics(evaluations) -> list[str]:
    """The gated metric (and its baseline) from an Evaluator's ``evaluation`` outputs."""
    from recsys_pipeline.model_summary import BASELINE, CANDIDATE, read_evaluation
    from recsys_pipeline.pipeline.evaluation import is_gated_metric

    lines = []
    for artifact in evaluations:
        if not os.path.isdir(artifact.uri):
            continue
        evaluation = read_evaluation(artifact.uri)
        for (model, name), value in sorted(evaluation.metrics.items()):
            if is_gated_metric(None, name) and model != BASELINE:
                baseline = evaluation.value(name, BASELINE)
                # A variant beside the candidate (the recommender's brute-force one) says so.
                variant = "" if model in ("", CANDIDATE) else f" ({model})"
                lines.append(f"{name}{variant}: {value:.4f} (baseline "
                             f"{'-' if baseline is None or variant else f'{baseline:.4f}'})")
        lines += [f"not blessed: {failure}" for failure in evaluation.failures]
    return lines


def _artifact_note(artifact) -> str:
    props = {k: v for k, v in metadata.properties(artifact).items()
             if k in (nodes.BLESSED_PROPERTY, "recall", nodes.REASON_PROPERTY,
                      nodes.SOURCE_MODEL_PROPERTY, "window_spans", "window_ratings",
                      "window_split")}
    return f"  {json.dumps(props, sort_keys=True)}" if props else ""


def _interesting(node: str, execution) -> dict[str, Any]:
    """The execution properties that say what the step did (not every TFX internal)."""
    props = metadata.properties(execution)
    keep = {nodes.EXAMPLE_GEN: ("data_dir", "span", "layout", "split_config",
                                "input_fingerprint"),
            nodes.SCHEMA_GEN: ("schema_file",),
            nodes.TRANSFORM: ("custom_config",), nodes.SCANN_INDEXER: ("index_params",),
            nodes.SPAN_WINDOW: ("window_spans", "split_kind")}
    for branch in nodes.BRANCHES:
        if branch.trainer:
            keep[branch.trainer] = ("run_fn", "custom_config", "epochs")
        keep[branch.evaluator] = ("value_bound", "tolerance", "candidates", "rank_weight", "k")
    return {k: props[k] for k in keep.get(node, ()) if k in props}
