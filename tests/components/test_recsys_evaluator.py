"""RecsysEvaluator's additions: the run-time bound, the blessing registry, baseline pointers,
and degenerate models refused through the real gate (TFX's executor and TFMA)."""

import json
import os

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format

from recsys_pipeline import model_summary
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


# The real gate: TFX's Evaluator executor with TFMA, on the tiny eval split, after the check.

def _retrieval_export(data, tiny, tmp_path, weights):
    """A tiny retrieval model trained an epoch, its weights then set by ``weights(w)``,
    exported as a Trainer's Model artifact holds it."""
    from recsys_pipeline.trainer import retrieval_trainer
    from recsys_pipeline.trainer.hparams import RetrievalHParams

    model, _, _ = retrieval_trainer.train(data, RetrievalHParams(embedding_dim=8, epochs=1),
                                          tiny.train_files)
    model.set_weights([weights(w) for w in model.get_weights()])
    path = tmp_path / "model" / "Format-Serving"
    retrieval_trainer.export_model(model, data, str(path), serving_k=5, eval_k=5)
    return str(path.parent)


def _evaluate(model_uri, tiny, tmp_path, bound=0.0, baseline=False, registry_dir=None,
              name=""):
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from recsys_pipeline.pipeline.config import PipelineConfig

    model = standard_artifacts.Model()
    model.uri, model.id = model_uri, 3
    examples = standard_artifacts.Examples()
    examples.uri = os.path.dirname(tiny.raw_eval_dir)
    examples.split_names = json.dumps(["eval"])
    outputs = {"evaluation": [standard_artifacts.ModelEvaluation()],
               "blessing": [standard_artifacts.ModelBlessing()]}
    for key, [artifact] in outputs.items():
        artifact.uri = str(tmp_path / f"{key}{name}")
        os.makedirs(artifact.uri)
    config = evaluation.retrieval_eval_config(EvaluationConfig())
    executor = rev.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=PipelineConfig().beam.pipeline_args, tmp_dir=str(tmp_path / "tmp")))
    executor.Do({"examples": [examples], "model": [model],
                 "baseline_model": [model] if baseline else []}, outputs, {
        "eval_config": json_format.MessageToJson(config), "value_bound": bound,
        "example_splits": "null", "fairness_indicator_thresholds": "null",
        **({"blessing_registry": registry_dir} if registry_dir else {})})
    return outputs["blessing"][0], model_summary.read_evaluation(outputs["evaluation"][0].uri)


@pytest.mark.parametrize("weights, reason", [
    (np.zeros_like, "it scores everything alike (0)"),
    (lambda w: np.full_like(w, np.nan), "scores are NaN or infinite"),
])
def test_the_gate_refuses_a_degenerate_model_naming_it_and_why(data, tiny, tmp_path, weights,
                                                                reason):
    blessing, found = _evaluate(_retrieval_export(data, tiny, tmp_path, weights), tiny, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 0
    assert (tmp_path / "blessing" / "NOT_BLESSED").exists()
    why = blessing.get_string_custom_property("reason")
    assert why.startswith("the retrieval model is degenerate: ") and reason in why, why
    assert found.failures == [why]


def test_a_healthy_model_passes_the_check_and_is_graded_by_tfma(data, tiny, tmp_path):
    model = _retrieval_export(data, tiny, tmp_path, lambda w: w)
    blessing, found = _evaluate(model, tiny, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 1, found.failures
    assert 0 < found.value(evaluation.top_k_metric(EvaluationConfig().top_k)) <= 1


def test_a_model_that_is_its_own_baseline_keeps_its_verdict(data, tiny, tmp_path,
                                                           monkeypatch):
    model = _retrieval_export(data, tiny, tmp_path, lambda w: w)
    registry_dir = str(tmp_path / "registry")
    first, found = _evaluate(model, tiny, tmp_path, registry_dir=registry_dir, name="1")
    assert first.get_int_custom_property("blessed") == 1
    # The rerun: its Trainer cached, the baseline is the same model. TFMA must not run.
    monkeypatch.setattr(rev.evaluator_executor.Executor, "Do", lambda *a: pytest.fail("re-ran"))
    again, kept = _evaluate(model, tiny, tmp_path, baseline=True, registry_dir=registry_dir,
                            name="2")
    assert again.get_int_custom_property("blessed") == 1
    assert again.get_string_custom_property("kept_from") == first.uri
    assert (tmp_path / "blessing2" / "BLESSED").exists()
    assert kept.metrics == found.metrics and kept.failures == []
    # Another bound is another question: evaluated again (here, it would have to run TFMA).
    with pytest.raises(pytest.fail.Exception, match="re-ran"):
        _evaluate(model, tiny, tmp_path, bound=0.01, baseline=True, registry_dir=registry_dir,
                  name="3")


def test_degenerate_names_non_finite_and_constant_scores():
    assert evaluation.degenerate(np.array([0.1, 0.2])) is None
    assert evaluation.degenerate(np.array([0.3, 0.3, 0.3])) == "it scores everything alike (0.3)"
    assert evaluation.degenerate(np.array([0.1, np.inf, np.nan])) == (
        "2 of its 3 scores are NaN or infinite")
    assert evaluation.degenerate(np.array([])) == "it gave no scores"
