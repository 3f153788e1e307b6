"""End to end on MovieLens 100K: `recsys run` with the default config, the cache, failures.

Runs the installed console script in a subprocess, exactly as `make run` does; pushed models
are loaded in fresh processes, as TF Serving would.
"""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline import metadata, model_summary
from recsys_pipeline.components import scann_indexer
from recsys_pipeline.data import splits
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving import layout
from recsys_pipeline.trainer import export
from recsys_pipeline.transform import features as F
from tests.conftest import write_subset

pytestmark = pytest.mark.e2e

RECSYS = str(pathlib.Path(sys.executable).parent / "recsys")
DATA_COMPONENTS = ["ImportSchemaGen", "InteractionsExampleGen", "StatisticsGen",
                   "ExampleValidator", "AnomalyGate", "Transform"]
MODEL_COMPONENTS = ["RetrievalTrainer", "RetrievalBaseline", "RetrievalEvaluator", "ScannIndexer",
                    "ScannPusher", "BruteForcePusher", "RankingTrainer", "RankingBaseline",
                    "RankingEvaluator", "RankingPusher", "Recommender", "RecommenderPusher",
                    "RecommenderBruteForcePusher"]
COMPONENTS = DATA_COMPONENTS + MODEL_COMPONENTS


def _recsys(*args, data_dir=None, tmp_dir=None):
    env = dict(os.environ)
    if data_dir is not None:
        env["RECSYS_DATA_DIR"] = str(data_dir)
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    return subprocess.run([RECSYS, *args], capture_output=True, text=True, env=env,
                          timeout=1200)


def _statuses(stdout):
    return dict(re.findall(r"^  (\w+)\s+(ran|cached|failed|not run)\s", stdout, flags=re.M))


def _models(stdout):
    """The summary's model table: model name -> (metric, value, baseline, blessed, pushed)."""
    table = stdout[stdout.index("Models:"):]
    rows = re.findall(r"^  (\w+)\s+(\w+)\s+([\d.]+|-)\s+[<>]= [\d.]+\s+([\d.]+|-)\s+(yes|NO)"
                      r"\s+(.*)$", table, flags=re.M)
    return {m: (metric, None if v == "-" else float(v), None if b == "-" else float(b),
                blessed == "yes", pushed) for m, metric, v, b, blessed, pushed in rows}


@pytest.fixture(scope="module")
def first_run_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("system-tmp")


