"""Cache fingerprints: each component's covers exactly the code it runs."""

import dataclasses
import json

import pytest

from recsys_pipeline.pipeline import fingerprint, nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.pipeline.pipeline import create_pipeline
from tests.conftest import make_ml100k

TRAINERS = [b.trainer for b in nodes.BRANCHES if b.trainer]
EVALUATORS = [b.evaluator for b in nodes.BRANCHES if not b.composed]  # TFMA's
RECOMMENDER = nodes.RECOMMENDER.evaluator
PUSHERS = [p.node_id for p in nodes.PUSHES]
# Every node that runs this project's code (the Resolvers and TFX's own components do not).
FINGERPRINTED = [nodes.EXAMPLE_GEN, nodes.ANOMALY_GATE, nodes.TRANSFORM, nodes.SCANN_INDEXER,
                 *TRAINERS, *EVALUATORS, RECOMMENDER, nodes.BULK_RECOMMENDATIONS, *PUSHERS]


def _fingerprints(data_dir) -> dict[str, str]:
    """Node id -> the source fingerprint TFX's cache key sees, for every fingerprinted node."""
    config = PipelineConfig()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  data_dir=str(data_dir)))
    config.sequential.enabled = True
    config.bulk.enabled = True
    found = {}
    for component in create_pipeline(config).components:
        props = component.exec_properties
        if props.get("source_fingerprint"):
            found[component.id] = props["source_fingerprint"]
        elif props.get("custom_config"):  # Transform's and the Trainers' code paths
            found[component.id] = json.loads(props["custom_config"])["source_fingerprint"]
    assert sorted(found) == sorted(FINGERPRINTED)
    return found


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_ml100k(tmp_path_factory.mktemp("ml100k"))


@pytest.fixture(scope="module")
def unedited(data_dir):
    return _fingerprints(data_dir)


def _edited(monkeypatch, module: str) -> None:
    """Makes the fingerprints read ``module``'s source with an edit appended."""
    path = fingerprint._module_file(module)
    read = fingerprint._read
    monkeypatch.setattr(fingerprint, "read_source", lambda p: read(p) + (
        "\n# an edit\n" if p == path else ""))


@pytest.mark.parametrize("module, changed", [
    ("recsys_pipeline.serving.recommend", []),
    ("recsys_pipeline.serving.layout", PUSHERS),
    ("recsys_pipeline.serving.index", [nodes.SCANN_INDEXER]),
    ("recsys_pipeline.components.scann_indexer", [nodes.SCANN_INDEXER]),
    ("recsys_pipeline.trainer.models", TRAINERS),
    ("recsys_pipeline.trainer.ranking_trainer", [nodes.RANKING.trainer]),
    ("recsys_pipeline.components.recsys_evaluator", EVALUATORS),
    ("recsys_pipeline.data.movielens", [nodes.EXAMPLE_GEN]),
    ("recsys_pipeline.data.interactions", [nodes.EXAMPLE_GEN]),
    ("recsys_pipeline.components.anomaly_gate", [nodes.ANOMALY_GATE]),
    ("recsys_pipeline.serving.two_stage", [RECOMMENDER]),
    # The Evaluators write a refusal as the recommender's ListEvaluation does (list_metrics).
    ("recsys_pipeline.serving.batch", [RECOMMENDER, nodes.BULK_RECOMMENDATIONS, *EVALUATORS]),
    ("recsys_pipeline.serving.bulk", [nodes.BULK_RECOMMENDATIONS]),
    # The Evaluators' health check calls the export's evaluate signature (trainer.export).
    ("recsys_pipeline.transform.features",
     [n for n in FINGERPRINTED if n != nodes.ANOMALY_GATE]),
])
def test_an_edit_reruns_exactly_the_components_that_run_the_edited_code(
        data_dir, unedited, monkeypatch, module, changed):
    before = unedited
    _edited(monkeypatch, module)
    after = _fingerprints(data_dir)
    assert sorted(n for n in before if before[n] != after[n]) == sorted(changed)


def test_closure_follows_imports_inside_functions_and_from_package_imports():
    # serving_pusher imports layout by ``from package import module``; history imports
    # model_summary inside a function.
    assert "recsys_pipeline.serving.layout" in fingerprint.closure(
        ["recsys_pipeline.components.serving_pusher"])
    assert "recsys_pipeline.model_summary" in fingerprint.closure(["recsys_pipeline.history"])
    assert "recsys_pipeline.serving.recommend" not in fingerprint.closure(
        [nodes.RETRIEVAL.run_fn.rsplit(".", 1)[0]])


def test_a_name_outside_the_project_is_refused():
    with pytest.raises(ValueError, match="json is not a module of recsys_pipeline"):
        fingerprint.closure(["json"])
