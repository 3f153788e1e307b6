"""``create_pipeline(config)``: the TFX DAG, shared by every runner (local and Kubeflow).

    InteractionsExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema; generated from
      the declaration for a declared log, pipeline/schema.py)
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

The DAG is built from its parts: the shared nodes above, then one branch after another from
the registry (``pipeline/nodes.py``), each a trained branch (Trainer, Baseline, Evaluator, the
ScaNN index where a push serves it, a Pusher per served model) or a composed one. Every node
id, served model name, run-time parameter and gated metric comes from the registry. What
differs between local runs, Kubeflow Pipelines and Vertex AI (paths, how a baseline or the
previous window is found, run-time parameters, the metadata store) is the ``Target`` the
runner hands over (``pipeline/target.py``); the components and edges are the same for all.
No runner code lives here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from typing import Any, Sequence, Union

from tfx import v1 as tfx

from recsys_pipeline.components.anomaly_gate import AnomalyGate
from recsys_pipeline.components.bulk_recommendations import BulkRecommendations
from recsys_pipeline.components.interactions_example_gen import InteractionsExampleGen
from recsys_pipeline.components.recommender import Recommender
from recsys_pipeline.components.recsys_evaluator import RecsysEvaluator
from recsys_pipeline.components.recsys_trainer import RecsysTrainer
from recsys_pipeline.components.scann_indexer import ScannIndexer
from recsys_pipeline.components.serving_pusher import ServingPusher
from recsys_pipeline.components.span_window import SpanWindow
from recsys_pipeline.data import movielens, spans
from recsys_pipeline.errors import ConfigError, DataError
from recsys_pipeline.pipeline import evaluation, nodes, schema
from recsys_pipeline.pipeline.config import (
    DATASET_LAYOUTS,
    INTERACTIONS,
    SPAN_PARAMETER,
    PipelineConfig,
)
from recsys_pipeline.pipeline.fingerprint import code_fingerprint, module_of
from recsys_pipeline.pipeline.target import Target
from recsys_pipeline.serving.server_settings import ServerSettings
from recsys_pipeline.trainer.hparams import to_custom_config
from recsys_pipeline.transform import features as F

PREPROCESSING_FN = "recsys_pipeline.transform.preprocessing.preprocessing_fn"

def schema_path(layout: str, project_dir: str = "") -> str:
    """The curated schema for a MovieLens layout (demographics or not), in this install or
    under ``project_dir`` (the project's folder inside the Kubeflow image). A declared log's
    is generated (``pipeline/schema.py``)."""
    name = {"csv": "movielens.pbtxt"}.get(layout, "movielens_demographics.pbtxt")
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
            dataset = spans.span_dataset(data_dir, config.data.span, config.data.layout,
                                         config.interactions)
        else:
            dataset = movielens.detect_layout(data_dir, config.data.layout,
                                              declaration=config.interactions)
    except DataError:
        if config.data.layout != "auto":
            # A remote or not-yet-existing location (e.g. a Kubeflow runtime parameter):
            # trust the explicit layout; ExampleGen checks it when it runs.
            return config.data.layout, ""
        raise
    return dataset.spec.kind, movielens.fingerprint(dataset)


def _code_of(component) -> str:
    """The fingerprint of the code a custom component's executor runs (its module's)."""
    return code_fingerprint([component.__module__])


def _window_nodes(config: PipelineConfig, target: Target, example_gen, statistics_gen,
                  schema_gen, anomaly_gate) -> list:
    """The SpanWindow (and drift gate), after the gate, and where the target resolves it the
    previous window's Resolver (see components/span_window.py)."""
    previous = target.previous_window()
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
        registry=target.registry("windows", nodes.SPAN_WINDOW),
        read_registry=int(previous is None),
        source_fingerprint=_code_of(SpanWindow)).with_id(nodes.SPAN_WINDOW)
    window.add_upstream_node(anomaly_gate)
    return [window] if previous is None else [previous, window]


def _enabled(config: PipelineConfig, branch: nodes.Branch) -> bool:
    return not branch.optional or getattr(config, branch.name).enabled


