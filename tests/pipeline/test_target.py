"""Target: what differs between where the DAG runs, built by each runner."""

import pytest

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.pipeline.target import Target


def _config(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path / "out"))
    config.data.data_dir = "/data/ml-100k"
    config.kubeflow.pipeline_root = "gs://bucket/root"
    config.kubeflow.volume_mount_path = "/mnt/models"
    config.kubeflow.data_dir = "gs://bucket/data"
    return config


def test_local_paths_are_under_the_output_dir_with_resolvers_and_a_sqlite_store(tmp_path):
    config = _config(tmp_path)
    target = Target.local(config)
    out = tmp_path / "out"
    assert (target.pipeline_root, target.serving_dir, target.metadata_path) == (
        f"{out}/tfx/recsys-pipeline", f"{out}/serving", f"{out}/metadata.sqlite")
    assert target.resolvers and not target.runtime_parameters and target.local_run
    assert target.values(config) == {
        "data_dir": "/data/ml-100k", "retrieval_epochs": config.retrieval.epochs,
        "ranking_epochs": config.ranking.epochs,
        "min_top_k_accuracy": PipelineConfig().evaluation.min_top_k_accuracy,
        "max_rmse": PipelineConfig().evaluation.max_rmse}
    assert target.registry("blessings", nodes.RANKING.evaluator) == \
        f"{out}/tfx/recsys-pipeline/blessings/RankingEvaluator"


def test_kubeflow_paths_come_from_its_section_and_only_vertex_resolves(tmp_path):
    config = _config(tmp_path)
    config.kubeflow.span_folders = True
    kfp, vertex = Target.kubeflow(config), Target.kubeflow(config, vertex=True)
    for target in (kfp, vertex):
        assert (target.pipeline_root, target.serving_dir, target.data_dir) == (
            "gs://bucket/root", "/mnt/models/serving", "gs://bucket/data")
        assert target.metadata_path is None and target.spanned and not target.local_run
    assert (kfp.name, kfp.resolvers, vertex.name, vertex.resolvers) == (
        "kfp", False, "vertex", True)
    assert kfp.previous_window() is None and vertex.previous_window() is not None
    values = kfp.values(config)
    assert {name: (v.name, v.default) for name, v in values.items()} == {
        "data_dir": ("data_dir", "gs://bucket/data"),
        "retrieval_epochs": ("retrieval_epochs", config.retrieval.epochs),
        "ranking_epochs": ("ranking_epochs", config.ranking.epochs), "span": ("span", "latest"),
        "min_top_k_accuracy": ("min_top_k_accuracy", config.evaluation.min_top_k_accuracy),
        "max_rmse": ("max_rmse", config.evaluation.max_rmse)}


def test_a_serving_dir_off_a_volume_is_refused_on_every_target(tmp_path):
    config = _config(tmp_path)
    config.serving.base_dir = "gs://bucket/serving"
    for name in ("local", "kfp", "vertex"):
        with pytest.raises(ConfigError, match="serving.base_dir is 'gs://bucket/serving': "
                           "pushes need a path on a volume"):
            Target.named(config, name)
