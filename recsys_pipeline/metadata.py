"""Reading an output directory's ML Metadata store: runs, executions, artifacts, lineage.

MLMD is the authority on what ran, what was cached and what each step produced; the run
summary, ``recsys runs``, ``recsys lineage``, the report and the benchmarks all read it
through this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from typing import Any, Optional

from recsys_pipeline.errors import OutputError
from recsys_pipeline.pipeline.config import PipelineConfig


@dataclasses.dataclass
class ComponentResult:
    node_id: str
    state: str  # "ran", "cached", "failed", "running", "not run"
    seconds: Optional[float]
    outputs: dict[str, list[str]]  # output key -> artifact URIs
    # output key -> custom properties of its (first) artifact, e.g. blessed, pushed, reason
    properties: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # the execution's properties as TFX recorded them (exec properties, e.g. data_dir)
    execution_properties: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: list[ComponentResult]
    started: Optional[float] = None  # Unix seconds

    def output(self, node_id: str, key: str) -> Optional[str]:
        for c in self.components:
            if c.node_id == node_id and c.outputs.get(key):
                return c.outputs[key][0]
        return None

    def properties(self, node_id: str, key: str) -> dict[str, Any]:
        for c in self.components:
            if c.node_id == node_id:
                return c.properties.get(key, {})
        return {}


def check_metadata_store(path: str) -> None:
    """Fails with what to do if ``path`` exists but is not a sound SQLite database."""

    if not os.path.exists(path):
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            status = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        status = str(e)
    if status != "ok":
        raise OutputError(
            f"the ML Metadata store {path} is corrupt ({status}). It holds the run history "
            f"and cache: restore it from a backup, or move it aside (mv {path} {path}.corrupt) "
            "to start a new history -- the artifacts under tfx/ and the serving directory are "
            "not touched either way.")


def open_store(config: PipelineConfig):
    """The run's sqlite MLMD store; an OutputError if there is none (nothing ran here)."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    if not os.path.exists(config.metadata_path):
        raise OutputError(f"no ML Metadata store at {config.metadata_path}: nothing has run "
                          "with this output directory (--output-dir)")
    check_metadata_store(config.metadata_path)
    return metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(config.metadata_path))


def properties(message) -> dict[str, Any]:
    """A metadata message's (artifact's, execution's) int, float and string custom properties."""
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in message.custom_properties.items()
            if value.WhichOneof("value") in ("int_value", "double_value", "string_value")}


def summarize_runs(config: PipelineConfig, node_ids: Optional[list[str]] = None,
                   seconds: Optional[dict[str, float]] = None,
                   store=None) -> list[RunSummary]:
    """Every run of this pipeline in MLMD, oldest first.

    Without ``node_ids``, a run lists the nodes that have an execution in it, in execution
    order; wall times come from ``seconds`` or else from the executions' timestamps.
    """
    from ml_metadata.proto import metadata_store_pb2

    store = store or open_store(config)
    runs = sorted((c for c in store.get_contexts_by_type("pipeline_run")
                   if _belongs(store, c, config.pipeline_name)),
                  key=lambda c: (c.create_time_since_epoch, c.id))
    E = metadata_store_pb2.Execution
    summaries = []
    for run in runs:
        executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
        by_node: dict[str, metadata_store_pb2.Execution] = {}
        for execution in executions:
            for ctx in store.get_contexts_by_execution(execution.id):
                prefix = f"{config.pipeline_name}."
                if ctx.type == "node" and ctx.name.startswith(prefix):
                    by_node[ctx.name[len(prefix):]] = execution
        results = []
        for node_id in node_ids or list(by_node):
            execution = by_node.get(node_id)
            if execution is None:
                results.append(ComponentResult(node_id, "not run", None, {}))
                continue
            state = {E.COMPLETE: "ran", E.CACHED: "cached", E.FAILED: "failed",
                     E.RUNNING: "running"}.get(execution.last_known_state, "unknown")
            outputs: dict[str, list[str]] = {}
            artifact_properties: dict[str, dict[str, Any]] = {}
            events = [e for e in store.get_events_by_execution_ids([execution.id])
                      if e.type in (metadata_store_pb2.Event.OUTPUT,
                                    metadata_store_pb2.Event.DECLARED_OUTPUT)]
            artifacts = {a.id: a for a in
                         store.get_artifacts_by_id([e.artifact_id for e in events])}
            for event in events:
                key = event.path.steps[0].key if event.path.steps else "?"
                if event.artifact_id in artifacts:
                    artifact = artifacts[event.artifact_id]
                    outputs.setdefault(key, []).append(artifact.uri)
                    artifact_properties.setdefault(key, properties(artifact))
            took = (seconds or {}).get(node_id)
            if took is None and seconds is None and execution.last_update_time_since_epoch:
                took = (execution.last_update_time_since_epoch
                        - execution.create_time_since_epoch) / 1000
            results.append(ComponentResult(node_id, state, took, outputs, artifact_properties,
                                           properties(execution)))
        summaries.append(RunSummary(run.name, results, run.create_time_since_epoch / 1000))
    return summaries


