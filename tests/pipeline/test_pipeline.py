"""create_pipeline: the DAG's components, edges, baselines and settings from config."""

import dataclasses
import json
import os

import pytest

from recsys_pipeline.pipeline import evaluation
from recsys_pipeline.pipeline import nodes as registry
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.pipeline.pipeline import create_pipeline


@pytest.fixture
def pipeline(ml100k, tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path / "out"))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  data_dir=str(ml100k)))
    config.retrieval.epochs = 3
    config.evaluation.min_top_k_accuracy = 0.3
    return config, create_pipeline(config)


def _upstream(component):
    return sorted(c.id for c in component.upstream_nodes)


def test_components_and_edges(pipeline):
    _, p = pipeline
    nodes = {c.id: c for c in p.components}
    assert _upstream(nodes["RetrievalTrainer"]) == ["InteractionsExampleGen", "Transform"]
    assert _upstream(nodes["RetrievalEvaluator"]) == [
        "InteractionsExampleGen", "RetrievalBaseline", "RetrievalTrainer"]
    assert _upstream(nodes["ScannIndexer"]) == [
        "InteractionsExampleGen", "RetrievalEvaluator", "RetrievalTrainer"]
    assert _upstream(nodes["ScannPusher"]) == ["ScannIndexer"]
    assert _upstream(nodes["BruteForcePusher"]) == ["RetrievalEvaluator", "RetrievalTrainer"]
    assert _upstream(nodes["RankingPusher"]) == ["RankingEvaluator", "RankingTrainer"]
    assert _upstream(nodes["Transform"]) == ["AnomalyGate", "ImportSchemaGen",
                                             "InteractionsExampleGen"]


def test_a_local_baseline_is_cached_until_its_evaluator_blesses_another_model(pipeline,
                                                                              tmp_path):
    from recsys_pipeline.components import registry as blessings

    config, p = pipeline
    lookup = {c.id: c for c in p.components}["RetrievalBaseline"]
    path = lookup.exec_properties["blessing_registry"]
    assert path == os.path.join(config.pipeline_root, "blessings", "RetrievalEvaluator")
    assert lookup.exec_properties["cache_key"] == ""  # nothing blessed yet
    model = tmp_path / "blessed-model"
    model.mkdir()
    blessings.record(path, {"model_uri": str(model)})
    rebuilt = {c.id: c for c in create_pipeline(config).components}
    # The next run's DAG names the new model: TFX's cache runs the lookup again.
    assert rebuilt["RetrievalBaseline"].exec_properties["cache_key"] == str(model)
    assert rebuilt["RankingBaseline"].exec_properties["cache_key"] == ""  # its own registry
    model.rmdir()  # a deleted model is no baseline: the key moves back
    assert {c.id: c for c in create_pipeline(config).components}[
        "RetrievalBaseline"].exec_properties["cache_key"] == ""


def test_config_reaches_trainers_and_gates(pipeline):
    config, p = pipeline
    nodes = {c.id: c for c in p.components}
    custom = json.loads(nodes["RetrievalTrainer"].exec_properties["custom_config"])
    assert custom["hparams"]["epochs"] == 3 and custom["eval_k"] == 100
    assert "catalogue" in nodes["RetrievalTrainer"].inputs
    eval_config = json.loads(nodes["RetrievalEvaluator"].exec_properties["eval_config"])
    (_, top_k) = eval_config["metrics_specs"][0]["metrics"]
    assert top_k["threshold"]["value_threshold"]["lower_bound"] == 0.3
    assert nodes["ScannPusher"].exec_properties["serving_dir"].endswith("out/serving")


