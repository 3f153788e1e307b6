"""``create_pipeline(config)``: the TFX DAG, shared by every runner (local and Kubeflow).

    MovieLensExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema)
      -> ExampleValidator -> AnomalyGate -> Transform
    [span folders] AnomalyGate -> SpanWindow (and PreviousWindow) -> Transform, Evaluators,
      ScannIndexer: everything after the gate reads the rolling window of spans; the window
      also gates drift from the previous span (StatisticsGen's output against its)
    Transform -> RetrievalTrainer -> RetrievalEvaluator (vs RetrievalBaseline) -> ScannIndexer
      -> ScannPusher (ScaNN model) and BruteForcePusher (the pure-TF export)
    Transform -> RankingTrainer -> RankingEvaluator (vs RankingBaseline) -> RankingPusher
    [span folders, warm_start] RetrievalBaseline -> RetrievalTrainer and RankingBaseline ->
      RankingTrainer (base_model): the Trainers start from the last blessed model
    [sequential] enabled: Transform -> SequentialTrainer (GRU4Rec) -> SequentialEvaluator
      (vs SequentialBaseline) -> SequentialPusher
    [recommender] enabled (default): ScannIndexer + RankingEvaluator -> Recommender (the
      two-stage servable, gated on NDCG@k against its blessing registry's last blessed one)
      -> RecommenderPusher (ScaNN) and RecommenderBruteForcePusher
    [bulk] enabled: Recommender -> BulkRecommendations (every user's top k, as Parquet)

The baselines are Resolvers with TFX's latest-blessed-model strategy, restricted to the
matching Trainer and Evaluator -- except on open-source Kubeflow Pipelines, which cannot run
them: there, BlessedModelLookup takes their place (see components/blessed_model_lookup.py).

``target`` says where the DAG will run: "local" (LocalDagRunner: paths from ``output_dir``,
SQLite MLMD), "kfp" or "vertex" (paths from ``[kubeflow]``, and the knobs a scheduler changes
between runs become run-time parameters). The components and edges are the same for all.
Every node id and served model name comes from the branch registry (``pipeline/nodes.py``).
No runner code lives here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from typing import Any

from tfx import v1 as tfx

from recsys_pipeline.components.anomaly_gate import AnomalyGate
from recsys_pipeline.components.blessed_model_lookup import BlessedModelLookup
from recsys_pipeline.components.bulk_recommendations import BulkRecommendations
from recsys_pipeline.components.movielens_example_gen import MovieLensExampleGen
from recsys_pipeline.components.recommender import Recommender
from recsys_pipeline.components.recsys_evaluator import RecsysEvaluator
from recsys_pipeline.components.recsys_trainer import RecsysTrainer
from recsys_pipeline.components.scann_indexer import ScannIndexer
from recsys_pipeline.components.serving_pusher import ServingPusher
from recsys_pipeline.components.span_window import SpanWindow
from recsys_pipeline.data import movielens, spans
from recsys_pipeline.errors import ConfigError, DataError
from recsys_pipeline.pipeline import evaluation, nodes
from recsys_pipeline.pipeline.config import (
    DATASET_LAYOUTS,
    RUNTIME_PARAMETERS,
    SPAN_PARAMETER,
    PipelineConfig,
)
from recsys_pipeline.pipeline.fingerprint import code_fingerprint, module_of
from recsys_pipeline.serving.server_settings import ServerSettings
from recsys_pipeline.trainer.hparams import to_custom_config

PREPROCESSING_FN = "recsys_pipeline.transform.preprocessing.preprocessing_fn"
TARGETS = ("local", "kfp", "vertex")

def schema_path(layout: str, project_dir: str = "") -> str:
    """The curated schema for a layout (demographics or not), in this install or under
    ``project_dir`` (the project's folder inside the Kubeflow image)."""
    name = "movielens.pbtxt" if layout == "csv" else "movielens_demographics.pbtxt"
    if project_dir:
        return os.path.join(project_dir, "pipeline", "schemas", name)
    return str(resources.files("recsys_pipeline.pipeline").joinpath("schemas", name))


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
    found = spans.list_spans(data_dir)
    if config.split.kind == "next_span" and not found:
        raise ConfigError(f"split.kind = \"next_span\" evaluates on the newest span, but "
                          f"{data_dir} holds no span-<N> folders: use random or temporal")
    if found and config.data.span is None:
        raise ConfigError(f"{data_dir} holds span folders ({found[0].number} to "
                          f"{found[-1].number}): set data.span, or run recsys run --span "
                          "latest|N")
    try:
        if config.data.span is not None:
            dataset = spans.span_dataset(data_dir, config.data.span, config.data.layout)
        else:
            dataset = movielens.detect_layout(data_dir, config.data.layout)
    except DataError:
        if config.data.layout != "auto":
            # A remote or not-yet-existing location (e.g. a Kubeflow runtime parameter):
            # trust the explicit layout; ExampleGen checks it when it runs.
            return config.data.layout, ""
        raise
    return dataset.spec.kind, movielens.fingerprint(dataset)


def _spanned(config: PipelineConfig, target: str) -> bool:
    """Whether the data has span folders: a span chosen locally, or declared for Kubeflow."""
    return config.data.span is not None or (target != "local" and config.kubeflow.span_folders)


def _runtime_values(config: PipelineConfig, target: str) -> dict:
    """The run-time-changeable knobs: plain values locally, RuntimeParameters on Kubeflow."""
    kf = config.kubeflow
    values = {"data_dir": (kf.data_dir or config.data.data_dir) if target != "local"
              else config.data.data_dir,
              "retrieval_epochs": config.retrieval.epochs,
              "ranking_epochs": config.ranking.epochs,
              "min_top_k_accuracy": config.evaluation.min_top_k_accuracy,
              "max_rmse": config.evaluation.max_rmse}
    if target != "local" and _spanned(config, target):
        values[SPAN_PARAMETER] = "latest" if config.data.span is None else str(config.data.span)
    if target == "local" or not kf.runtime_parameters:
        return values
    return {name: tfx.dsl.experimental.RuntimeParameter(
                name=name, ptype=RUNTIME_PARAMETERS[name], default=values[name])
            for name in RUNTIME_PARAMETERS if name in values}


def _code_of(component) -> str:
    """The fingerprint of the code a custom component's executor runs (its module's)."""
    return code_fingerprint([component.__module__])


def _window_nodes(config: PipelineConfig, target: str, pipeline_root: str, example_gen,
                  statistics_gen, schema_gen, anomaly_gate) -> list:
    """The SpanWindow (and drift gate), after the gate, and where TFX can resolve it (not on
    open-source Kubeflow Pipelines: the window reads its registry there) the previous
    window's Resolver (see components/span_window.py)."""
    previous = None
    if target != "kfp":
        previous = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            window=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                   producer_component_id=nodes.SPAN_WINDOW,
                                   output_key="window"),
        ).with_id(nodes.PREVIOUS_WINDOW)
    window = SpanWindow(
        examples=example_gen.outputs["examples"],
        previous_window=previous.outputs["window"] if previous is not None else None,
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        drift=config.validation.drift,
        categorical_threshold=config.validation.categorical_threshold,
        numeric_threshold=config.validation.numeric_threshold,
        window_spans=config.data.window_spans,
        split_kind=config.split.kind,
        registry=os.path.join(pipeline_root, "windows", nodes.SPAN_WINDOW),
        read_registry=int(target == "kfp"),
        source_fingerprint=_code_of(SpanWindow)).with_id(nodes.SPAN_WINDOW)
    window.add_upstream_node(anomaly_gate)
    return [window] if previous is None else [previous, window]


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
        source_fingerprint=_code_of(MovieLensExampleGen),
        # Locally the runner chose the span (from ML Metadata); on Kubeflow the step chooses
        # it at run time from its registry of ingested spans.
        span=config.data.span if local else None,
        span_choice=values.get(SPAN_PARAMETER),
        span_registry=os.path.join(pipeline_root, "spans", nodes.EXAMPLE_GEN)
        if SPAN_PARAMETER in values else None,
    ).with_id(nodes.EXAMPLE_GEN)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]).with_id(nodes.STATISTICS_GEN)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=schema_path(layout, "" if local else config.kubeflow.project_dir),
    ).with_id(nodes.SCHEMA_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
    ).with_id(nodes.EXAMPLE_VALIDATOR)
    anomaly_gate = AnomalyGate(
        anomalies=example_validator.outputs["anomalies"],
        source_fingerprint=_code_of(AnomalyGate)).with_id(nodes.ANOMALY_GATE)
    # With spans, everything after the gate reads the rolling window; without, the examples.
    window_nodes: list = []
    examples = example_gen.outputs["examples"]
    if _spanned(config, target):
        window_nodes = _window_nodes(config, target, pipeline_root, example_gen, statistics_gen,
                                     schema_gen, anomaly_gate)
        examples = window_nodes[-1].outputs["window"]
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            "timestamp_buckets": config.transform.timestamp_buckets,
            "source_fingerprint": code_fingerprint([module_of(PREPROCESSING_FN)]),
        },
    ).with_id(nodes.TRANSFORM)
    # Transform consumes ExampleGen's output directly; this edge makes it wait for the gate.
    transform.add_upstream_node(anomaly_gate)

    # One fingerprint per component class, shared by its nodes (every Evaluator, every Pusher).
    evaluator_code, pusher_code = _code_of(RecsysEvaluator), _code_of(ServingPusher)

    def branch_nodes(branch: nodes.Branch, custom_config: dict, epochs, eval_config,
                     bound, warm_start: bool = False) -> tuple[RecsysTrainer, Any, RecsysEvaluator]:
        """A branch's Trainer, Baseline and Evaluator (its Pushers come after). With
        ``warm_start`` (and span folders) the Trainer starts from the Baseline's model."""
        run_fn = branch.run_fn
        if run_fn is None:
            raise ConfigError(f"the {branch.name} branch is composed: it has no Trainer")
        registry = os.path.join(pipeline_root, "blessings", branch.evaluator)
        if target == "kfp":
            baseline = BlessedModelLookup(blessing_registry=registry).with_id(branch.baseline)
        else:
            baseline = tfx.dsl.Resolver(
                strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
                model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                                      producer_component_id=branch.trainer,
                                      output_key="model"),
                model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                               producer_component_id=branch.evaluator,
                                               output_key="blessing"),
            ).with_id(branch.baseline)
        model_trainer = RecsysTrainer(
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            catalogue=example_gen.outputs["catalogue"],
            run_fn=run_fn,
            custom_config={**custom_config, "source_fingerprint": code_fingerprint(
                [module_of(run_fn), RecsysTrainer.__module__])},
            epochs=epochs,
            base_model=baseline.outputs["model"]
            if warm_start and _spanned(config, target) else None,
        ).with_id(branch.trainer)
        evaluator = RecsysEvaluator(
            examples=examples,
            model=model_trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            eval_config=eval_config,
            value_bound=bound,
            blessing_registry=registry,
            source_fingerprint=evaluator_code,
        ).with_id(branch.evaluator)
        return model_trainer, baseline, evaluator

    settings_json = ServerSettings.of(config.serving).to_json()

    def pusher(push: nodes.Push, model, blessing):
        return ServingPusher(model=model, model_blessing=blessing, serving_dir=serving_dir,
                             model_name=push.model_name, source_fingerprint=pusher_code,
                             version_labels=int(config.serving.version_labels),
                             server_settings_json=settings_json).with_id(push.node_id)

    retrieval = nodes.RETRIEVAL
    scann_push, brute_force_push = retrieval.pushes
    retrieval_trainer, retrieval_baseline, retrieval_evaluator = branch_nodes(
        retrieval, {"hparams": to_custom_config(config.retrieval),
                    "serving_k": config.index.k, "eval_k": config.evaluation.top_k},
        values["retrieval_epochs"], evaluation.retrieval_eval_config(config.evaluation),
        values["min_top_k_accuracy"], config.retrieval.warm_start)
    indexer = ScannIndexer(
        model=retrieval_trainer.outputs["model"],
        model_blessing=retrieval_evaluator.outputs["blessing"],
        examples=examples,
        index_params=json.dumps(dataclasses.asdict(config.index), sort_keys=True),
        source_fingerprint=_code_of(ScannIndexer),
        reuse_registry=os.path.join(pipeline_root, "indexes", nodes.SCANN_INDEXER),
    ).with_id(nodes.SCANN_INDEXER)
    retrieval_nodes = [
        retrieval_trainer, retrieval_baseline, retrieval_evaluator, indexer,
        pusher(scann_push, indexer.outputs["index_model"], indexer.outputs["index_blessing"]),
        pusher(brute_force_push, retrieval_trainer.outputs["model"],
               retrieval_evaluator.outputs["blessing"])]

    ranking = nodes.RANKING
    ranking_trainer, ranking_baseline, ranking_evaluator = branch_nodes(
        ranking, {"hparams": to_custom_config(config.ranking)}, values["ranking_epochs"],
        evaluation.ranking_eval_config(config.evaluation), values["max_rmse"],
        config.ranking.warm_start)
    ranking_nodes = [ranking_trainer, ranking_baseline, ranking_evaluator,
                     pusher(ranking.pushes[0], ranking_trainer.outputs["model"],
                            ranking_evaluator.outputs["blessing"])]

    sequential_nodes: list = []
    if config.sequential.enabled:
        sequential = nodes.SEQUENTIAL
        sequential_trainer, sequential_baseline, sequential_evaluator = branch_nodes(
            sequential, {"hparams": to_custom_config(config.sequential),
                         "serving_k": config.index.k, "eval_k": config.evaluation.top_k},
            config.sequential.epochs, evaluation.retrieval_eval_config(config.evaluation),
            config.evaluation.min_sequential_top_k_accuracy)
        sequential_nodes = [sequential_trainer, sequential_baseline, sequential_evaluator,
                            pusher(sequential.pushes[0], sequential_trainer.outputs["model"],
                                   sequential_evaluator.outputs["blessing"])]

    recommender_nodes: list = []
    if config.recommender.enabled:
        composed = nodes.RECOMMENDER
        rc, ev = config.recommender, config.evaluation
        recommender = Recommender(
            retrieval_model=retrieval_trainer.outputs["model"],
            index_model=indexer.outputs["index_model"],
            index_blessing=indexer.outputs["index_blessing"],
            ranking_model=ranking_trainer.outputs["model"],
            ranking_blessing=ranking_evaluator.outputs["blessing"],
            examples=examples, candidates=rc.candidates, rank_weight=rc.rank_weight,
            k=ev.ndcg_k, value_bound=ev.min_ndcg, tolerance=ev.ndcg_tolerance,
            blessing_registry=os.path.join(pipeline_root, "blessings", composed.evaluator),
            source_fingerprint=_code_of(Recommender)).with_id(composed.evaluator)
        scann_variant, brute_force_variant = composed.pushes
        recommender_nodes = [
            recommender,
            pusher(scann_variant, recommender.outputs["model"], recommender.outputs["blessing"]),
            pusher(brute_force_variant, recommender.outputs["brute_force_model"],
                   recommender.outputs["blessing"])]
        if config.bulk.enabled:
            recommender_nodes.append(BulkRecommendations(
                model=recommender.outputs["model"], model_blessing=recommender.outputs["blessing"],
                k=config.bulk.k, batch_size=config.bulk.batch_size,
                source_fingerprint=_code_of(BulkRecommendations),
            ).with_id(nodes.BULK_RECOMMENDATIONS))

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
                    *window_nodes, transform, *retrieval_nodes, *ranking_nodes, *sequential_nodes,
                    *recommender_nodes],
        enable_cache=config.enable_cache,
        # LocalDagRunner's store; Kubeflow and Vertex bring their own metadata store.
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
            if local else None),
        beam_pipeline_args=list(config.beam.pipeline_args),
    )