@pytest.fixture(scope="module")
def first_run(real_ml100k, tmp_path_factory, first_run_tmp):
    out = tmp_path_factory.mktemp("run") / "outputs"
    result = _recsys("run", "--output-dir", str(out), data_dir=real_ml100k,
                     tmp_dir=first_run_tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_first_run_leaves_nothing_in_the_temp_dir(first_run, first_run_tmp):
    # TFX builds a 41 MB sdist of itself per Beam component and Beam leaves staging
    # directories; the run's own temp directory takes them with it.
    assert sorted(p.name for p in first_run_tmp.iterdir()) == []


def test_first_run_executes_every_component_and_prints_outputs(first_run, real_ml100k):
    out, result = first_run
    assert _statuses(result.stdout) == {c: "ran" for c in COMPONENTS}
    for label in ("transformed examples", "vocabularies"):
        match = re.search(rf"^  {label}:\s+(\S+)$", result.stdout, flags=re.M)
        assert match and os.path.isdir(match.group(1)), result.stdout
    epochs = PipelineConfig().retrieval.epochs, PipelineConfig().ranking.epochs
    for name in ["[1/19]", "] Transform ...", f"retrieval epoch {epochs[0]}/{epochs[0]}",
                 f"ranking epoch {epochs[1]}/{epochs[1]}", "ScaNN recall@10 (index top-k) ="]:
        assert name in result.stdout  # progress per component, per epoch, for the index


def test_first_run_blesses_and_pushes_both_models_with_the_target_quality(first_run):
    out, result = first_run
    models = _models(result.stdout)
    assert set(models) == {nodes.SCANN_MODEL, nodes.BRUTE_FORCE_MODEL, nodes.RANKING_MODEL,
                           nodes.RECOMMENDER_MODEL,
                           nodes.RECOMMENDER_BRUTE_FORCE_MODEL}, result.stdout
    metric, accuracy, baseline, blessed, pushed = models[nodes.SCANN_MODEL]
    assert metric == "top_100_accuracy" and accuracy >= 0.25 and baseline is None and blessed
    metric, rmse, baseline, blessed, _ = models[nodes.RANKING_MODEL]
    assert metric == "root_mean_squared_error" and rmse <= 1.0 and blessed
    bound = PipelineConfig().evaluation.min_ndcg
    for name in (nodes.RECOMMENDER_MODEL, nodes.RECOMMENDER_BRUTE_FORCE_MODEL):
        metric, ndcg, baseline, blessed, _ = models[name]
        assert metric == "ndcg_at_10" and ndcg >= bound and baseline is None and blessed
    for name, (*_, pushed) in models.items():
        assert pushed == layout.latest_version_dir(str(out / "serving"), name), pushed
    assert re.search(r"ScaNN recall@10\s+([\d.]+)\s+>= 0.95", result.stdout)
    assert (out / "serving" / layout.MODELS_CONFIG).is_file()


def _eval_queries(out, n=1000):
    examples = os.path.join(_artifact(out, "InteractionsExampleGen", "examples"), "Split-eval")
    users, timestamps, items = [], [], []
    spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.string),
            F.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
            F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(examples + "/*"),
                                          compression_type="GZIP").take(n):
        parsed = tf.io.parse_single_example(record, spec)
        users.append(parsed[F.USER_ID].numpy())
        items.append(parsed[F.ITEM_ID].numpy())
        timestamps.append(int(parsed[F.TIMESTAMP]))
    return np.array(users, object), np.array(timestamps), np.array(items, object)


def _artifact(out, component, key):
    root = out / "tfx" / "recsys-pipeline" / component / key
    return str(max(root.iterdir(), key=lambda p: int(p.name)))


def test_served_scann_recall_is_the_gated_recall_and_meets_the_bound(first_run, fresh_signature):
    # The gate's recall is an estimate on its held-out queries (each eval user at their first
    # eval rating, every other user); served in a fresh process, the pushed index must give
    # those queries the recall the gate recorded, and that recall must clear the bound.
    out, _ = first_run
    params = PipelineConfig().index
    users, timestamps = scann_indexer.eval_queries(
        os.path.join(_artifact(out, "InteractionsExampleGen", "examples"), "Split-eval"),
        params.max_queries)
    users, timestamps = np.array(users[1::2], object), np.array(timestamps[1::2])
    base = str(out / "serving")
    scann_dir = layout.latest_version_dir(base, nodes.SCANN_MODEL)
    gated = export.read_metadata(scann_dir).index
    assert gated["queries"] == len(users)
    scann = fresh_signature(scann_dir, "serving_default", user_id=users, timestamp=timestamps)
    exact = fresh_signature(layout.latest_version_dir(base, nodes.BRUTE_FORCE_MODEL),
                            "serving_default", user_id=users, timestamp=timestamps)
    k = gated["recall_k"]
    found = [len(set(a[:k]) & set(b[:k])) for a, b in
             zip(scann["item_ids"], exact["item_ids"], strict=True)]
    recall = sum(found) / (k * len(found))
    # Not bit-equal: the gate's exact top-k is numpy's, the served one TensorFlow's (float ties).
    assert recall == pytest.approx(gated["recall"], abs=0.002), (recall, gated["recall"])
    assert gated["recall"] >= params.min_recall