def test_eval_configs_bound_and_compare_to_the_baseline():
    ev = PipelineConfig().evaluation
    retrieval = evaluation.retrieval_eval_config(ev).metrics_specs[0].metrics[1]
    assert json.loads(retrieval.config)["name"] == "top_100_accuracy"
    assert retrieval.threshold.value_threshold.lower_bound.value == ev.min_top_k_accuracy
    assert retrieval.threshold.change_threshold.absolute.value == -ev.top_k_tolerance
    ranking = evaluation.ranking_eval_config(ev).metrics_specs[0].metrics[1]
    assert ranking.threshold.value_threshold.upper_bound.value == ev.max_rmse
    assert ranking.threshold.change_threshold.absolute.value == ev.rmse_tolerance


@pytest.mark.parametrize("target", ["local", "kfp", "vertex"])
def test_every_target_looks_baselines_up_in_the_registry_its_evaluator_writes(pipeline,
                                                                             target):
    config, _ = pipeline
    p = create_pipeline(config, target=target)
    nodes = {c.id: c for c in p.components}
    root = config.pipeline_root if target == "local" else config.kubeflow.pipeline_root
    for name in ("Retrieval", "Ranking"):
        lookup, evaluator = nodes[f"{name}Baseline"], nodes[f"{name}Evaluator"]
        assert type(lookup).__name__ == "BlessedModelLookup"
        registry = lookup.exec_properties["blessing_registry"]
        assert registry == evaluator.exec_properties["blessing_registry"] == \
            os.path.join(root, "blessings", f"{name}Evaluator")
        # A compiled spec runs many times from one build: its lookups run uncached instead.
        assert lookup.exec_properties["cache_key"] == ""
    # KFP brings its own ML Metadata.
    assert (p.metadata_connection_config is None) == (target != "local")


def test_unknown_target_is_refused(pipeline):
    config, _ = pipeline
    with pytest.raises(Exception, match="unknown pipeline target 'argo'"):
        create_pipeline(config, target="argo")


def test_sequential_branch_is_added_only_when_enabled(pipeline):
    config, p = pipeline
    assert not [c.id for c in p.components if c.id.startswith("Sequential")]
    config.sequential.enabled = True
    config.sequential.epochs = 2
    config.evaluation.min_sequential_top_k_accuracy = 0.25
    nodes = {c.id: c for c in create_pipeline(config).components}
    assert _upstream(nodes["SequentialTrainer"]) == ["InteractionsExampleGen", "Transform"]
    assert _upstream(nodes["SequentialEvaluator"]) == [
        "InteractionsExampleGen", "SequentialBaseline", "SequentialTrainer"]
    assert _upstream(nodes["SequentialPusher"]) == ["SequentialEvaluator", "SequentialTrainer"]
    trainer = nodes["SequentialTrainer"].exec_properties
    assert trainer["run_fn"].endswith("sequential_trainer.run_fn")
    custom = json.loads(trainer["custom_config"])
    assert custom["hparams"]["epochs"] == 2 and custom["hparams"]["context_length"] == 10
    assert nodes["SequentialEvaluator"].exec_properties["value_bound"] == 0.25
    assert nodes["SequentialPusher"].exec_properties["model_name"] == registry.SEQUENTIAL_MODEL
    # Compiles, with its own baseline resolver.
    from tfx.dsl.compiler import compiler

    compiled = compiler.Compiler().compile(create_pipeline(config))
    assert "SequentialBaseline" in {n.pipeline_node.node_info.id for n in compiled.nodes}


def _spanned_config(ml100k, tmp_path, **split):
    import shutil

    for number in (1, 2):
        (ml100k / f"span-{number}").mkdir()
        shutil.copy(ml100k / "u.data", ml100k / f"span-{number}" / "u.data")
    (ml100k / "u.data").unlink()
    config = PipelineConfig(output_dir=str(tmp_path / "out"))
    config.data = dataclasses.replace(config.data, data_dir=str(ml100k), span=2,
                                      window_spans=3)
    config.split = dataclasses.replace(config.split, **split)
    return config


