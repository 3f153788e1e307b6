"""Recommender: both variants built from blessed stages, NDCG@k as numpy scores the saved
servable's lists, the bound and the baseline from its blessing registry, and nothing built
from unblessed stages."""

import json
import math
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from recsys_pipeline.components import recommender
from recsys_pipeline.serving import list_metrics
from recsys_pipeline.serving.list_metrics import ListEvaluation
from recsys_pipeline.trainer import export
from tests.components.conftest import input_artifact

K = 3


@pytest.fixture
def run(stages, tiny, tmp_path):
    """Runs the Recommender executor over the test stages; returns its output artifacts."""
    retrieval_dir, scann_dir, ranking_dir = stages
    counter = iter(range(100))

    def go(index_blessed=1, ranking_blessed=1, bound=0.0, tolerance=0.01, rank_weight=1.0,
           ranking=ranking_dir, inputs_of=None):
        n = next(counter)
        root = tmp_path / f"run{n}"
        if inputs_of is not None:  # a rerun: the same input artifacts, new outputs
            return execute(inputs_of, root, rank_weight, bound, tolerance)
        inputs = {
            "retrieval_model": [input_artifact(standard_artifacts.Model, root / "retrieval",
                                          retrieval_dir)],
            "index_model": [input_artifact(standard_artifacts.Model, root / "index", scann_dir)],
            "index_blessing": [input_artifact(standard_artifacts.ModelBlessing, root / "ib",
                                         blessed=index_blessed)],
            "ranking_model": [input_artifact(standard_artifacts.Model, root / "ranking",
                                        ranking)],
            "ranking_blessing": [input_artifact(standard_artifacts.ModelBlessing, root / "rb",
                                           blessed=ranking_blessed)],
            "examples": [input_artifact(standard_artifacts.Examples,
                                   os.path.dirname(tiny.raw_eval_dir))]}
        inputs["examples"][0].split_names = json.dumps(["eval"])
        return execute(inputs, root, rank_weight, bound, tolerance)

    def execute(inputs, root, rank_weight, bound, tolerance):
        outputs = {"model": [standard_artifacts.Model()],
                   "brute_force_model": [standard_artifacts.Model()],
                   "evaluation": [standard_artifacts.ModelEvaluation()],
                   "blessing": [standard_artifacts.ModelBlessing()]}
        for key, [artifact] in outputs.items():
            artifact.uri = str(root / "out" / key)
            os.makedirs(artifact.uri)
        executor = recommender.Recommender.EXECUTOR_SPEC.executor_class()
        executor.Do(inputs, outputs, {
            "candidates": 20, "rank_weight": rank_weight, "k": K, "value_bound": bound,
            "tolerance": tolerance, "blessing_registry": str(tmp_path / "registry")})
        return {**{key: artifact for key, [artifact] in outputs.items()}, "inputs": inputs}

    return go


def _numpy_ndcg(model_dir, tiny):
    """NDCG@K of the saved servable's graded lists (``gate_serve``: only the train items
    dropped), computed here from the raw eval rows."""
    first, gains = {}, {}
    for r in tiny.raw_eval_rows:
        user = r["user_id"]
        first[user] = min(first.get(user, r["timestamp"]), r["timestamp"])
        gains.setdefault(user, {})[r["item_id"]] = r["user_rating"]
    users = sorted(gains)
    loaded = tf.saved_model.load(model_dir)
    served = loaded.gate_serve(
        user_id=tf.constant(users), timestamp=tf.constant([first[u] for u in users], tf.int64),
        k=tf.constant([K] * len(users), tf.int64))
    scores = []
    for user, items in zip(users, served["item_ids"].numpy(), strict=True):
        dcg = sum(gains[user].get(m, 0.0) / math.log2(i + 2) for i, m in enumerate(items))
        best = sorted(gains[user].values(), reverse=True)[:K]
        scores.append(dcg / sum(g / math.log2(i + 2) for i, g in enumerate(best)))
    return float(np.mean(scores))


def test_builds_both_variants_and_scores_their_lists_as_numpy_does(run, tiny, tmp_path):
    out = run()
    assert out["blessing"].get_int_custom_property("blessed") == 1
    found = ListEvaluation.read(out["evaluation"].uri)
    metric = list_metrics.ndcg_metric(K)
    for key, name in (("model", "candidate"), ("brute_force_model", "brute_force")):
        saved = os.path.join(out[key].uri, "Format-Serving")
        assert export.read_metadata(saved).kind == "recommender"
        assert found.metrics[name][metric] == pytest.approx(_numpy_ndcg(saved, tiny), abs=1e-9)
        assert found.metrics[name][metric] > 0
        # What is served never lists an item of the examples' splits (here, the eval one).
        seen: dict = {}
        for r in tiny.raw_eval_rows:
            seen.setdefault(r["user_id"], set()).add(r["item_id"])
        users = sorted(seen)
        loaded = tf.saved_model.load(saved)
        lists = loaded.signatures["serving_default"](
            user_id=tf.constant(users), timestamp=tf.zeros([len(users)], tf.int64),
            k=tf.constant([K] * len(users), tf.int64))["item_ids"].numpy()
        assert not any(set(items) & seen[u] for u, items in zip(users, lists, strict=True))
        assert export.read_metadata(saved).seen_pairs == len(
            {(r["user_id"], r["item_id"]) for r in tiny.raw_eval_rows})
    assert found.failures == [] and "baseline" not in found.metrics
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "registry").glob("*.json")]
    assert record["model_uri"] == out["model"].uri
    # What the servable is made of, so that a rebuild of the same models is not pushed again.
    assert out["model"].get_string_custom_property("source_model").startswith("two-stage(")