def test_tfma_top_100_equals_numpy_on_the_pushed_embeddings(first_run, fresh_signature):
    out, _ = first_run
    users, timestamps, items = _eval_queries(out, n=10**6)
    brute_force = layout.latest_version_dir(str(out / "serving"), nodes.BRUTE_FORCE_MODEL)
    queries = fresh_signature(brute_force, "query_embedding", user_id=users,
                              timestamp=timestamps)["embedding"]
    loaded = tf.saved_model.load(brute_force)
    candidates = loaded.candidate_embeddings.numpy()
    row = {m: i for i, m in enumerate(loaded.candidate_ids.numpy())}
    true = np.array([row[m] for m in items])
    hits = []
    for start in range(0, len(true), 4096):
        scores = queries[start:start + 4096] @ candidates.T
        idx = true[start:start + 4096]
        positive = scores[np.arange(len(idx)), idx]
        hits.append((scores > positive[:, None]).sum(axis=1) < 100)
    numpy_accuracy = np.concatenate(hits).mean()
    evaluation = model_summary.read_evaluation(_artifact(out, "RetrievalEvaluator", "evaluation"))
    assert len(true) == evaluation.value("example_count")
    assert abs(evaluation.value("top_100_accuracy") - numpy_accuracy) < 1e-4


def test_pushed_versions_replay_their_warmup_requests_for_every_signature(first_run,
                                                                          replay_warmup):
    out, _ = first_run
    for name in nodes.MODEL_NAMES:
        version = layout.latest_version_dir(str(out / "serving"), name)
        answered = replay_warmup(version)
        assert answered and answered[0][0] == "serving_default", name
        # Every signature but TFMA's ``evaluate`` (fed serialized examples, not requests).
        served = set(layout.signature_inputs(version)) - {"evaluate"}
        assert {signature for signature, _ in answered} == served, (name, answered)
        assert all(outputs for _, outputs in answered), name


def _rated(real_ml100k):
    """user id -> every item id the user rated in u.data (train and eval splits alike)."""
    rated: dict[str, set] = {}
    with open(real_ml100k / "u.data") as f:
        for line in f:
            user, item, _, _ = line.split("\t")
            rated.setdefault(user, set()).add(item)
    return rated