def test_with_spans_everything_after_the_gate_reads_the_window(ml100k, tmp_path):
    from tfx.dsl.compiler import compiler

    config = _spanned_config(ml100k, tmp_path, kind="next_span")
    p = create_pipeline(config)
    nodes = {c.id: c for c in p.components}
    window = nodes[registry.SPAN_WINDOW]
    assert _upstream(window) == ["AnomalyGate", "ImportSchemaGen", "InteractionsExampleGen",
                                 "PreviousWindow", "StatisticsGen"]
    assert window.exec_properties["drift"] == "block"
    assert window.exec_properties["window_spans"] == 3
    assert window.exec_properties["split_kind"] == "next_span"
    for node in ("Transform", "RetrievalEvaluator", "RankingEvaluator", "ScannIndexer"):
        assert registry.SPAN_WINDOW in _upstream(nodes[node]), node
        assert "InteractionsExampleGen" not in _upstream(nodes[node]), node
    # The Resolver reads earlier windows of this pipeline, never this run's ExampleGen.
    compiled = compiler.Compiler().compile(p)
    (node,) = [n.pipeline_node for n in compiled.nodes
               if n.pipeline_node.node_info.id == registry.PREVIOUS_WINDOW]
    (channel,) = node.inputs.inputs[f"_{registry.SPAN_WINDOW}.window"].channels
    assert [q.name.field_value.string_value for q in channel.context_queries
            if q.type.name == "node"] == [f"recsys-pipeline.{registry.SPAN_WINDOW}"]
    assert not [q for q in channel.context_queries if q.type.name == "pipeline_run"]

    kfp = {c.id: c for c in create_pipeline(config, target="kfp").components}
    assert registry.PREVIOUS_WINDOW not in kfp
    assert kfp[registry.SPAN_WINDOW].exec_properties["read_registry"] == 1
    assert kfp[registry.SPAN_WINDOW].exec_properties["registry"] == \
        f"{config.kubeflow.pipeline_root}/windows/{registry.SPAN_WINDOW}"


def test_with_spans_the_trainers_start_from_their_baselines(ml100k, tmp_path, pipeline):
    # Without span folders nothing warm-starts: the same data would only be retrained.
    plain, _ = pipeline
    nodes = {c.id: c for c in create_pipeline(plain).components}
    assert all(nodes[b.trainer].inputs.get("base_model") is None
               for b in (registry.RETRIEVAL, registry.RANKING))
    config = _spanned_config(ml100k, tmp_path)
    for target in ("local", "kfp", "vertex"):
        nodes = {c.id: c for c in create_pipeline(config, target=target).components}
        for branch in (registry.RETRIEVAL, registry.RANKING):
            trainer, baseline = nodes[branch.trainer], nodes[branch.baseline]
            assert trainer.inputs["base_model"] is not None
            assert trainer.inputs["base_model"].producer_component_id == branch.baseline
            assert type(baseline).__name__ == "BlessedModelLookup", target
    config.ranking.warm_start = False
    nodes = {c.id: c for c in create_pipeline(config).components}
    assert nodes[registry.RANKING.trainer].inputs.get("base_model") is None
    assert nodes[registry.RETRIEVAL.trainer].inputs["base_model"] is not None


def test_next_span_needs_span_folders(pipeline):
    config, _ = pipeline
    config.split.kind = "next_span"
    with pytest.raises(Exception, match="next_span.*holds no span-<N> folders"):
        create_pipeline(config)


# A second ranking branch: its own nodes and served model, the ranking config section.
EXTRA = dataclasses.replace(
    registry.RANKING, trainer="RankingTrainerB", evaluator="RankingEvaluatorB",
    baseline="RankingBaselineB", pushes=(registry.Push("RankingPusherB", "ranking_b"),),
    epochs_parameter=None, bound_parameter=None)


