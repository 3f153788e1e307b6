"""RecsysEvaluator: TFX's Evaluator with a run-time bound and a file registry of blessings.

Three additions to TFX's Evaluator (same inputs, outputs and TFMA executor otherwise):

* ``value_bound``: the absolute bound of the gated metric (lower bound for top-k accuracy,
  upper bound for RMSE), replacing the one in ``eval_config``. It is its own execution
  property so that Kubeflow can expose it as a run-time parameter, which a proto field
  inside ``eval_config`` cannot be.
* ``blessing_registry``: a directory (local or ``gs://``) where each blessing is recorded as
  one small JSON file naming the blessed model, from which ``BlessedModelLookup`` finds the
  last blessed model on every target (open-source Kubeflow Pipelines cannot run TFX's
  MLMD-query Resolver).
* a baseline given as a *pointer* (a ``baseline.json`` written by ``BlessedModelLookup``) is
  followed to the model it names; a pointer naming no model means "no baseline yet".
* a candidate that *is* its baseline (the same model artifact, as on a rerun whose Trainer
  was cached) keeps the verdict its earlier evaluation gave, copied from the registry's
  record, without re-scoring (``kept``);
* a degenerate model is refused before TFMA runs: the ``score`` output of its ``evaluate``
  signature, on the first ``HEALTH_SAMPLE`` eval examples, must be finite and not constant
  (``degenerate``). A model scoring everything alike, or NaN, can otherwise meet a top-k bound
  or slip past a threshold that NaN compares false against. The refusal is a ``ListEvaluation``
  naming the model and the reason, and a NOT_BLESSED blessing carrying it.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, json_utils, path_utils

from recsys_pipeline.components import registry
from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.evaluation import EVAL_SIGNATURE, degenerate
from recsys_pipeline.serving.list_metrics import ListEvaluation
from recsys_pipeline.trainer import export
from recsys_pipeline.trainer.export import SCORE_OUTPUT

VALUE_BOUND_KEY = "value_bound"
REGISTRY_KEY = "blessing_registry"
HEALTH_SAMPLE = 1024  # eval examples whose scores must be finite and varied
_HEALTH_BATCH = 128  # a batch scores the whole catalogue: keep it small at 1M candidates


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


def record_blessing(registry_dir: str, model_uri: str, blessing_uri: str,
                    evaluation: Optional[dict] = None) -> str:
    """Records a blessing in the registry BlessedModelLookup reads; returns the record's path.
    ``evaluation``: where the evaluation is and what it was given (``kept`` reads it)."""
    return registry.record(registry_dir, {"model_uri": model_uri, "blessing_uri": blessing_uri,
                                          **(evaluation or {})})


def kept(registry_dir: str, model, baselines: list, output_dict, given: dict) -> bool:
    """When ``model`` is its own baseline, gives the outputs the verdict of the evaluation that
    blessed it (the registry's record), if that one was ``given`` the same examples and
    bound; False when there is none to keep."""
    if not registry_dir or not baselines or baselines[0].uri != model.uri:
        return False
    earlier = registry.newest(registry_dir, lambda r: r["model_uri"] == model.uri and r.get(
        "given") == given and fileio.exists(r.get("evaluation_uri", "")))
    if earlier is None:
        return False
    registry.copy_tree(earlier["evaluation_uri"],
                       output_dict[standard_component_specs.EVALUATION_KEY][0].uri)
    blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                        model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                        baselines[0].uri)
    io_utils.write_string_file(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME), "")
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     constants.BLESSED_VALUE)
    blessing.set_string_custom_property("kept_from", earlier["blessing_uri"])
    return True


def health_check(model_dir: str, examples_dir: str,
                 sample: int = HEALTH_SAMPLE) -> Optional[str]:
    """Why the model at ``model_dir`` is degenerate on the first ``sample`` raw examples of
    ``examples_dir`` (None: it is not, or its ``evaluate`` has no ``score`` output)."""
    loaded = tf.saved_model.load(model_dir)
    evaluate = loaded.signatures[EVAL_SIGNATURE]
    if SCORE_OUTPUT not in evaluate.structured_outputs:
        return None  # exported before scores were: TFMA's gate alone judges it
    paths = sorted(tf.io.gfile.glob(os.path.join(examples_dir, "*")))
    records = tf.data.TFRecordDataset(paths, compression_type="GZIP").take(sample)
    scores = [evaluate(examples=batch)[SCORE_OUTPUT].numpy().reshape(-1)
              for batch in records.batch(_HEALTH_BATCH)]
    if not scores:
        return None
    why = degenerate(np.concatenate(scores))
    if why is None:
        return None
    kind = export.read_metadata(model_dir).kind
    return f"the {kind} model is degenerate: {why} on {sum(map(len, scores))} eval examples"


def refuse(output_dict, model, reason: str) -> None:
    """A NOT_BLESSED blessing and an evaluation saying ``reason``, as TFX's Evaluator writes
    its own (``current_model`` properties, the marker file)."""
    ListEvaluation({}, [reason]).write(
        output_dict[standard_component_specs.EVALUATION_KEY][0].uri)
    blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                        model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     constants.NOT_BLESSED_VALUE)
    blessing.set_string_custom_property(nodes.REASON_PROPERTY, reason)


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor with the additions of the module doc."""

    def Do(self, input_dict, output_dict, exec_properties):
        model = input_dict[standard_component_specs.MODEL_KEY][0]
        baselines = registry.follow_pointers(
            list(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []))
        for baseline in baselines:  # one with other names (movie ones) is refused, not misread
            export.read_metadata(path_utils.serving_model_path(baseline.uri))
        given = {"examples": [a.uri for a in input_dict[standard_component_specs.EXAMPLES_KEY]],
                 "value_bound": exec_properties.get(VALUE_BOUND_KEY)}
        if kept(exec_properties.get(REGISTRY_KEY), model, baselines, output_dict, given):
            return
        reason = health_check(
            path_utils.serving_model_path(model.uri),
            artifact_utils.get_split_uri(input_dict[standard_component_specs.EXAMPLES_KEY],
                                         "eval"))
        if reason:
            refuse(output_dict, model, reason)
            return
        input_dict = dict(input_dict)
        input_dict[standard_component_specs.BASELINE_MODEL_KEY] = baselines
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
        if registry_dir and blessing.get_int_custom_property(nodes.BLESSED_PROPERTY) == 1:
            record_blessing(registry_dir, model.uri, blessing.uri, {
                "evaluation_uri": output_dict[standard_component_specs.EVALUATION_KEY][0].uri,
                "given": given})


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