def test_recommend_answers_as_the_served_recommender_in_a_fresh_process(
        first_run, real_ml100k, fresh_signature):
    out, _ = first_run
    result = _recsys("recommend", "--output-dir", str(out), "--user-id", "42", "--k", "5")
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\s+\d+\s+(\d+)\s+([\d.-]+)\s+([\d.]+)\s+([\d.-]+)\s+(.+)$",
                      result.stdout, flags=re.M)
    assert len(rows) == 5, result.stdout
    ratings, scores = [float(r[2]) for r in rows], [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    version = layout.latest_version_dir(str(out / "serving"), nodes.RECOMMENDER_MODEL)
    assert f"{nodes.RECOMMENDER_MODEL}: {version}" in result.stdout
    served = fresh_signature(version, "serving_default", user_id=np.array([b"42"], object),
                             timestamp=np.array([0], np.int64), k=np.array([5], np.int64))
    assert [m.decode() for m in served["item_ids"][0]] == [r[0] for r in rows]
    np.testing.assert_allclose(served["ranking_scores"][0], ratings, atol=0.005)  # 2 decimals
    assert rows and not _rated(real_ml100k)["42"] & {r[0] for r in rows}

    unknown = _recsys("recommend", "--output-dir", str(out), "--user-id", "no-such-user")
    assert unknown.returncode == 0, unknown.stderr
    assert "not in the training data" in unknown.stdout
    assert "Star Wars (1977)" in unknown.stdout  # the most-rated item of ML-100K

    n = PipelineConfig().recommender.candidates
    too_many = _recsys("recommend", "--output-dir", str(out), "--user-id", "42", "--k", str(n + 1))
    assert too_many.returncode == 2
    assert f"--k {n + 1} must be from 1 to the {n} candidates" in too_many.stderr


@pytest.mark.parametrize("model", [nodes.RECOMMENDER_MODEL, nodes.RECOMMENDER_BRUTE_FORCE_MODEL])
def test_the_served_recommenders_never_return_a_item_the_user_rated_anywhere(
        first_run, real_ml100k, fresh_signature, model):
    out, _ = first_run
    rated = _rated(real_ml100k)
    users = np.array(sorted(rated), object)
    served = fresh_signature(layout.latest_version_dir(str(out / "serving"), model),
                             "serving_default", user_id=users,
                             timestamp=np.zeros(len(users), np.int64),
                             k=np.full(len(users), 10, np.int64))
    assert served["known_user"].all()
    for user, items in zip(users, served["item_ids"], strict=True):
        found = {m.decode() for m in items} - {""}
        assert len(found) == 10 and not found & rated[user], user


def test_bulk_writes_every_users_top_10_without_rated_items(first_run, real_ml100k, tmp_path):
    import pyarrow.parquet as pq

    out, _ = first_run
    path = tmp_path / "recs.parquet"
    result = _recsys("bulk", "--output-dir", str(out), "--output", str(path))
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(path).to_pylist()
    rated = _rated(real_ml100k)
    assert len(rows) == 10 * len(rated)  # one row per user x k: every user has 10 unrated
    by_user: dict[str, list] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    assert set(by_user) == set(rated)
    for user, found in by_user.items():
        assert sorted(r["rank"] for r in found) == list(range(1, 11))
        assert not {r["item_id"] for r in found} & rated[user], user
    covered = len({r["item_id"] for r in rows})
    catalogue = sum(1 for _ in open(real_ml100k / "u.item", encoding="latin-1"))
    assert f"catalogue coverage: {covered / catalogue:.1%} ({covered} of {catalogue} items)" \
        in result.stdout, result.stdout


def test_vocabularies_match_the_training_split(first_run, real_ml100k):
    out, result = first_run
    assets = re.search(r"^  vocabularies:\s+(\S+)$", result.stdout, flags=re.M).group(1)
    train_users, train_items = set(), set()
    with open(real_ml100k / "u.data") as f:
        for line in f:
            user, item, _, ts = line.split("\t")
            if splits.random_split(user, item, int(ts), 42, 0.2) == splits.TRAIN:
                train_users.add(user)
                train_items.add(item)

    def vocab(name):
        with open(os.path.join(assets, name), "rb") as f:
            return {line.rstrip(b"\n").decode() for line in f}

    assert vocab("user_id") == train_users  # Transform analyzes the train split only
    assert vocab("item_id") == train_items
    assert vocab("user_feature_gender") == {"M", "F"}  # a declared user feature's
    assert len(vocab("item_genres")) == 19


def test_second_run_reuses_data_and_models_and_pushes_nothing_new(first_run, real_ml100k):
    out = first_run[0]
    before = {n: layout.versions(str(out / "serving" / n)) for n in nodes.MODEL_NAMES}
    result = _recsys("run", "--output-dir", str(out), data_dir=real_ml100k)
    assert result.returncode == 0, result.stderr
    statuses = _statuses(result.stdout)
    for name in DATA_COMPONENTS + ["RetrievalTrainer", "RankingTrainer"]:
        assert statuses[name] == "cached", result.stdout
    models = _models(result.stdout)
    first_models = _models(first_run[1].stdout)
    for name, (_, value, baseline, blessed, pushed) in models.items():
        # Each candidate is its own baseline now: its gate kept the verdict (and evaluation)
        # it gave the same model in the first run, when there was no baseline yet.
        assert blessed and baseline is None and value == first_models[name][1], result.stdout
        assert pushed.startswith("not pushed: unchanged"), pushed
    # Nothing redone for nothing: each gate kept the verdict it gave these very inputs, and
    # the index and the recommender were copied, not tuned or rebuilt.
    config = PipelineConfig()
    config.output_dir = str(out)
    rerun = metadata.summarize_runs(config)[-1]
    for node, key in ((nodes.RETRIEVAL.evaluator, "blessing"),
                      (nodes.RANKING.evaluator, "blessing"),
                      (nodes.SCANN_INDEXER, "index_blessing"),
                      (nodes.RECOMMENDER.evaluator, "blessing")):
        assert rerun.properties(node, key).get("kept_from"), (node, rerun.properties(node, key))
    assert {n: layout.versions(str(out / "serving" / n)) for n in nodes.MODEL_NAMES} == before


def test_runs_and_lineage_read_the_history(first_run, real_ml100k):
    out, result = first_run
    runs = _recsys("runs", "--output-dir", str(out))
    assert runs.returncode == 0, runs.stderr
    rows = runs.stdout.splitlines()[1:]
    assert len(rows) >= 1, runs.stdout  # the first run, and the second if it ran
    first = rows[0]
    versions = {n: layout.versions(str(out / "serving" / n))[0] for n in nodes.MODEL_NAMES}
    assert all(f"{n}={v}" in first for n, v in versions.items()), first
    assert " 19      0 " in first and "yes/yes" in first and str(real_ml100k) in first
    models = _models(result.stdout)
    assert f"{models['retrieval'][1]:.4f}" in first and f"{models['ranking'][1]:.4f}" in first

    lineage = _recsys("lineage", "--output-dir", str(out), "--model", "retrieval",
                      "--version", str(versions["retrieval"]))
    assert lineage.returncode == 0, lineage.stderr
    text = lineage.stdout
    for node in ("ScannPusher", "ScannIndexer", "RetrievalEvaluator", "RetrievalTrainer",
                 "Transform", "InteractionsExampleGen"):
        assert f"{node} (execution" in text, text
    assert str(real_ml100k) in text and "recsys_pipeline.trainer.retrieval_trainer.run_fn" in text
    rate = PipelineConfig().retrieval.learning_rate  # the Trainer's hyperparameters are shown
    assert f'\\"learning_rate\\": {rate}' in text or f'"learning_rate": {rate}' in text, text
    missing = _recsys("lineage", "--output-dir", str(out), "--version", "1")
    assert missing.returncode == 2 and "no pushed version 1" in missing.stderr


def test_report_renders_in_headless_chromium(first_run):
    from tests.browser import Browser

    out, _ = first_run
    result = _recsys("report", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    page = out / "report" / "index.html"
    assert result.stdout.strip() == f"Report: {page}"
    text = page.read_text()
    # Self-contained: no scripts, nothing loaded from anywhere.
    assert "<script" not in text and not re.search(r"\s(src|href)=", text)
    shot = out / "report" / "screenshot.png"
    with Browser(width=1400, height=1200) as browser:
        browser.load(page.as_uri())
        assert browser.errors == []
        statuses = browser.evaluate(
            "[...document.querySelectorAll('#dag .node')].map(n => n.dataset.status)")
        assert len(statuses) == 19 and set(statuses) <= {"ran", "cached"}, statuses
        models = browser.evaluate("document.getElementById('models').innerText")
        assert "top_100_accuracy" in models and "root_mean_squared_error" in models
        assert "ndcg_at_10" in models
        data = browser.evaluate("document.getElementById('data').innerText")
        assert "train" in data and "eval" in data
        runs = browser.evaluate("document.querySelectorAll('#runs tr').length") - 1
        assert runs >= 1 and browser.evaluate(
            "document.querySelectorAll('svg .point').length") == 3 * runs  # every branch
        index = browser.evaluate("document.getElementById('index').innerText")
        assert "recall@10" in index and "one query, scann" in index
        browser.screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000


def _subset(real_ml100k, tmp_path, n_ratings=3000):
    return write_subset(real_ml100k, tmp_path / "ml-100k", n_ratings)


def test_corrupt_ratings_line_fails_with_file_and_line(real_ml100k, tmp_path):
    d = _subset(real_ml100k, tmp_path)
    lines = (d / "u.data").read_text().splitlines(keepends=True)
    lines[499] = "196\t242\t3\n"  # truncated: no timestamp
    (d / "u.data").write_text("".join(lines))
    result = _recsys("run", "--output-dir", str(tmp_path / "out"), "--data-dir", str(d))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {d / 'u.data'} line 500: 3 fields, but the declared header has 4" in \
        result.stderr
    assert "Transform" not in _statuses(result.stdout)


def test_schema_anomaly_stops_the_run_before_transform(real_ml100k, tmp_path):
    d = _subset(real_ml100k, tmp_path)
    users = (d / "u.user").read_text().splitlines(keepends=True)
    users[0] = "1|24|X|technician|85711\n"  # parses, but outside the schema's gender domain
    (d / "u.user").write_text("".join(users))
    out = tmp_path / "out"
    result = _recsys("run", "--output-dir", str(out), "--data-dir", str(d))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data validation found anomalies" in result.stderr
    assert "feature 'user_feature_gender'" in result.stderr
    assert not (out / "tfx" / "recsys-pipeline" / "Transform").exists()