def ingested_spans(config: PipelineConfig, store=None) -> dict[int, str]:
    """{span: id of the run that ingested it}: spans whose ExampleGen completed (or was
    answered from the cache) in this output directory. No store yet: none."""
    from recsys_pipeline.pipeline import nodes

    if store is None and not os.path.exists(config.metadata_path):
        return {}
    found: dict[int, str] = {}
    for run in summarize_runs(config, store=store):
        for c in run.components:
            span = c.execution_properties.get("span")
            if c.node_id == nodes.EXAMPLE_GEN and c.state in ("ran", "cached") and \
                    span is not None:
                found[int(span)] = run.run_id
    return found


NO_NEW_SPAN_TYPE = "recsys.NoNewSpan"


@dataclasses.dataclass(frozen=True)
class SpanAttempt:
    """A ``recsys run`` that found every span ingested and ran nothing."""

    data_dir: str
    spans: str  # the span numbers it found, comma-separated
    attempted_at: float  # Unix seconds


def record_no_new_span(config: PipelineConfig, data_dir: str, numbers: list[int]) -> None:
    """Leaves a completed execution of type ``NO_NEW_SPAN_TYPE`` in the pipeline's context,
    so that the store says a scheduled run came and found nothing (no pipeline run starts)."""
    import time

    from ml_metadata.proto import metadata_store_pb2 as pb

    store = open_store(config)
    kind = pb.ExecutionType(name=NO_NEW_SPAN_TYPE)
    for name, value_type in (("data_dir", pb.STRING), ("spans", pb.STRING),
                             ("attempted_at", pb.DOUBLE)):
        kind.properties[name] = value_type
    type_id = store.put_execution_type(kind, can_add_fields=True)
    execution = pb.Execution(type_id=type_id, last_known_state=pb.Execution.COMPLETE)
    execution.properties["data_dir"].string_value = data_dir
    execution.properties["spans"].string_value = ",".join(map(str, numbers))
    execution.properties["attempted_at"].double_value = time.time()
    contexts = [c for c in store.get_contexts_by_type("pipeline")
                if c.name == config.pipeline_name]
    store.put_execution(execution, artifact_and_events=[], contexts=contexts)


def no_new_span_attempts(config: PipelineConfig, store=None) -> list[SpanAttempt]:
    """The recorded attempts that found no new span, oldest first."""
    store = store or open_store(config)
    found = []
    for e in store.get_executions_by_type(NO_NEW_SPAN_TYPE):
        found.append(SpanAttempt(e.properties["data_dir"].string_value,
                                 e.properties["spans"].string_value,
                                 e.properties["attempted_at"].double_value))
    return sorted(found, key=lambda a: a.attempted_at)


def summarize_run(config: PipelineConfig, node_ids: list[str],
                  seconds: Optional[dict[str, float]] = None) -> Optional[RunSummary]:
    """The newest run of this pipeline in MLMD (wall times from ``seconds``)."""
    runs = summarize_runs(config, node_ids, seconds or {})
    return runs[-1] if runs else None


def _belongs(store, run_context, pipeline_name: str) -> bool:
    parents = store.get_parent_contexts_by_context(run_context.id)
    return any(p.type == "pipeline" and p.name == pipeline_name for p in parents)


def node_of(store, execution) -> str:
    """The pipeline node an execution ran (its node id)."""
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type == "node":
            return ctx.name.split(".", 1)[-1]
    return f"execution {execution.id}"


def run_of(store, execution) -> str:
    """The pipeline run an execution belongs to."""
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type == "pipeline_run":
            return ctx.name
    return "?"


def _key(event) -> str:
    return event.path.steps[0].key if event.path.steps else "?"


def producer(store, artifact):
    """The execution that output ``artifact``, or None."""
    from ml_metadata.proto import metadata_store_pb2

    ids = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id])
           if e.type == metadata_store_pb2.Event.OUTPUT]
    found = store.get_executions_by_id(ids[:1])
    return found[0] if found else None


def inputs(store, execution) -> list[tuple[str, Any]]:
    """(input key, artifact) of everything ``execution`` consumed, by key."""
    from ml_metadata.proto import metadata_store_pb2

    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.INPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return [(_key(e), artifacts[e.artifact_id]) for e in sorted(events, key=_key)
            if e.artifact_id in artifacts]


def outputs(store, execution, key: str) -> list[Any]:
    """The artifacts ``execution`` output under ``key``."""
    from ml_metadata.proto import metadata_store_pb2

    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
           if e.type == metadata_store_pb2.Event.OUTPUT and _key(e) == key]
    return list(store.get_artifacts_by_id(ids))


def pushed_artifacts(store, version: int) -> list[Any]:
    """The PushedModel artifacts that record pushed version ``version``."""
    return [a for a in store.get_artifacts_by_type("PushedModel")
            if a.custom_properties.get("pushed_version") is not None
            and a.custom_properties["pushed_version"].int_value == version]


def dag_edges(store, run_id: str) -> set[tuple[str, str]]:
    """(producer node, consumer node) for every artifact consumed in the run."""
    from ml_metadata.proto import metadata_store_pb2

    Event = metadata_store_pb2.Event
    (run,) = [c for c in store.get_contexts_by_type("pipeline_run") if c.name == run_id]
    edges = set()
    for execution in store.get_executions_by_context(run.id):
        consumer = node_of(store, execution)
        consumed = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                    if e.type == Event.INPUT]
        producers = [e.execution_id for e in store.get_events_by_artifact_ids(consumed)
                     if e.type == Event.OUTPUT]
        for parent in store.get_executions_by_id(sorted(set(producers))):
            edges.add((node_of(store, parent), consumer))
    return edges