def test_the_next_run_is_scored_against_the_last_blessed_recommender(run):
    first = run()
    second = run(rank_weight=0.0)
    found = ListEvaluation.read(second["evaluation"].uri)
    metric = list_metrics.ndcg_metric(K)
    baseline = ListEvaluation.read(first["evaluation"].uri).metrics["candidate"][metric]
    assert found.metrics["baseline"][metric] == pytest.approx(baseline, abs=1e-9)
    assert second["blessing"].get_string_custom_property("baseline_model") == first["model"].uri
    strict = run(tolerance=-1.0)  # must beat the baseline by 1: impossible
    assert strict["blessing"].get_int_custom_property("blessed") == 0
    reason = strict["blessing"].get_string_custom_property("reason")
    assert "differs from the last blessed model's by" in reason


def test_a_bound_failure_names_each_variant(run):
    out = run(bound=1.01)
    reason = out["blessing"].get_string_custom_property("reason")
    assert out["blessing"].get_int_custom_property("blessed") == 0
    # The two variants list the same items here: one failure names both.
    assert reason.count("is outside its bound (>= 1.01)") == 1 and "(both variants)" in reason


def test_gate_names_the_variant_each_failure_holds_for():
    assert recommender.gate("ndcg_at_3", {"candidate": 0.3, "brute_force": 0.05}, None, 0.1,
                            0.0) == ["ndcg_at_3 0.0500 is outside its bound (>= 0.1) "
                                     "(brute-force variant)"]
    assert recommender.gate("ndcg_at_3", {"candidate": 0.05, "brute_force": 0.3}, 0.3, 0.1,
                            0.01) == ["ndcg_at_3 0.0500 is outside its bound (>= 0.1)",
                                      "ndcg_at_3 differs from the last blessed model's by "
                                      "-0.2500, beyond the tolerance"]


@pytest.mark.parametrize("index_blessed, ranking_blessed, named", [
    (0, 1, "the ScaNN index was not blessed"), (1, 0, "the ranking model was not blessed")])
def test_nothing_is_built_from_an_unblessed_stage(run, index_blessed, ranking_blessed, named):
    out = run(index_blessed=index_blessed, ranking_blessed=ranking_blessed)
    assert out["blessing"].get_int_custom_property("blessed") == 0
    assert named in out["blessing"].get_string_custom_property("reason")
    assert os.listdir(out["model"].uri) == []
    assert ListEvaluation.read(out["evaluation"].uri).failures[0].startswith(named)


def test_a_ranking_model_scoring_nan_is_refused_naming_both_variants(run, data, tiny, tmp_path):
    from recsys_pipeline.trainer import ranking_trainer
    from recsys_pipeline.trainer.hparams import RankingHParams

    model, _, _ = ranking_trainer.train(data, RankingHParams(epochs=1, ensemble=1),
                                        tiny.train_files, tiny.eval_files)
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    nan_dir = str(tmp_path / "nan_ranking")
    ranking_trainer.export_model(model, data, nan_dir)
    out = run(ranking=nan_dir, rank_weight=0.5)
    assert out["blessing"].get_int_custom_property("blessed") == 0
    reason = out["blessing"].get_string_custom_property("reason")
    assert reason.startswith("the recommender is degenerate: ") and "NaN or infinite" in reason
    assert "(both variants)" in reason, reason
    assert ListEvaluation.read(out["evaluation"].uri).failures[0] == reason.split("; ")[0]


def test_a_rerun_with_the_same_inputs_keeps_the_blessed_recommender(run, capsys):
    first = run()
    capsys.readouterr()
    again = run(inputs_of=first["inputs"])
    assert "kept with its verdict" in capsys.readouterr().out  # not rebuilt nor re-scored
    blessing = again["blessing"]
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_string_custom_property("kept_from") == first["blessing"].uri
    assert blessing.get_string_custom_property("baseline_model") == first["model"].uri
    for key in ("model", "brute_force_model"):
        assert (pathlib.Path(again[key].uri) / "Format-Serving" / "saved_model.pb").is_file()
        assert again[key].get_string_custom_property("source_model") == \
            first[key].get_string_custom_property("source_model")
    assert ListEvaluation.read(again["evaluation"].uri) == ListEvaluation.read(
        first["evaluation"].uri)
    # Another setting is another recommender: built and scored again.
    other = run(inputs_of=first["inputs"], rank_weight=0.5)
    assert not other["blessing"].get_string_custom_property("kept_from")
