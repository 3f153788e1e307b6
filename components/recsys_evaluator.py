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

from typing import Optional

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from recsys_pipeline.components import registry
from recsys_pipeline.errors import ConfigError

VALUE_BOUND_KEY = "value_bound"
REGISTRY_KEY = "blessing_registry"


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


def record_blessing(registry_dir: str, model_uri: str, blessing_uri: str) -> str:
    """Records a blessing in the registry BlessedModelLookup reads; returns the record's path."""
    return registry.record(registry_dir, {"model_uri": model_uri, "blessing_uri": blessing_uri})


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor with the three additions of the module doc."""

    def Do(self, input_dict, output_dict, exec_properties):
        input_dict = dict(input_dict)
        key = standard_component_specs.BASELINE_MODEL_KEY
        input_dict[key] = registry.follow_pointers(list(input_dict.get(key) or []))
        exec_properties = dict(exec_properties)
        bound = exec_properties.pop(VALUE_BOUND_KEY, None)
        registry_dir = exec_properties.pop(REGISTRY_KEY, None)
        if bound is not None:
            config = tfma.EvalConfig()
            json_format.Parse(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], config)
            exec_properties[standard_component_specs.EVAL_CONFIG_KEY] = json_format.MessageToJson(
                with_value_bound(config, float(bound)), sort_keys=True)
        super().Do(input_dict, output_dict, exec_properties)
        blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
        if registry_dir and blessing.get_int_custom_property("blessed") == 1:
            model = input_dict[standard_component_specs.MODEL_KEY][0]
            record_blessing(registry_dir, model.uri, blessing.uri)


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