@pytest.mark.parametrize("target", ["local", "kfp", "vertex"])
def test_the_dag_is_built_from_the_registry_one_branch_more_or_less(pipeline, target):
    config, _ = pipeline
    config.sequential.enabled = True
    full = {c.id: c for c in create_pipeline(config, target).components}
    assert set(registry.SEQUENTIAL.node_ids) <= set(full)

    fewer = [b for b in registry.BRANCHES if b is not registry.SEQUENTIAL]
    less = {c.id for c in create_pipeline(config, target, branches=fewer).components}
    assert less == set(full) - set(registry.SEQUENTIAL.node_ids)

    more = {c.id: c for c in create_pipeline(
        config, target, branches=(*registry.BRANCHES, EXTRA)).components}
    assert set(more) == set(full) | {"RankingTrainerB", "RankingEvaluatorB",
                                     "RankingBaselineB", "RankingPusherB"}
    assert _upstream(more["RankingTrainerB"]) == ["InteractionsExampleGen", "Transform"]
    assert _upstream(more["RankingEvaluatorB"]) == [
        "InteractionsExampleGen", "RankingBaselineB", "RankingTrainerB"]
    assert _upstream(more["RankingPusherB"]) == ["RankingEvaluatorB", "RankingTrainerB"]
    assert more["RankingPusherB"].exec_properties["model_name"] == "ranking_b"
    registry_dir = more["RankingEvaluatorB"].exec_properties["blessing_registry"]
    assert registry_dir.endswith("/blessings/RankingEvaluatorB")
    # Its baseline is found as every branch's is on this target.
    assert type(more["RankingBaselineB"]).__name__ == type(full["RankingBaseline"]).__name__
    if target == "kfp":
        assert more["RankingBaselineB"].exec_properties["blessing_registry"] == registry_dir
    # Composed from the original branches, not the extra one.
    assert _upstream(more[registry.RECOMMENDER.evaluator]) == _upstream(
        full[registry.RECOMMENDER.evaluator])

    without_ranking = [b for b in registry.BRANCHES if b is not registry.RANKING]
    with pytest.raises(Exception, match="the recommender branch is composed from the "
                       "retrieval and ranking branches, and the DAG has no ranking branch"):
        create_pipeline(config, target, branches=without_ranking)


def test_a_declared_log_imports_its_generated_schema_and_hands_its_features_to_transform(
        tmp_path):
    import os

    import tensorflow_data_validation as tfdv

    from recsys_pipeline.data import synthetic
    from recsys_pipeline.data.declaration import InteractionsLayout
    from recsys_pipeline.pipeline import nodes as ids
    from recsys_pipeline.pipeline.config import load_config

    data = tmp_path / "shop"
    synthetic.generate(str(data), 2_000, layout="interactions", fmt="csv")
    config = load_config(str(data / synthetic.DECLARED_CONFIG))
    config = dataclasses.replace(config, output_dir=str(tmp_path / "out"),
                                 data=dataclasses.replace(config.data, data_dir=str(data)))
    nodes = {c.id: c for c in create_pipeline(config).components}
    path = nodes[ids.SCHEMA_GEN].exec_properties["schema_file"]
    assert os.path.dirname(path) == os.path.join(config.pipeline_root, "schemas")
    schema = {f.name for f in tfdv.load_schema_text(path).feature}
    assert {"item_feature_price", "user_feature_segment"} <= schema
    custom = json.loads(nodes[ids.TRANSFORM].exec_properties["custom_config"])
    assert custom["declared_features"] == {
        **{f"item_feature_{c}": k for c, k in (e.split(":") for e in synthetic.ITEM_FEATURES)},
        **{f"user_feature_{c}": k for c, k in (e.split(":") for e in synthetic.USER_FEATURES)}}
    # Another declaration is another schema file: no cached import reuses the old one.
    other = dataclasses.replace(config, interactions=InteractionsLayout(
        **{**config.interactions.__dict__, "user_features": []}))
    other_nodes = {c.id: c for c in create_pipeline(other).components}
    assert other_nodes[ids.SCHEMA_GEN].exec_properties["schema_file"] != path
