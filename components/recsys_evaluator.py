"""RecsysEvaluator: TFX's Evaluator with a run-time bound and a file registry of blessings.

Three additions to TFX's Evaluator (same inputs, outputs and TFMA executor otherwise):

* ``value_bound``: the absolute bound of the gated metric (lower bound for top-k accuracy,
  upper bound for RMSE), replacing the one in ``eval_config``. It is its own execution
  property so that Kubeflow can expose it as a run-time parameter, which a proto field
  inside ``eval_config`` cannot be.
* ``blessing_registry``: a directory (local or ``gs://``) where each blessing is recorded as
  one small JSON file naming the blessed model. Open-source Kubeflow Pipelines cannot run
  TFX's MLMD-query Resolver (its backend answers "resolver not implemented yet"), so on that
  target ``BlessedModelLookup`` finds the last blessed model from this registry instead.
* a baseline given as a *pointer* (a ``baseline.json`` written by ``BlessedModelLookup``) is
  followed to the model it names; a pointer naming no model means "no baseline yet", exactly
  as an empty Resolver output does locally.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from recsys_pipeline.errors import ConfigError

VALUE_BOUND_KEY = "value_bound"
REGISTRY_KEY = "blessing_registry"
POINTER_FILE = "baseline.json"


class RecsysEvaluatorSpec(types.ComponentSpec):
    """EvaluatorSpec plus the run-time bound and the blessing registry."""

    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS,
                  VALUE_BOUND_KEY: ExecutionParameter(type=float, optional=True),
                  REGISTRY_KEY: ExecutionParameter(type=str, optional=True),
                  # The hash of this component's code (pipeline.fingerprint): keys the cache.
                  "source_fingerprint": ExecutionParameter(type=str, optional=True)}
    INPUTS = dict(standard_component_specs.EvaluatorSpec.INPUTS)
    OUTPUTS = dict(standard_component_specs.EvaluatorSpec.OUTPUTS)


def with_value_bound(eval_config: tfma.EvalConfig, bound: float) -> tfma.EvalConfig:
    """A copy of ``eval_config`` whose value thresholds use ``bound``."""
    patched = tfma.EvalConfig()
    patched.CopyFrom(eval_config)
    found = 0
    for spec in patched.metrics_specs:
        for metric in spec.metrics:
            value = metric.threshold.value_threshold
            if not metric.threshold.HasField("value_threshold"):
                continue
            if value.HasField("lower_bound"):
                value.lower_bound.value = bound
            if value.HasField("upper_bound"):
                value.upper_bound.value = bound
            found += 1
    if found != 1:
        raise ConfigError(f"value_bound needs exactly one metric with a value threshold in the "
                          f"eval_config; found {found}")
    return patched


def record_blessing(registry: str, model_uri: str, blessing_uri: str) -> str:
    """Writes one registry record (a single small object: atomic on GCS and locally)."""
    fileio.makedirs(registry)
    name = f"{time.time_ns():020d}.json"
    path = os.path.join(registry, name)
    tmp = os.path.join(registry, f".{name}.tmp")
    with fileio.open(tmp, "w") as f:
        f.write(json.dumps({"model_uri": model_uri, "blessing_uri": blessing_uri,
                            "recorded_at": time.time()}))
    fileio.rename(tmp, path, overwrite=True)
    return path


def latest_blessed(registry: str) -> Optional[dict]:
    """The newest registry record, or None when nothing has been blessed yet."""
    if not fileio.exists(registry):
        return None
    names = sorted(n.rstrip("/") for n in fileio.listdir(registry)
                   if n.endswith(".json") and not n.startswith("."))
    for name in reversed(names):
        with fileio.open(os.path.join(registry, name)) as f:
            record = json.loads(f.read())
        # A blessed model whose files were deleted cannot be a baseline: try the one before.
        if fileio.exists(record["model_uri"]):
            return record
    return None


def _follow_pointers(baselines: list) -> list:
    resolved = []
    for artifact in baselines:
        pointer = os.path.join(artifact.uri, POINTER_FILE)
        if not fileio.exists(pointer):
            resolved.append(artifact)
            continue
        with fileio.open(pointer) as f:
            target = json.loads(f.read()).get("model_uri")
        if target:
            model = standard_artifacts.Model()
            model.uri = target
            # The pointer's id stands for the model: Kubeflow's entrypoint maps ids back to
            # the artifact names it was given, and knows only the pointer's.
            model.id = artifact.id
            resolved.append(model)
    return resolved


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor with the three additions of the module doc."""

    def Do(self, input_dict, output_dict, exec_properties):
        input_dict = dict(input_dict)
        key = standard_component_specs.BASELINE_MODEL_KEY
        input_dict[key] = _follow_pointers(list(input_dict.get(key) or []))
        exec_properties = dict(exec_properties)
        bound = exec_properties.pop(VALUE_BOUND_KEY, None)
        registry = exec_properties.pop(REGISTRY_KEY, None)
        if bound is not None:
            config = tfma.EvalConfig()
            json_format.Parse(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], config)
            exec_properties[standard_component_specs.EVAL_CONFIG_KEY] = json_format.MessageToJson(
                with_value_bound(config, float(bound)), sort_keys=True)
        super().Do(input_dict, output_dict, exec_properties)
        blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
        if registry and blessing.get_int_custom_property("blessed") == 1:
            model = input_dict[standard_component_specs.MODEL_KEY][0]
            record_blessing(registry, model.uri, blessing.uri)


class RecsysEvaluator(base_beam_component.BaseBeamComponent):
    """Evaluates ``model`` with TFMA against ``baseline_model`` and blesses it (module doc)."""

    SPEC_CLASS = RecsysEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: types.BaseChannel, eval_config: tfma.EvalConfig,
                 value_bound=None, blessing_registry: Optional[str] = None,
                 source_fingerprint: str = ""):
        spec = RecsysEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            eval_config=eval_config, example_splits=json_utils.dumps(None),
            fairness_indicator_thresholds=json_utils.dumps(None),
            value_bound=value_bound, blessing_registry=blessing_registry,
            source_fingerprint=source_fingerprint,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)
