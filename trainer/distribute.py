"""Training beyond one process: the ``tf.distribute`` strategy that ``TF_CONFIG`` asks for.

A Kubeflow TFJob or a Vertex AI worker pool starts the same Trainer step in several
processes, each told its place in ``TF_CONFIG`` (``{"cluster": {"chief": [...], "worker":
[...]}, "task": {"type": "worker", "index": 0}}``). Each then trains one replica under
``MultiWorkerMirroredStrategy``: the same model, its gradients all-reduced every step, each
process reading its own shard of the examples (``shard``). One process, the chief, writes the
export and the warm-start weights; the others write theirs to a folder of their own that is
deleted (``output_dir``), because saving a mirrored model is a collective step all take part
in. Without ``TF_CONFIG`` nothing changes: the default strategy, one process.

The strategy has to be made before the process runs any TensorFlow op (TensorFlow configures
its collective ops once, at startup), so whatever starts a Trainer process calls
``initialize`` first: ``kubeflow/entrypoint.py``'s executor for a step, a test's worker.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any, Optional

from recsys_pipeline.errors import ConfigError, TrainingError

ENV = "TF_CONFIG"
# The task types MultiWorkerMirroredStrategy runs: synchronous replicas, no parameter servers.
TASK_TYPES = ("chief", "worker")

_strategy: Any = None


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in a ``TF_CONFIG`` cluster."""

    type: str
    index: int
    chiefs: int
    workers: int

    @property
    def replicas(self) -> int:
        return self.chiefs + self.workers

    @property
    def is_chief(self) -> bool:
        """The chief task, or worker 0 of a cluster without one (TensorFlow's rule)."""
        return self.type == "chief" or (self.chiefs == 0 and self.index == 0)


def task_from(environ: Mapping[str, str]) -> Optional[Task]:
    """This process's task from ``TF_CONFIG``; None when it is unset or names no cluster."""
    text = environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{ENV} does not parse as JSON ({e}): {text[:200]!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{ENV} is {text[:200]!r}; expected an object with \"cluster\" and "
                          "\"task\"")
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not cluster:
        return None  # TensorFlow's reading too: no cluster, one local process
    if not isinstance(cluster, dict) or not all(
            isinstance(hosts, list) for hosts in cluster.values()):
        raise ConfigError(f"{ENV}: \"cluster\" must map each task type to a list of "
                          f"host:port addresses, not {cluster!r}")
    others = sorted(set(cluster) - set(TASK_TYPES))
    if others:
        raise ConfigError(f"{ENV}: the cluster has {others[0]!r} tasks; the Trainers run "
                          f"synchronous replicas (MultiWorkerMirroredStrategy) of the task "
                          f"types {TASK_TYPES} only")
    task = task if isinstance(task, dict) else {}
    kind, index = str(task.get("type")), task.get("index", 0)
    if kind not in cluster:
        raise ConfigError(f"{ENV}: this task is {task!r}, whose type is not in the cluster "
                          f"({', '.join(sorted(cluster))})")
    if isinstance(index, bool) or not isinstance(index, int) or not \
            0 <= index < len(cluster[kind]):
        raise ConfigError(f"{ENV}: this task is {kind} {index!r}, outside the cluster's "
                          f"{len(cluster[kind])} {kind} task(s)")
    return Task(kind, index, len(cluster.get("chief", [])), len(cluster.get("worker", [])))


def initialize(environ: Mapping[str, str] = os.environ) -> Optional[Task]:
    """Makes the process's strategy (call first, before any TensorFlow op); returns its task.

    Without ``TF_CONFIG`` it makes nothing, and the Trainers use the default strategy."""
    global _strategy
    task = task_from(environ)
    if task is None or _strategy is not None:
        return task
    import tensorflow as tf

    try:
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        raise TrainingError(f"{ENV} names a cluster, but this process ran TensorFlow before "
                            f"its strategy was made ({e}): distribute.initialize() must run "
                            "at the start of the process") from None
    return task


def strategy() -> Any:
    """The strategy ``initialize`` made, else TensorFlow's default (one process)."""
    import tensorflow as tf

    if _strategy is None and task_from(os.environ) is not None:
        raise TrainingError(f"{ENV} names a cluster, but this process did not call "
                            "distribute.initialize() at its start: it would train alone")
    return _strategy if _strategy is not None else tf.distribute.get_strategy()


def task() -> Optional[Task]:
    """This process's task when it trains in a cluster (``initialize`` ran), else None."""
    return task_from(os.environ) if _strategy is not None else None


def shard(dataset: Any) -> Any:
    """The examples split between the replicas by example (a split's files are few, often
    one, so never by file); unchanged in one process."""
    if _strategy is None:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def output_dir(path: str) -> str:
    """Where this process writes an export meant for ``path``: ``path`` itself on the chief
    (or alone); on another worker the same name in a folder of its own beside ``path``'s
    (the warm-start weights go beside the export), which ``discard`` deletes."""
    current = task()
    if current is None or current.is_chief:
        return path
    parent, name = os.path.split(path.rstrip("/"))
    return os.path.join(parent, f".{current.type}-{current.index}", name)


def discard(written: str, path: str) -> None:
    """Deletes a non-chief worker's copy (``output_dir(path)``), never ``path`` itself."""
    if written != path:
        import tensorflow as tf

        folder = os.path.dirname(written)
        if tf.io.gfile.exists(folder):
            tf.io.gfile.rmtree(folder)
