"""RecsysEvaluator's additions: the run-time bound, the blessing registry, baseline pointers."""

import json

import pytest
import tensorflow_model_analysis as tfma

from recsys_pipeline.components import recsys_evaluator as rev
from recsys_pipeline.components import registry
from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline import evaluation
from recsys_pipeline.pipeline.config import EvaluationConfig


def _bounds(config: tfma.EvalConfig):
    (metric,) = [m for s in config.metrics_specs for m in s.metrics if m.HasField("threshold")]
    value = metric.threshold.value_threshold
    return (value.lower_bound.value if value.HasField("lower_bound") else None,
            value.upper_bound.value if value.HasField("upper_bound") else None,
            metric.threshold.change_threshold)


def test_value_bound_replaces_the_lower_bound_of_top_k():
    config = evaluation.retrieval_eval_config(EvaluationConfig())
    lower, upper, change = _bounds(rev.with_value_bound(config, 0.42))
    assert (lower, upper) == (pytest.approx(0.42), None)
    assert change == _bounds(config)[2]  # the change threshold is untouched
    assert _bounds(config)[0] == pytest.approx(0.2)  # the original is not modified


def test_value_bound_replaces_the_upper_bound_of_rmse():
    config = evaluation.ranking_eval_config(EvaluationConfig())
    assert _bounds(rev.with_value_bound(config, 0.95))[:2] == (None, pytest.approx(0.95))


def test_value_bound_needs_exactly_one_thresholded_metric():
    with pytest.raises(ConfigError, match="exactly one metric"):
        rev.with_value_bound(tfma.EvalConfig(), 0.5)


def test_registry_returns_the_newest_record_whose_model_still_exists(tmp_path):
    registry_dir = str(tmp_path / "registry")
    assert registry.latest_blessed(registry_dir) is None
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    rev.record_blessing(registry_dir, str(old), "b1")
    rev.record_blessing(registry_dir, str(new), "b2")
    assert registry.latest_blessed(registry_dir)["model_uri"] == str(new)
    new.rmdir()  # a deleted model cannot be a baseline: fall back to the one before
    assert registry.latest_blessed(registry_dir)["model_uri"] == str(old)
    assert not [p for p in (tmp_path / "registry").iterdir() if p.name.startswith(".")]


def _pointer(tmp_path, name, target):
    from tfx.types import standard_artifacts

    artifact = standard_artifacts.Model()
    artifact.uri = str(tmp_path / name)
    artifact.id = 7
    (tmp_path / name).mkdir()
    (tmp_path / name / registry.POINTER_FILE).write_text(json.dumps({"model_uri": target}))
    return artifact


def test_pointer_to_a_model_is_followed_and_keeps_the_pointer_id(tmp_path):
    (resolved,) = registry.follow_pointers([_pointer(tmp_path, "p", "/models/42")])
    assert (resolved.uri, resolved.id) == ("/models/42", 7)


def test_pointer_to_no_model_means_no_baseline(tmp_path):
    assert registry.follow_pointers([_pointer(tmp_path, "p", None)]) == []


def test_a_real_model_artifact_is_left_alone(tmp_path):
    from tfx.types import standard_artifacts

    model = standard_artifacts.Model()
    model.uri = str(tmp_path)
    assert registry.follow_pointers([model]) == [model]
