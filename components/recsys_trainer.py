"""RecsysTrainer: TFX's Trainer plus a ``catalogue`` input channel.

The retrieval model scores every item, and both exports look item features up by id at
request time, so the Trainers need ExampleGen's item catalogue. TFX's Trainer has no such
input; this component is its spec with one more channel, run by TFX's own GenericExecutor,
which hands the catalogue split's location to ``run_fn`` as ``fn_args.catalogue_uri``. The
orchestrator resolves and records it like any other input (lineage, caching), rather than a
path hidden in ``custom_config``.

It also takes ``epochs`` as its own execution property, overriding ``hparams.epochs`` in
``custom_config``: Kubeflow can then expose it as a run-time parameter, which a value inside
the ``custom_config`` JSON cannot be.

``base_model`` (TFX's own optional input) is the branch's baseline: BlessedModelLookup's
pointer to its last blessed model, which is followed here as the Evaluator follows it.
``run_fn`` warm-starts from it (``trainer/warm_start.py``); what it did lands on the model
artifact as the ``warm_start`` property, which the run summary shows.
"""

from __future__ import annotations

from typing import Any, Optional

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils, path_utils

from recsys_pipeline.components.registry import follow_pointers
from recsys_pipeline.data import splits
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.trainer import export
from recsys_pipeline.trainer.warm_start import WarmStart

CATALOGUE_KEY = "catalogue"
EPOCHS_KEY = "epochs"


class RecsysTrainerSpec(types.ComponentSpec):
    """TrainerSpec plus the catalogue channel."""

    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS,
                  EPOCHS_KEY: ExecutionParameter(type=int, optional=True)}
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              CATALOGUE_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = dict(standard_component_specs.TrainerSpec.OUTPUTS)
    TYPE_ANNOTATION = standard_component_specs.TrainerSpec.TYPE_ANNOTATION


class Executor(trainer_executor.GenericExecutor):
    """GenericExecutor that also passes the catalogue split's URI (and ``epochs``) to run_fn."""

    def Do(self, input_dict, output_dict, exec_properties):
        input_dict = dict(input_dict)
        key = standard_component_specs.BASE_MODEL_KEY
        input_dict[key] = follow_pointers(list(input_dict.get(key) or []))
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        start = export.read_metadata(path_utils.serving_model_dir(model.uri)).warm_start
        if start:
            model.set_string_custom_property(nodes.WARM_START_PROPERTY,
                                             WarmStart.from_dict(start).describe())

    def _GetFnArgs(self, input_dict, output_dict, exec_properties):
        exec_properties = dict(exec_properties)
        epochs = exec_properties.pop(EPOCHS_KEY, None)
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        fn_args.catalogue_uri = artifact_utils.get_split_uri(
            input_dict[CATALOGUE_KEY], splits.CATALOGUE)
        if epochs is not None:
            fn_args.custom_config = {**fn_args.custom_config,
                                     "hparams": {**fn_args.custom_config["hparams"],
                                                 "epochs": int(epochs)}}
        return fn_args


class RecsysTrainer(base_component.BaseComponent):
    """Trains with ``run_fn`` (an import path) on Transform output plus the catalogue."""

    SPEC_CLASS = RecsysTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 catalogue: types.BaseChannel, run_fn: str,
                 custom_config: Optional[dict[str, Any]] = None, epochs=None,
                 base_model: Optional[types.BaseChannel] = None):
        spec = RecsysTrainerSpec(
            examples=examples,
            base_model=base_model,
            transform_graph=transform_graph,
            catalogue=catalogue,
            run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config or {}),
            epochs=epochs,
            train_args=trainer_pb2.TrainArgs(),
            eval_args=trainer_pb2.EvalArgs(),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        super().__init__(spec=spec)