def create_pipeline(config: PipelineConfig, target: Union[str, Target] = "local",
                    branches: Sequence[nodes.Branch] = nodes.BRANCHES) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline described by ``config`` for ``target`` (a Target, or its
    name), one model branch after another from ``branches`` (see module doc)."""
    config.validate()
    if isinstance(target, str):
        target = Target.named(config, target)
    layout, fingerprint = resolve_layout(config, target.name)
    values = target.values(config)

    example_gen = InteractionsExampleGen(
        data_dir=values["data_dir"],
        layout=layout,
        split_config=config.split_config_json(),
        max_orphan_fraction=config.data.max_orphan_fraction,
        interactions=(json.dumps(dataclasses.asdict(config.interactions), sort_keys=True)
                      if layout == INTERACTIONS else None),
        input_fingerprint=fingerprint,
        source_fingerprint=_code_of(InteractionsExampleGen),
        # Locally the runner chose the span (from ML Metadata); on Kubeflow the step chooses
        # it at run time from its registry of ingested spans.
        span=config.data.span if target.local_run else None,
        span_choice=values.get(SPAN_PARAMETER),
        span_registry=target.registry("spans", nodes.EXAMPLE_GEN)
        if SPAN_PARAMETER in values else None,
    ).with_id(nodes.EXAMPLE_GEN)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]).with_id(nodes.STATISTICS_GEN)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=(schema.write_declared_schema(config.interactions, target.pipeline_root)
                     if layout == INTERACTIONS else schema_path(layout, target.project_dir)),
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
    if target.spanned:
        window_nodes = _window_nodes(config, target, example_gen, statistics_gen, schema_gen,
                                     anomaly_gate)
        examples = window_nodes[-1].outputs["window"]
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        disable_statistics=not config.transform.statistics,
        custom_config={
            "timestamp_buckets": config.transform.timestamp_buckets,
            F.DECLARED_FEATURES_CONFIG: schema.declared_features(
                config.interactions if layout == INTERACTIONS else movielens.preset(layout)),
            "source_fingerprint": code_fingerprint([module_of(PREPROCESSING_FN)]),
        },
    ).with_id(nodes.TRANSFORM)
    # Transform consumes ExampleGen's output directly; this edge makes it wait for the gate.
    transform.add_upstream_node(anomaly_gate)

    # One fingerprint per component class, shared by its nodes (every Evaluator, every Pusher).
    shared = _Shared(config, target, values, example_gen, examples, transform,
                     _code_of(RecsysEvaluator), _code_of(ServingPusher))
    built: dict[nodes.Branch, _Built] = {}
    components: list = [example_gen, statistics_gen, schema_gen, example_validator,
                        anomaly_gate, *window_nodes, transform]
    for branch in branches:
        if not _enabled(config, branch):
            continue
        built[branch] = (_composed_branch(shared, branch, built) if branch.composed
                         else _trained_branch(shared, branch))
        components += built[branch].nodes

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=target.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=target.metadata_connection_config(),
        beam_pipeline_args=list(config.beam.pipeline_args),
    )


@dataclasses.dataclass
class _Shared:
    """What every branch is built from: the config, the target and the nodes upstream."""

    config: PipelineConfig
    target: Target
    values: dict[str, Any]
    example_gen: Any
    examples: Any  # the examples every gate reads (the span window's, with spans)
    transform: Any
    evaluator_code: str
    pusher_code: str

    def pusher(self, push: nodes.Push, model, blessing):
        serving = self.config.serving
        return ServingPusher(model=model, model_blessing=blessing,
                             serving_dir=self.target.serving_dir, model_name=push.model_name,
                             source_fingerprint=self.pusher_code,
                             version_labels=int(serving.version_labels),
                             server_settings_json=ServerSettings.of(serving).to_json(),
                             ).with_id(push.node_id)


@dataclasses.dataclass
class _Built:
    """A branch's nodes in the DAG, and the outputs later branches compose from."""

    nodes: list
    model: Any = None  # the trained model
    blessing: Any = None  # its gate's blessing
    index: Any = None  # the ScannIndexer, for a branch with a ScaNN push


