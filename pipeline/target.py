"""Where the DAG runs, and all that differs because of it: one ``Target`` per runner.

The components and edges are the same everywhere (``pipeline.create_pipeline``). What is not:

* paths: locally everything is under ``output_dir``; on Kubeflow and Vertex AI the pipeline
  root, the serving volume, the data and the curated schemas are where ``[kubeflow]`` says;
* how the previous span window is found: TFX's Resolver locally and on Vertex AI; open-source
  Kubeflow Pipelines cannot run Resolvers, so there SpanWindow reads its own registry
  (components/span_window.py). A baseline (the last blessed model) is found one way on every
  target: a lookup of the blessing registry the Evaluators write
  (components/blessed_model_lookup.py), whose cache only a local run can key;
* the knobs a scheduler changes between runs: plain values locally, run-time parameters on
  Kubeflow (``kubeflow.runtime_parameters``);
* the metadata store: LocalDagRunner's SQLite file; orchestrators bring their own.

As TFX's template keeps its runners apart from ``pipeline.py``, each runner builds its Target
(``Target.local``, ``Target.kubeflow``) and hands it to ``create_pipeline``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import (
    RUNTIME_PARAMETERS,
    SPAN_PARAMETER,
    PipelineConfig,
)

TARGETS = ("local", "kfp", "vertex")


@dataclasses.dataclass(frozen=True)
class Target:
    """What the DAG needs to know about where it runs (see the module doc)."""

    name: str  # one of TARGETS
    pipeline_root: str
    serving_dir: str  # where the Pushers publish: a path on a volume
    data_dir: Optional[str]  # the data's location as the runner sees it (a default on Kubeflow)
    project_dir: str  # where the curated schemas are read ("": this install)
    resolvers: bool  # whether TFX Resolvers run here (not on open-source KFP): span windows
    runtime_parameters: bool  # the scheduler's knobs as RuntimeParameters
    spanned: bool  # the data has span folders
    metadata_path: Optional[str]  # LocalDagRunner's SQLite store (None: the orchestrator's)

    @classmethod
    def local(cls, config: PipelineConfig) -> "Target":
        """LocalDagRunner's: everything under ``output_dir``."""
        return cls(name="local", pipeline_root=config.pipeline_root,
                   serving_dir=os.path.abspath(_on_a_volume(config.serving_dir, local=True)),
                   data_dir=config.data.data_dir, project_dir="", resolvers=True,
                   runtime_parameters=False, spanned=config.data.span is not None,
                   metadata_path=config.metadata_path)

    @classmethod
    def kubeflow(cls, config: PipelineConfig, vertex: bool = False) -> "Target":
        """Open-source Kubeflow Pipelines' (or, with ``vertex``, Vertex AI Pipelines')."""
        kf = config.kubeflow
        return cls(name="vertex" if vertex else "kfp", pipeline_root=kf.pipeline_root,
                   serving_dir=_on_a_volume(config.kubeflow_serving_dir, local=False),
                   data_dir=kf.data_dir or config.data.data_dir, project_dir=kf.project_dir,
                   resolvers=vertex, runtime_parameters=kf.runtime_parameters,
                   spanned=config.data.span is not None or kf.span_folders,
                   metadata_path=None)

    @classmethod
    def named(cls, config: PipelineConfig, name: str) -> "Target":
        if name not in TARGETS:
            raise ConfigError(f"unknown pipeline target {name!r}; expected one of {TARGETS}")
        return cls.local(config) if name == "local" else cls.kubeflow(config, name == "vertex")

    @property
    def local_run(self) -> bool:
        """Whether the runner can look at the data now (it does so, to fingerprint it)."""
        return self.name == "local"

    def registry(self, kind: str, node_id: str) -> str:
        """The folder under the pipeline root where ``node_id`` keeps records of ``kind``
        (blessings, spans, windows, indexes), read by later runs on every target."""
        return os.path.join(self.pipeline_root, kind, node_id)

    def values(self, config: PipelineConfig) -> dict[str, Any]:
        """The knobs a scheduler changes between runs, by run-time parameter name: plain
        values, or RuntimeParameters defaulting to them."""
        values: dict[str, Any] = {"data_dir": self.data_dir}
        for b in nodes.BRANCHES:
            if b.epochs_parameter:
                values[b.epochs_parameter] = getattr(config, b.name).epochs
            if b.bound_parameter:
                values[b.bound_parameter] = getattr(config.evaluation, b.bound)
        if not self.local_run and self.spanned:
            values[SPAN_PARAMETER] = "latest" if config.data.span is None else str(
                config.data.span)
        if not self.runtime_parameters:
            return values
        from tfx import v1 as tfx

        return {name: tfx.dsl.experimental.RuntimeParameter(
                    name=name, ptype=RUNTIME_PARAMETERS[name], default=values[name])
                for name in RUNTIME_PARAMETERS if name in values}

    def baseline(self, branch: nodes.Branch):
        """The node that finds ``branch``'s last blessed model (output ``model``): the same
        lookup on every target; only a local run, built afresh each time, can key its cache
        on the registry (components/blessed_model_lookup.py)."""
        from recsys_pipeline.components import blessed_model_lookup

        blessings = self.registry("blessings", branch.evaluator)
        return blessed_model_lookup.BlessedModelLookup(
            blessing_registry=blessings,
            cache_key=blessed_model_lookup.cache_key(blessings) if self.local_run else "",
        ).with_id(branch.baseline)

    def previous_window(self):
        """The Resolver of the last run's span window, or None where SpanWindow reads its
        own registry instead."""
        if not self.resolvers:
            return None
        from tfx import v1 as tfx

        return tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            window=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                   producer_component_id=nodes.SPAN_WINDOW,
                                   output_key="window"),
        ).with_id(nodes.PREVIOUS_WINDOW)

    def metadata_connection_config(self):
        if self.metadata_path is None:
            return None
        from tfx import v1 as tfx

        return tfx.orchestration.metadata.sqlite_metadata_connection_config(self.metadata_path)


def _on_a_volume(serving_dir: str, local: bool) -> str:
    """``serving_dir``, unless it is an object store's URL (or, where the steps run in pods,
    not an absolute path): a version is published by renaming a directory."""
    if "://" in serving_dir or not (local or serving_dir.startswith("/")):
        raise ConfigError(f"serving.base_dir is {serving_dir!r}: pushes need a path on a volume "
                          "(a version is published by renaming a directory, which object "
                          "stores cannot do atomically); on Kubeflow see kubeflow.volume_claim")
    return serving_dir
