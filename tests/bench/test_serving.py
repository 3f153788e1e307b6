"""Smoke test of bench/serving.py on tiny sizes: a stand-in retrieval export (the signatures
and variable the benchmark reads), a few hundred candidates, a few dozen queries."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from recsys_pipeline.transform import features as F

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "serving.py"


class _Retrieval(tf.Module):
    """query_embedding(user_id, timestamp) and candidate_embeddings, like the real export."""

    def __init__(self, users, dim=8, items=60):
        super().__init__()
        rng = np.random.default_rng(1)
        self.users = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(users), tf.range(len(users), dtype=tf.int64)), default_value=0)
        self.user_vectors = tf.Variable(rng.standard_normal((len(users), dim)), dtype=tf.float32)
        self.candidate_embeddings = tf.Variable(rng.standard_normal((items, dim)),
                                                dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="timestamp")])
    def query_embedding(self, user_id, timestamp):
        return {"embedding": tf.gather(self.user_vectors, self.users.lookup(user_id))}


def _stand_in(tmp_path):
    users = [f"u{i}" for i in range(30)]
    model = _Retrieval(users)
    path = str(tmp_path / "model")
    tf.saved_model.save(model, path, signatures={"query_embedding": model.query_embedding})
    eval_dir = tmp_path / "Split-eval"
    eval_dir.mkdir()
    with tf.io.TFRecordWriter(str(eval_dir / "data.gz"), options="GZIP") as writer:
        for i in range(80):
            example = tf.train.Example(features=tf.train.Features(feature={
                F.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[users[i % 30].encode()])),
                F.TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}))
            writer.write(example.SerializeToString())
    return path, str(eval_dir)


def test_serving_benchmark_prints_its_table(tmp_path):
    model, eval_dir = _stand_in(tmp_path)
    result = subprocess.run(
        [sys.executable, str(BENCH), "--model-dir", model, "--eval-dir", eval_dir,
         "--candidates", "600", "--queries", "40", "--target-recall", "0.5", "--clients", "2",
         "--two-stage", ""],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (brute force \(pure TF\)|ScaNN, [a-zA-Z ]+) \| "
                      r"([\d.]+) \|", result.stdout, flags=re.M)
    assert [name for name, _ in rows] == ["brute force (pure TF)", "ScaNN, TFRS defaults",
                                          "ScaNN, pipeline defaults", "ScaNN, tuned"], result.stdout
    recall = dict(rows)
    assert float(recall["brute force (pure TF)"]) == 1.0  # exact is exact
    assert float(recall["ScaNN, tuned"]) > 0.3
    assert "600 candidates, 40 real queries" in result.stdout
    assert "| 2 clients q/s | × BF |" in result.stdout
    assert "ScaNN, tuned: {" in result.stdout
    assert "ScaNN, pipeline defaults: {" in result.stdout
    assert re.search(r"^\| no search \(call floor\) \| - \| [\d.]+ \|", result.stdout, re.M)
    assert re.search(r"ScaNN's own searcher .*: [\d.]+ ms per query \(recall [\d.]+\)",
                     result.stdout)
    shares = re.search(r"^\| recall \| (.*) \|$", result.stdout, re.M).group(1).split(" | ")
    assert len(shares) == 5 and float(shares[-1]) >= float(shares[0])  # more leaves, more found


def test_one_by_one_pads_short_results_with_an_id_no_candidate_has():
    import scann

    spec = importlib.util.spec_from_file_location("bench_serving", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(0)
    candidates = rng.standard_normal((600, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    # Three candidates rescored per query: ScaNN returns three of the K asked for.
    searcher = (scann.scann_ops_pybind.builder(candidates, bench.K, "dot_product")
                .tree(num_leaves=4, num_leaves_to_search=4, training_sample_size=600)
                .score_ah(2).reorder(bench.K).build())
    ids = bench.one_by_one(searcher, queries, pre_reorder_num_neighbors=3)
    assert ids.shape == (20, bench.K)
    assert (ids[:, 3:] == -1).all() and (ids[:, :3] >= 0).all(), ids
    for row, q in enumerate(queries):
        found = searcher.search(q, pre_reorder_num_neighbors=3)[0]
        assert ids[row, :len(found)].tolist() == found.tolist()


def test_whole_requests_of_the_recommender_and_of_retrieval_alone_are_measured(stages, tiny):
    # The real exports of the serving tests (a tiny catalogue, grown to 600 candidates).
    retrieval_dir, _, ranking_dir = stages
    result = subprocess.run(
        [sys.executable, str(BENCH), "--model-dir", retrieval_dir, "--eval-dir",
         tiny.raw_eval_dir, "--ranking-dir", ranking_dir, "--candidates", "600", "--queries",
         "40", "--target-recall", "0.5", "--clients", "2", "--two-stage", "20,40", "--users",
         "20"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Whole requests at 600 candidates" in result.stdout
    rows = re.findall(r"^\| (retrieval alone \(ScaNN, top 10\)|two-stage, N=\d+, rank_weight "
                      r"[\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$",
                      result.stdout, flags=re.M)
    assert [r[0].split(",")[:2] for r in rows] == [
        ["retrieval alone (ScaNN", " top 10)"], ["two-stage", " N=20"], ["two-stage", " N=40"]]
    assert all(0 < float(p50) <= float(p99) for _, p50, p99, *_ in rows), rows