def _trained_branch(shared: _Shared, branch: nodes.Branch) -> _Built:
    """Trainer, Baseline and Evaluator; the ScannIndexer where a push serves ScaNN; a Pusher
    per served model. With ``warm_start`` (and span folders) the Trainer starts from the
    Baseline's model."""
    config, target, values = shared.config, shared.target, shared.values
    section = getattr(config, branch.name)
    ev = config.evaluation
    custom_config: dict[str, Any] = {"hparams": to_custom_config(section)}
    if branch.metric == nodes.TOP_K_ACCURACY:  # a retrieval model: it lists top-k itself
        custom_config.update(serving_k=config.index.k, eval_k=ev.top_k)
    baseline = target.baseline(branch)
    warm = branch.warm_starts and section.warm_start and target.spanned
    if branch.run_fn is None:
        raise ConfigError(f"the {branch.name} branch has a Trainer but no run_fn to train with")
    trainer = RecsysTrainer(
        examples=shared.transform.outputs["transformed_examples"],
        transform_graph=shared.transform.outputs["transform_graph"],
        catalogue=shared.example_gen.outputs["catalogue"],
        run_fn=branch.run_fn,
        custom_config={**custom_config, "source_fingerprint": code_fingerprint(
            [module_of(branch.run_fn), RecsysTrainer.__module__])},
        epochs=values.get(branch.epochs_parameter or "", section.epochs),
        base_model=baseline.outputs["model"] if warm else None,
    ).with_id(branch.trainer)
    evaluator = RecsysEvaluator(
        examples=shared.examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=evaluation.eval_config(branch, ev),
        value_bound=values.get(branch.bound_parameter or "", getattr(ev, branch.bound)),
        blessing_registry=target.registry("blessings", branch.evaluator),
        source_fingerprint=shared.evaluator_code,
    ).with_id(branch.evaluator)
    built = _Built([trainer, baseline, evaluator], trainer.outputs["model"],
                   evaluator.outputs["blessing"])
    if any(p.needs_scann for p in branch.pushes):
        built.index = ScannIndexer(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            examples=shared.examples,
            index_params=json.dumps(dataclasses.asdict(config.index), sort_keys=True),
            source_fingerprint=_code_of(ScannIndexer),
            reuse_registry=target.registry("indexes", nodes.SCANN_INDEXER),
        ).with_id(nodes.SCANN_INDEXER)
        built.nodes.append(built.index)
    for push in branch.pushes:
        if push.needs_scann:
            built.nodes.append(shared.pusher(push, built.index.outputs["index_model"],
                                             built.index.outputs["index_blessing"]))
        else:
            built.nodes.append(shared.pusher(push, built.model, built.blessing))
    return built


def _composed_branch(shared: _Shared, branch: nodes.Branch,
                     built: dict[nodes.Branch, _Built]) -> _Built:
    """The recommender: built and gated by one node from the blessed retrieval index and
    ranking model; its two variants pushed; with [bulk], every user's top k written."""
    missing = [b.name for b in (nodes.RETRIEVAL, nodes.RANKING) if b not in built]
    if branch is not nodes.RECOMMENDER or missing:
        raise ConfigError(f"the {branch.name} branch is composed from the retrieval and "
                          f"ranking branches, and the DAG has no {' or '.join(missing)} "
                          "branch" if missing else f"no way to compose {branch.name!r}")
    config = shared.config
    retrieval, ranking = built[nodes.RETRIEVAL], built[nodes.RANKING]
    rc, ev = config.recommender, config.evaluation
    recommender = Recommender(
        retrieval_model=retrieval.model,
        index_model=retrieval.index.outputs["index_model"],
        index_blessing=retrieval.index.outputs["index_blessing"],
        ranking_model=ranking.model,
        ranking_blessing=ranking.blessing,
        examples=shared.examples, candidates=rc.candidates, rank_weight=rc.rank_weight,
        k=ev.ndcg_k, value_bound=ev.min_ndcg, tolerance=ev.ndcg_tolerance,
        blessing_registry=shared.target.registry("blessings", branch.evaluator),
        source_fingerprint=_code_of(Recommender)).with_id(branch.evaluator)
    scann_variant, brute_force_variant = branch.pushes
    out = _Built([recommender,
                  shared.pusher(scann_variant, recommender.outputs["model"],
                                recommender.outputs["blessing"]),
                  shared.pusher(brute_force_variant, recommender.outputs["brute_force_model"],
                                recommender.outputs["blessing"])],
                 recommender.outputs["model"], recommender.outputs["blessing"])
    if config.bulk.enabled:
        out.nodes.append(BulkRecommendations(
            model=recommender.outputs["model"], model_blessing=recommender.outputs["blessing"],
            k=config.bulk.k, batch_size=config.bulk.batch_size,
            source_fingerprint=_code_of(BulkRecommendations),
        ).with_id(nodes.BULK_RECOMMENDATIONS))
    return out
