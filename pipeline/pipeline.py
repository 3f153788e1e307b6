"""``create_pipeline(config)``: the TFX DAG, shared by every runner (local and Kubeflow).

    MovieLensExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema)
      -> ExampleValidator -> AnomalyGate -> Transform
    Transform -> RetrievalTrainer -> RetrievalEvaluator (vs RetrievalBaseline) -> ScannIndexer
      -> ScannPusher (ScaNN model) and BruteForcePusher (the pure-TF export)
    Transform -> RankingTrainer -> RankingEvaluator (vs RankingBaseline) -> RankingPusher
    [sequential] enabled: Transform -> SequentialTrainer (GRU4Rec) -> SequentialEvaluator
      (vs SequentialBaseline) -> SequentialPusher

The baselines are Resolvers with TFX's latest-blessed-model strategy, restricted to the
matching Trainer and Evaluator -- except on open-source Kubeflow Pipelines, which cannot run
them: there, BlessedModelLookup takes their place (see components/blessed_model_lookup.py).

``target`` says where the DAG will run: "local" (LocalDagRunner: paths from ``output_dir``,
SQLite MLMD), "kfp" or "vertex" (paths from ``[kubeflow]``, and the knobs a scheduler changes
between runs become run-time parameters). The components and edges are the same for all.
No runner code lives here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from importlib import resources

from tfx import v1 as tfx

from recsys_pipeline.components.anomaly_gate import AnomalyGate
from recsys_pipeline.components.blessed_model_lookup import BlessedModelLookup
from recsys_pipeline.components.movielens_example_gen import MovieLensExampleGen
from recsys_pipeline.components.recsys_evaluator import RecsysEvaluator
from recsys_pipeline.components.recsys_trainer import RecsysTrainer
from recsys_pipeline.components.scann_indexer import ScannIndexer
from recsys_pipeline.components.serving_pusher import ServingPusher
from recsys_pipeline.data import movielens
from recsys_pipeline.errors import ConfigError, DataError
from recsys_pipeline.pipeline import evaluation
from recsys_pipeline.pipeline.config import DATASET_LAYOUTS, PipelineConfig
from recsys_pipeline.trainer import serving
from recsys_pipeline.trainer.hparams import to_custom_config

PREPROCESSING_FN = "recsys_pipeline.transform.preprocessing.preprocessing_fn"
RETRIEVAL_RUN_FN = "recsys_pipeline.trainer.retrieval_trainer.run_fn"
RANKING_RUN_FN = "recsys_pipeline.trainer.ranking_trainer.run_fn"
SEQUENTIAL_RUN_FN = "recsys_pipeline.trainer.sequential_trainer.run_fn"
TARGETS = ("local", "kfp", "vertex")
# Run-time parameters of the compiled Kubeflow pipeline (name -> type).
RUNTIME_PARAMETERS = {"data_dir": str, "retrieval_epochs": int, "ranking_epochs": int,
                      "min_top_k_accuracy": float, "max_rmse": float}


def schema_path(layout: str, project_dir: str = "") -> str:
    """The curated schema for a layout (demographics or not), in this install or under
    ``project_dir`` (the project's folder inside the Kubeflow image)."""
    name = "movielens.pbtxt" if layout == "csv" else "movielens_demographics.pbtxt"
    if project_dir:
        return os.path.join(project_dir, "pipeline", "schemas", name)
    return str(resources.files("recsys_pipeline.pipeline").joinpath("schemas", name))


def source_fingerprint(package: str) -> str:
    """Hash of a package's Python sources.

    Transform is given its preprocessing_fn by import path, so TFX's cache key would not see
    code edits; this hash goes into the component's custom_config to make it.
    """
    h = hashlib.sha256()
    root = resources.files(package)
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            h.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return h.hexdigest()[:16]


def resolve_layout(config: PipelineConfig, target: str = "local") -> tuple[str, str]:
    """(layout, input fingerprint) for the configured data directory.

    For Kubeflow the data is read at run time, where the compiler cannot look: the layout is
    ``data.layout``, or the one of ``data.dataset`` when that is "auto"; no fingerprint.
    """
    if target != "local":
        if config.data.layout != "auto":
            return config.data.layout, ""
        return DATASET_LAYOUTS.get(config.data.dataset, "csv"), ""
    data_dir = config.data.data_dir
    if not data_dir:
        raise ConfigError("data.data_dir is not set: the runner must resolve the dataset "
                          "directory (--data-dir, $RECSYS_DATA_DIR, cache or download) first.")
    try:
        dataset = movielens.detect_layout(data_dir, config.data.layout)
    except DataError:
        if config.data.layout != "auto":
            # A remote or not-yet-existing location (e.g. a Kubeflow runtime parameter):
            # trust the explicit layout; ExampleGen checks it when it runs.
            return config.data.layout, ""
        raise
    return dataset.spec.kind, movielens.fingerprint(dataset)


def _runtime_values(config: PipelineConfig, target: str) -> dict:
    """The run-time-changeable knobs: plain values locally, RuntimeParameters on Kubeflow."""
    kf = config.kubeflow
    values = {"data_dir": (kf.data_dir or config.data.data_dir) if target != "local"
              else config.data.data_dir,
              "retrieval_epochs": config.retrieval.epochs,
              "ranking_epochs": config.ranking.epochs,
              "min_top_k_accuracy": config.evaluation.min_top_k_accuracy,
              "max_rmse": config.evaluation.max_rmse}
    if target == "local" or not kf.runtime_parameters:
        return values
    return {name: tfx.dsl.experimental.RuntimeParameter(
                name=name, ptype=RUNTIME_PARAMETERS[name], default=values[name])
            for name in RUNTIME_PARAMETERS}


def create_pipeline(config: PipelineConfig, target: str = "local") -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline described by ``config`` for ``target`` (see module doc)."""
    config.validate()
    if target not in TARGETS:
        raise ConfigError(f"unknown pipeline target {target!r}; expected one of {TARGETS}")
    layout, fingerprint = resolve_layout(config, target)
    local = target == "local"
    pipeline_root = config.pipeline_root if local else config.kubeflow.pipeline_root
    serving_dir = os.path.abspath(config.serving_dir) if local else config.kubeflow_serving_dir
    if not serving_dir.startswith("/"):
        raise ConfigError(f"serving.base_dir is {serving_dir!r}: pushes need a path on a volume "
                          "(a version is published by renaming a directory, which object "
                          "stores cannot do atomically); on Kubeflow see kubeflow.volume_claim")
    values = _runtime_values(config, target)

    example_gen = MovieLensExampleGen(
        data_dir=values["data_dir"],
        layout=layout,
        split_config=config.split_config_json(),
        max_orphan_fraction=config.data.max_orphan_fraction,
        input_fingerprint=fingerprint,
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=schema_path(layout, "" if local else config.kubeflow.project_dir))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            "timestamp_buckets": config.transform.timestamp_buckets,
            "source_fingerprint": source_fingerprint("recsys_pipeline.transform"),
        },
    )
    # Transform consumes ExampleGen's output directly; this edge makes it wait for the gate.
    transform.add_upstream_node(anomaly_gate)
    trainer_code = source_fingerprint("recsys_pipeline.trainer")

    def trainer(name: str, run_fn: str, custom_config: dict, epochs) -> RecsysTrainer:
        return RecsysTrainer(
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            catalogue=example_gen.outputs["catalogue"],
            run_fn=run_fn,
            custom_config={**custom_config, "source_fingerprint": trainer_code},
            epochs=epochs,
        ).with_id(name)

    def gate(name: str, model_trainer: RecsysTrainer, eval_config, bound) -> tuple:
        evaluator_id = f"{name}Evaluator"
        registry = os.path.join(pipeline_root, "blessings", evaluator_id)
        if target == "kfp":
            baseline = BlessedModelLookup(blessing_registry=registry).with_id(f"{name}Baseline")
        else:
            baseline = tfx.dsl.Resolver(
                strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
                model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                                      producer_component_id=model_trainer.id,
                                      output_key="model"),
                model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                               producer_component_id=evaluator_id,
                                               output_key="blessing"),
            ).with_id(f"{name}Baseline")
        evaluator = RecsysEvaluator(
            examples=example_gen.outputs["examples"],
            model=model_trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            eval_config=eval_config,
            value_bound=bound,
            blessing_registry=registry,
        ).with_id(evaluator_id)
        return baseline, evaluator

    def pusher(name: str, model, blessing, model_name: str) -> ServingPusher:
        return ServingPusher(model=model, model_blessing=blessing, serving_dir=serving_dir,
                             model_name=model_name).with_id(name)

    retrieval_trainer = trainer("RetrievalTrainer", RETRIEVAL_RUN_FN, {
        "hparams": to_custom_config(config.retrieval),
        "serving_k": config.index.k, "eval_k": config.evaluation.top_k},
        values["retrieval_epochs"])
    retrieval_baseline, retrieval_evaluator = gate(
        "Retrieval", retrieval_trainer, evaluation.retrieval_eval_config(config.evaluation),
        values["min_top_k_accuracy"])
    indexer = ScannIndexer(
        model=retrieval_trainer.outputs["model"],
        model_blessing=retrieval_evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
        index_params=json.dumps(dataclasses.asdict(config.index), sort_keys=True))
    scann_pusher = pusher("ScannPusher", indexer.outputs["index_model"],
                          indexer.outputs["index_blessing"], serving.SCANN_MODEL)
    brute_force_pusher = pusher("BruteForcePusher", retrieval_trainer.outputs["model"],
                                retrieval_evaluator.outputs["blessing"],
                                serving.BRUTE_FORCE_MODEL)

    ranking_trainer = trainer("RankingTrainer", RANKING_RUN_FN, {
        "hparams": to_custom_config(config.ranking)}, values["ranking_epochs"])
    ranking_baseline, ranking_evaluator = gate(
        "Ranking", ranking_trainer, evaluation.ranking_eval_config(config.evaluation),
        values["max_rmse"])
    ranking_pusher = pusher("RankingPusher", ranking_trainer.outputs["model"],
                            ranking_evaluator.outputs["blessing"], serving.RANKING_MODEL)

    sequential = []
    if config.sequential.enabled:
        sequential_trainer = trainer("SequentialTrainer", SEQUENTIAL_RUN_FN, {
            "hparams": to_custom_config(config.sequential),
            "serving_k": config.index.k, "eval_k": config.evaluation.top_k},
            config.sequential.epochs)
        sequential_baseline, sequential_evaluator = gate(
            "Sequential", sequential_trainer,
            evaluation.retrieval_eval_config(config.evaluation),
            config.evaluation.min_sequential_top_k_accuracy)
        sequential = [sequential_trainer, sequential_baseline, sequential_evaluator,
                      pusher("SequentialPusher", sequential_trainer.outputs["model"],
                             sequential_evaluator.outputs["blessing"], serving.SEQUENTIAL_MODEL)]

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
                    transform,
                    retrieval_trainer, retrieval_baseline, retrieval_evaluator, indexer,
                    scann_pusher, brute_force_pusher,
                    ranking_trainer, ranking_baseline, ranking_evaluator, ranking_pusher,
                    *sequential],
        enable_cache=config.enable_cache,
        # LocalDagRunner's store; Kubeflow and Vertex bring their own metadata store.
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
            if local else None),
        beam_pipeline_args=list(config.beam.pipeline_args),
    )
