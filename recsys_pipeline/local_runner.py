"""Local runner: LocalDagRunner with an sqlite MLMD store, progress lines and a run summary.

The runner only builds the pipeline from config (``create_pipeline``) and runs it. Progress is
read from TFX's own log records (component started / cached / finished); the summary is read
afterwards from ML Metadata, which is the authority on what ran and what was cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, Optional, TextIO

from recsys_pipeline import model_summary
from recsys_pipeline.errors import OutputError
from recsys_pipeline.pipeline.config import PipelineConfig


def check_output_dir(path: str) -> None:
    """Fails early, with the path, if the output directory cannot be created or written."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OutputError(
            f"output directory {path!r} is not writable ({e.strerror}). Choose another with "
            "--output-dir DIR or fix its permissions."
        ) from None


LOCK_FILE = ".recsys-run.lock"


@contextlib.contextmanager
def run_lock(output_dir: str) -> Iterator[None]:
    """Holds the output directory's run lock; refuses, naming the holder's pid, if taken.

    Two runs on one output directory would interleave writes to the same MLMD store and
    serving directory. The lock is an flock on a file there: the kernel releases it when the
    holder exits, however it exits (kill -9 included), so a crash never leaves it stuck.
    """
    path = os.path.join(output_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputError(
                f"another recsys run (pid {holder}) is using {output_dir}: wait for it to "
                "finish, or use another --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class ProgressReporter(logging.Handler):
    """Turns TFX's per-component log records into one progress line per component."""

    def __init__(self, node_ids: list[str], stream: TextIO):
        super().__init__(level=logging.INFO)
        self._ids = node_ids
        self._stream = stream
        self._current: Optional[str] = None
        self._started = 0.0
        self._cached = False
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = record.msg, record.args or ()
        if msg == "Component %s is running." and args:
            self._current, self._started, self._cached = args[0], time.monotonic(), False
            n = self._ids.index(args[0]) + 1 if args[0] in self._ids else 0
            self._print(f"[{n}/{len(self._ids)}] {args[0]} ...")
        elif msg == "A cached execution %d is used.":
            self._cached = True
        elif msg == "Component %s is finished." and args and args[0] == self._current:
            status = "cached" if self._cached else "done"
            self.seconds[args[0]] = time.monotonic() - self._started
            self._print(f"      {args[0]}: {status} in {self.seconds[args[0]]:.1f}s")
            self._current = None

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)


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
    import sqlite3

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


def _properties(message) -> dict[str, Any]:
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
            properties: dict[str, dict[str, Any]] = {}
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
                    properties.setdefault(key, _properties(artifact))
            took = (seconds or {}).get(node_id)
            if took is None and seconds is None and execution.last_update_time_since_epoch:
                took = (execution.last_update_time_since_epoch
                        - execution.create_time_since_epoch) / 1000
            results.append(ComponentResult(node_id, state, took, outputs, properties,
                                           _properties(execution)))
        summaries.append(RunSummary(run.name, results, run.create_time_since_epoch / 1000))
    return summaries


def summarize_run(config: PipelineConfig, node_ids: list[str],
                  seconds: Optional[dict[str, float]] = None) -> Optional[RunSummary]:
    """The newest run of this pipeline in MLMD (wall times from ``seconds``)."""
    runs = summarize_runs(config, node_ids, seconds or {})
    return runs[-1] if runs else None


def _belongs(store, run_context, pipeline_name: str) -> bool:
    parents = store.get_parent_contexts_by_context(run_context.id)
    return any(p.type == "pipeline" and p.name == pipeline_name for p in parents)


def format_summary(summary: RunSummary, config: PipelineConfig) -> str:
    """Human-readable table of what ran, what was cached and where the outputs are."""
    lines = [f"Run {summary.run_id}", f"  {'component':<22} {'status':<8} {'time':>8}"]
    for c in summary.components:
        secs = f"{c.seconds:.1f}s" if c.seconds is not None else "-"
        lines.append(f"  {c.node_id:<22} {c.state:<8} {secs:>8}")
    ran = sum(c.state == "ran" for c in summary.components)
    cached = sum(c.state == "cached" for c in summary.components)
    lines.append(f"  {ran} ran, {cached} cached, {len(summary.components)} components")
    transformed = summary.output("Transform", "transformed_examples")
    graph = summary.output("Transform", "transform_graph")
    lines.append("Outputs:")
    if transformed:
        lines.append(f"  transformed examples: {transformed}")
    if graph:
        lines.append(f"  transform graph:      {graph}")
        lines.append(f"  vocabularies:         {os.path.join(graph, 'transform_fn', 'assets')}")
    examples = summary.output("MovieLensExampleGen", "examples")
    if examples:
        lines.append(f"  raw examples:         {examples}")
    lines.append(f"  pipeline root:        {config.pipeline_root}")
    lines.append(f"  MLMD store:           {config.metadata_path}")
    lines.append(f"  serving base:         {config.serving_dir} (models.config, "
                 "models.stock.config)")
    lines.append(model_summary.format_model_table(model_summary.model_rows(summary, config)))
    return "\n".join(lines)


RUN_TEMP_PREFIX = "recsys-run-"
RUN_TEMP_OWNER = ".owner.lock"


def _remove_abandoned_run_temp_dirs(parent: str) -> None:
    """Removes the temp directories of runs that were killed (kill -9, the OOM killer).

    A live run holds an flock on its directory's owner file; the kernel drops it when the
    run's process dies, however it dies. A directory without the file is still being set up.
    """
    for name in os.listdir(parent):
        if not name.startswith(RUN_TEMP_PREFIX):
            continue
        path = os.path.join(parent, name)
        try:
            fd = os.open(os.path.join(path, RUN_TEMP_OWNER), os.O_RDONLY)
        except OSError:  # no owner file yet, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its run is alive
        else:
            # Best effort: another run's leftovers must never fail this run.
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


@contextlib.contextmanager
def run_temp_dir() -> Iterator[str]:
    """A temp directory for one run (``tempfile`` and ``$TMPDIR``), removed when it ends.

    TFX and Beam leave files in the temp directory and never remove them: each Beam
    component's executor builds a 41 MB sdist of TFX in a fresh ``mkdtemp()`` whenever Beam
    arguments are set, the defaults included (``tfx/utils/dependency_utils.py``), and Beam
    pipelines leave staging directories. Owned by the run, they go when it does, failed or
    not; a killed run's directory goes at the start of the next run.
    """
    parent = tempfile.gettempdir()
    _remove_abandoned_run_temp_dirs(parent)
    temp = tempfile.TemporaryDirectory(prefix=RUN_TEMP_PREFIX, dir=parent)
    fd = os.open(os.path.join(temp.name, RUN_TEMP_OWNER), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held for the run's life (released by the kernel on death)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = temp.name
    try:
        yield temp.name
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved_env
        try:
            temp.cleanup()  # still locked: no other run's sweep races this removal
        except OSError as e:  # the run's outcome stands; the next run's sweep retries
            logging.getLogger(__name__).warning(
                "could not remove the run's temp directory %s: %s", temp.name, e)
        os.close(fd)


def run_pipeline(config: PipelineConfig, stream: TextIO = sys.stdout) -> RunSummary:
    """Runs the whole pipeline with LocalDagRunner; returns the MLMD summary of the run."""
    from tfx import v1 as tfx

    from recsys_pipeline.pipeline.pipeline import create_pipeline

    check_output_dir(config.output_dir)
    check_metadata_store(config.metadata_path)
    pipeline = create_pipeline(config)
    node_ids = [c.id for c in pipeline.components]
    progress = ProgressReporter(node_ids, stream)
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(progress)
    try:
        with run_temp_dir():
            tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        absl_logger.removeHandler(progress)
    summary = summarize_run(config, node_ids, progress.seconds)
    assert summary is not None, "MLMD holds no run of this pipeline after a successful run"
    return summary


def recsys_command(*args: str) -> list[str]:
    """This environment's ``recsys`` console script with ``args``, to run in a new process."""
    return [os.path.join(os.path.dirname(sys.executable), "recsys"), *args]


def run_first(output_dir: str, stream: TextIO = sys.stderr) -> None:
    """``recsys run --output-dir output_dir`` in a new process (for tools that need a run)."""
    print(f"nothing to use under {output_dir}: running `recsys run` first", file=stream,
          flush=True)
    subprocess.run(recsys_command("run", "--output-dir", output_dir), check=True)

