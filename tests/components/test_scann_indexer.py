"""ScannIndexer: a rerun given the same model, examples and settings keeps the recorded index
and verdict instead of building and tuning it again; other settings build anew."""

import json
import os

import pytest
from tfx.types import standard_artifacts

from recsys_pipeline.components import scann_indexer
from recsys_pipeline.serving import index
from tests.components.conftest import input_artifact


@pytest.fixture
def inputs(stages, tiny, tmp_path):
    examples = input_artifact(standard_artifacts.Examples, os.path.dirname(tiny.raw_eval_dir))
    examples.split_names = json.dumps(["eval"])
    return {"model": [input_artifact(standard_artifacts.Model, tmp_path / "model", stages[0])],
            "model_blessing": [input_artifact(standard_artifacts.ModelBlessing, tmp_path / "b",
                                         blessed=1)],
            "examples": [examples]}


def _index(inputs, tmp_path, name, registry, **params):
    outputs = {"index_model": [standard_artifacts.Model()],
               "index_blessing": [standard_artifacts.ModelBlessing()]}
    for key, [artifact] in outputs.items():
        artifact.uri = str(tmp_path / name / key)
        os.makedirs(artifact.uri)
    settings = {"k": 20, "recall_k": 3, "num_leaves": 2, "num_leaves_to_search": 2,
                "num_reordering_candidates": 20, "max_queries": 40, **params}
    executor = scann_indexer.ScannIndexer.EXECUTOR_SPEC.executor_class()
    executor.Do(inputs, outputs, {"index_params": json.dumps(settings, sort_keys=True),
                                  "source_fingerprint": "f", "reuse_registry": registry})
    return {key: artifact for key, [artifact] in outputs.items()}


def test_a_rerun_with_the_same_inputs_keeps_the_index(inputs, tmp_path, monkeypatch):
    registry = str(tmp_path / "registry")
    first = _index(inputs, tmp_path, "first", registry)
    recall = first["index_blessing"].get_float_custom_property("recall")
    assert first["index_blessing"].get_int_custom_property("blessed") == 1
    built = index.build_scann_export
    monkeypatch.setattr(index, "build_scann_export",
                        lambda *a, **k: pytest.fail("built and tuned again"))
    again = _index(inputs, tmp_path, "again", registry)
    blessing = again["index_blessing"]
    assert blessing.get_string_custom_property("kept_from") == first["index_model"].uri
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_float_custom_property("recall") == recall
    assert blessing.get_string_custom_property("report") == \
        first["index_blessing"].get_string_custom_property("report")
    assert os.path.isfile(os.path.join(again["index_model"].uri, "Format-Serving",
                                       "saved_model.pb"))
    monkeypatch.setattr(index, "build_scann_export", built)
    other = _index(inputs, tmp_path, "other", registry, recall_k=5)  # other settings: built
    assert not other["index_blessing"].get_string_custom_property("kept_from")
