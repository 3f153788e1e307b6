"""Serving benchmark: exact brute force vs ScaNN (TFRS defaults) vs ScaNN (tuned), at scale.

    .venv/bin/python bench/serving.py [--output-dir outputs] [--candidates 1000000]

From a trained retrieval model (the newest pushed ``retrieval_brute_force`` version under
``--output-dir``; if there is none, ``recsys run`` trains one first), it builds a candidate
set of ``--candidates`` items -- the real catalogue's embeddings plus copies with each
coordinate scaled by a uniform random factor, as TFRS's efficient-serving guide does -- and
indexes it: exact brute force, ScaNN with TFRS's default settings, ScaNN with the pipeline's
``[index]`` defaults at this size (``IndexParams.resolved``, built by ``index.build_scann``)
and ScaNN tuned here (leaf count, k-means iterations, leaves searched, candidates rescored;
the tuner's trees use the pipeline's own ``index.configure``). Each index
is saved as a SavedModel (``search(query_embedding) -> ids, scores``) and measured in a fresh
process, as a server would run it: recall@10 against exact search (the ``recall_at_k`` the
pipeline's index gate uses) for ``--queries`` real user queries (the query tower on eval-split
users and times), single-query latency p50/p99, batch throughput, resident memory; plus index
build time and SavedModel size. Single queries are measured two ways: one client calling one
query at a time (latency, and its inverse as q/s), and ``--clients`` clients (default: one per
core) each calling single queries at once, as requests reach a loaded server. "Tuned" is chosen
on half of the queries (the fastest search setting, timed one query per call, whose recall
clears the target by a margin) and graded on the other half. Prints one markdown table with
ratios against brute force, with a last row that calls a SavedModel of the same signature doing
no search (the per-call floor every index pays in this harness). Then where a single query's
time goes: that floor, ScaNN's own searcher at the tuned settings without TensorFlow, the
resulting ceiling on the ratio, and the recall reachable per share of leaves searched when
those leaves are scored exactly.

Then whole requests, as clients send them to TF Serving (``--two-stage``, default 100,200,500;
empty to skip): the two-stage recommender (``serving/two_stage.py``: the user's query tower,
the tuned ScaNN index over the same candidates searched for N plus the request's rated items,
those dropped, the pushed ranking model on N, ``recommender.rank_weight``, top 10) for each N,
beside retrieval alone (``ScannExport``: query tower, the same index, top 10), each a SavedModel
called ``serving_default(user_id, timestamp[, k])`` in a fresh process with the real eval
users: p50/p99 of one client's requests one at a time, and of ``--clients`` clients' at once.
A candidate beyond the real catalogue stands for the item it was copied from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Optional

import numpy as np

from recsys_pipeline.serving.index_params import IndexParams, ScannSettings

K = 10
MEASURE = r"""
import json, sys, threading, time
import numpy as np
import scann  # registers the Scann ops before a ScaNN SavedModel loads
import tensorflow as tf
path, queries_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
batch, clients = int(sys.argv[4]), int(sys.argv[5])
queries = np.load(queries_path)
loaded = tf.saved_model.load(path)
search = loaded.signatures["search"]
one = [tf.constant(q[None, :]) for q in queries]
search(query_embedding=one[0])  # warm-up: graph tracing and allocation are not per query
times, ids = [], []
for q in one:
    started = time.perf_counter()
    result = search(query_embedding=q)
    times.append(time.perf_counter() - started)
    ids.append(result["ids"].numpy()[0])
batches = [tf.constant(queries[i:i + batch]) for i in range(0, len(queries), batch)]
search(query_embedding=batches[0])
started, done = time.perf_counter(), 0
while time.perf_counter() - started < 3.0 or done == 0:
    for b in batches:
        search(query_embedding=b)
        done += int(b.shape[0])
elapsed = time.perf_counter() - started
# Single-query requests from several clients at once, as a server under load gets them.
served = [0] * clients
def client(c):
    i = c
    while time.perf_counter() < deadline:
        search(query_embedding=one[i % len(one)])
        served[c] += 1
        i += clients
threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
concurrent_started = time.perf_counter()
deadline = concurrent_started + 3.0
for t in threads:
    t.start()
for t in threads:
    t.join()
concurrent_qps = sum(served) / (time.perf_counter() - concurrent_started)
np.save(out_path, np.array(ids))
# Peak resident memory of this process: VmHWM (ru_maxrss would carry the parent's peak over
# the fork and exec).
with open("/proc/self/status") as f:
    hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"p50_ms": 1000 * float(np.percentile(times, 50)),
                  "p99_ms": 1000 * float(np.percentile(times, 99)),
                  "single_qps": len(times) / sum(times), "batch_qps": done / elapsed,
                  "concurrent_qps": concurrent_qps,
                  "rss_mb": hwm_kb / 1024}))
"""


MEASURE_REQUESTS = r"""
import json, sys, threading, time
import numpy as np
import scann  # registers the Scann ops before a ScaNN SavedModel loads
import tensorflow as tf
path, users_path, clients, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pairs = json.loads(open(users_path).read())
serve = tf.saved_model.load(path).signatures["serving_default"]
def request(i):
    user, when = pairs[i % len(pairs)]
    args = {"user_id": tf.constant([user]), "timestamp": tf.constant([when], tf.int64)}
    if k:
        args["k"] = tf.constant([k], tf.int64)
    started = time.perf_counter()
    serve(**args)
    return time.perf_counter() - started
for i in range(20):
    request(i)  # warm-up: tracing and allocation are not per request
one = [request(i) for i in range(len(pairs))]
times = [[] for _ in range(clients)]
def client(c):
    i = c
    while time.perf_counter() < deadline:
        times[c].append(request(i))
        i += clients
started = time.perf_counter()
deadline = started + 5.0
threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.perf_counter() - started
both = [t for ts in times for t in ts]
print(json.dumps({"p50_ms": 1000 * float(np.percentile(one, 50)),
                  "p99_ms": 1000 * float(np.percentile(one, 99)),
                  "clients_p50_ms": 1000 * float(np.percentile(both, 50)),
                  "clients_p99_ms": 1000 * float(np.percentile(both, 99)),
                  "clients_qps": len(both) / elapsed}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Inputs ---------------------------------------------------------------------------------

def find_model(output_dir: str, train_if_missing: bool = True) -> tuple[str, str, str]:
    """(pushed brute-force retrieval version, eval split of the run that trained it, pushed
    ranking version)."""
    from recsys_pipeline.local_runner import run_first
    from recsys_pipeline.metadata import summarize_runs
    from recsys_pipeline.pipeline import nodes
    from recsys_pipeline.pipeline.config import PipelineConfig
    from recsys_pipeline.serving import layout

    config = PipelineConfig(output_dir=output_dir)
    version = layout.latest_version_dir(config.serving_dir, nodes.BRUTE_FORCE_MODEL)
    if version is None:
        if not train_if_missing:
            raise SystemExit(f"no pushed retrieval model under {output_dir}")
        run_first(output_dir)
        return find_model(output_dir, train_if_missing=False)
    for summary in reversed(summarize_runs(config)):
        examples = summary.output(nodes.EXAMPLE_GEN, "examples")
        if examples and os.path.isdir(examples):
            return (version, os.path.join(examples, "Split-eval"),
                    layout.latest_version_dir(config.serving_dir, nodes.RANKING_MODEL) or "")
    raise SystemExit(f"the MLMD store under {output_dir} has no ExampleGen output left")


def eval_pairs(eval_dir: str, n: int) -> tuple[list[bytes], list[int]]:
    """The first ``n`` (user, time) pairs of the eval split: real queries."""
    import tensorflow as tf

    from recsys_pipeline.transform import features as F

    spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.string),
            F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}
    files = sorted(tf.io.gfile.glob(os.path.join(eval_dir, "*")))
    users, times = [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024):
        parsed = tf.io.parse_example(batch, spec)
        users += parsed[F.USER_ID].numpy().tolist()
        times += parsed[F.TIMESTAMP].numpy().tolist()
        if len(users) >= n:
            break
    return users[:n], times[:n]


def queries_and_catalogue(model_dir: str, eval_dir: str, n: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """(query embeddings of ``n`` real queries, the catalogue's candidate embeddings)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    users, times = eval_pairs(eval_dir, n)
    query = loaded.signatures["query_embedding"]
    out = [query(user_id=tf.constant(users[i:i + 256]),
                 timestamp=tf.constant(times[i:i + 256], tf.int64))["embedding"].numpy()
           for i in range(0, len(users), 256)]
    return np.concatenate(out).astype(np.float32), loaded.candidate_embeddings.numpy()


def grow(catalogue: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` candidates: the catalogue, then copies of it with every coordinate scaled by a
    uniform random factor in [0, 1) -- the perturbation of TFRS's efficient-serving guide --
    so the copies are distinct vectors spread around the real items."""
    rng = np.random.default_rng(seed)
    reps = -(-size // len(catalogue))
    grown = np.tile(catalogue, (reps, 1))[:size].astype(np.float32)
    grown[len(catalogue):] *= rng.random((size - len(catalogue), catalogue.shape[1]),
                                         dtype=np.float32)
    return grown


# --- Indexes --------------------------------------------------------------------------------

def save_brute_force(candidates: np.ndarray, path: str) -> float:
    """Exact top-k by one matmul: pure TensorFlow, servable by stock TF Serving."""
    import tensorflow as tf

    started = time.monotonic()
    module = tf.Module()
    module.candidates = tf.Variable(candidates, trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, candidates.shape[1]], tf.float32,
                                                name="query_embedding")])
    def search(query_embedding):
        scores, ids = tf.math.top_k(tf.matmul(query_embedding, module.candidates,
                                              transpose_b=True), k=K)
        return {"ids": tf.cast(ids, tf.int64), "scores": scores}

    module.search = search
    built = time.monotonic() - started
    tf.saved_model.save(module, path, signatures={"search": search})
    return built


def save_noop(dim: int, path: str) -> float:
    """The same ``search`` signature doing no search: the per-call floor of any index."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32,
                                                name="query_embedding")])
    def search(query_embedding):
        n = tf.shape(query_embedding)[0]
        return {"ids": tf.zeros([n, K], tf.int64), "scores": tf.zeros([n, K])}

    module.search = search
    tf.saved_model.save(module, path, signatures={"search": search})
    return 0.0


def save_scann(candidates: np.ndarray, settings: Optional[ScannSettings], path: str) -> float:
    """A ScaNN index over the candidates: TFRS's ScaNN layer with its defaults when
    ``settings`` is None, else the pipeline's index (``index.build_scann``) with these
    settings. Returns the index build time."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from recsys_pipeline.serving import index, scann_export

    started = time.monotonic()
    if settings is None:
        layer = tfrs.layers.factorized_top_k.ScaNN(k=K)
        layer.index(tf.constant(candidates), tf.range(len(candidates), dtype=tf.int64))
    else:
        layer = index.build_scann(candidates, settings)
    built = time.monotonic() - started
    module = tf.Module()
    module.layer = layer

    @tf.function(input_signature=[tf.TensorSpec([None, candidates.shape[1]], tf.float32,
                                                name="query_embedding")])
    def search(query_embedding):
        # A search of few leaves can find fewer than K: read as the served export reads
        # ScaNN (scann_export.scann_results), the places it left unfilled are id -1.
        scores, rows = scann_export.scann_results(*layer(query_embedding, k=K), K)
        ids = tf.where(scores == -np.inf, tf.constant(-1, tf.int64),
                       tf.cast(rows, tf.int64))
        return {"ids": ids, "scores": scores}

    module.search = search
    tf.saved_model.save(module, path, signatures={"search": search},
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    return built


LEAF_SHARES = (0.04, 0.08, 0.12, 0.16, 0.24)
# The tuner's grid: shares of the leaves searched, and k-means iterations (12: ScaNN's and
# TFRS's default).
SEARCH_SHARES = (0.01, 0.02, 0.04, 0.08, 0.10, 0.12, 0.14, 0.16, 0.20, 0.24, 0.32)
TRAINING_ITERATIONS = (12, 50)
SHOWN_SETTINGS = ("num_leaves", "num_leaves_to_search", "num_reordering_candidates",
                  "training_iterations")


def one_by_one(searcher, queries: np.ndarray, **settings) -> np.ndarray:
    """[queries, K] ids from ScaNN's searcher, one query per call; -1 where the leaves searched
    held fewer than K candidates (``search_batched`` pads those rows with id 0 instead)."""
    ids = np.full((len(queries), K), -1, np.int64)
    for row, q in enumerate(queries):
        found = searcher.search(q, **settings)[0][:K]
        ids[row, :len(found)] = found
    return ids


class Tuned(NamedTuple):
    """The fastest settings the tuner found, its time for the tuning queries and their recall.

    (A NamedTuple: this script is loaded by path in its tests, outside ``sys.modules``, where
    a dataclass cannot resolve its annotations.)
    """

    settings: ScannSettings
    seconds: float
    tuning_recall: float


def tune(candidates: np.ndarray, queries: np.ndarray, exact: np.ndarray,
         target: float, margin: float = 0.01) -> tuple[Tuned, object]:
    """The fastest index settings on ``queries`` with recall >= target+margin, timed one
    query per call as a server gets them, and the ScaNN searcher they were found on.

    One tree per (leaf count, k-means iterations), built by the pipeline's own configuration
    (``index.configure``) on ScaNN's pybind builder; leaves searched and candidates rescored
    vary per call on the built searcher. Returns the pipeline's index settings at this size
    with the best of these.
    """
    import scann

    from recsys_pipeline.serving.index import configure, recall_at_k

    base = IndexParams(k=K, recall_k=K).resolved(len(candidates))
    best: Optional[Tuned] = None
    best_searcher = None
    leaf_counts = sorted({max(2, int(round(2 * np.sqrt(len(candidates))))),
                          max(2, int(round(np.sqrt(len(candidates)))))})
    for leaves in leaf_counts:
        for iterations in TRAINING_ITERATIONS:
            tree = dataclasses.replace(
                base, num_leaves=leaves, training_iterations=iterations,
                num_leaves_to_search=max(1, leaves // 20), num_reordering_candidates=100)
            started = time.monotonic()
            searcher = configure(scann.scann_ops_pybind.builder(candidates, K, "dot_product"),
                                 tree, len(candidates)).build()
            log(f"  tuning: tree of {leaves} leaves, {iterations} k-means iterations, built "
                f"in {time.monotonic() - started:.1f}s")
            for fraction in SEARCH_SHARES:
                search = max(1, int(round(leaves * fraction)))
                for reorder in (100, 250, 500, 1000):
                    started = time.perf_counter()
                    ids = one_by_one(searcher, queries, leaves_to_search=search,
                                     pre_reorder_num_neighbors=reorder)
                    seconds = time.perf_counter() - started
                    recall = recall_at_k(ids, exact, K)
                    if recall >= target + margin and (best is None
                                                      or seconds < best.seconds):
                        best = Tuned(dataclasses.replace(tree, num_leaves_to_search=search,
                                                         num_reordering_candidates=reorder),
                                     seconds, recall)
                        best_searcher = searcher
            log(f"  tuning: best so far {best}")
    if best is None:
        raise SystemExit(f"no setting reached recall {target + margin} on the tuning queries")
    return best, best_searcher


def limits(searcher, candidates: np.ndarray, queries: np.ndarray, exact: np.ndarray,
           tuned: ScannSettings) -> dict:
    """What bounds ScaNN's single-query time here, measured without TensorFlow.

    ``raw``: ScaNN's own searcher (pybind; the one ``tune`` chose on) at the tuned settings,
    one query per call. ``partition_recall``: recall@k when the leaves searched are scored
    *exactly* (no quantization error) -- the best any search of that share of the leaves can
    do.
    """
    import scann

    from recsys_pipeline.serving.index import recall_at_k

    leaves = tuned.num_leaves
    settings = {"leaves_to_search": tuned.num_leaves_to_search,
                "pre_reorder_num_neighbors": tuned.num_reordering_candidates}
    started = time.perf_counter()
    ids = one_by_one(searcher, queries, **settings)
    raw_ms = 1000 * (time.perf_counter() - started) / len(queries)
    raw = {"ms": raw_ms, "recall": recall_at_k(ids, exact, K)}
    log(f"  limits: ScaNN without TensorFlow {raw}")
    exact_in_leaves = (scann.scann_ops_pybind.builder(candidates, K, "dot_product")
                       .tree(num_leaves=leaves, num_leaves_to_search=1,
                             training_sample_size=len(candidates),
                             training_iterations=tuned.training_iterations)
                       .score_brute_force().build())
    partition = {}
    for share in LEAF_SHARES:
        found = one_by_one(exact_in_leaves, queries,
                           leaves_to_search=max(1, int(round(leaves * share))))
        partition[share] = recall_at_k(found, exact, K)
    log(f"  limits: recall with exact scoring in the leaves searched {partition}")
    return {"leaves": leaves, "raw": raw, "partition_recall": partition}


def measure(path: str, queries: np.ndarray, clients: int,
            batch: int = 256) -> tuple[dict, np.ndarray]:
    """Latency, throughput and memory of the SavedModel at ``path``, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        qpath, idpath = os.path.join(tmp, "q.npy"), os.path.join(tmp, "ids.npy")
        np.save(qpath, queries)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run([sys.executable, "-c", MEASURE, path, qpath, idpath,
                                 str(batch), str(clients)], capture_output=True, text=True,
                                env=env, check=False)
        if result.returncode != 0:
            raise SystemExit(f"measuring {path} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1]), np.load(idpath)


def directory_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
               for f in fs) / 2**20


def run(model_dir: str, eval_dir: str, size: int, n_queries: int, target: float,
        workdir: str, clients: int) -> tuple[list[dict], dict, np.ndarray, ScannSettings]:
    """Builds and measures the indexes; returns one row per method, ``limits``, the
    candidates and the tuned settings."""
    from recsys_pipeline.serving.index import exact_top_k, recall_at_k

    queries, catalogue = queries_and_catalogue(model_dir, eval_dir, n_queries)
    candidates = grow(catalogue, size)
    log(f"{len(queries)} real queries, {len(candidates):,} candidates "
        f"({len(catalogue)} real, dim {candidates.shape[1]})")
    started = time.monotonic()
    exact = exact_top_k(queries, candidates, K)
    log(f"exact top-{K} in numpy: {time.monotonic() - started:.1f}s")
    tuning, grading = np.arange(0, len(queries), 2), np.arange(1, len(queries), 2)
    tuned, searcher = tune(candidates, queries[tuning], exact[tuning], target)
    # The pipeline's [index] defaults at this size (before its automatic widening).
    defaults = IndexParams(k=K, recall_k=K).resolved(len(candidates))
    # (row name, kind, ScaNN settings): brute force first (the ratios' base), the no-search
    # floor last.
    methods = [
        ("brute force (pure TF)", "brute_force", None),
        ("ScaNN, TFRS defaults", "scann", None),
        ("ScaNN, pipeline defaults", "scann", defaults),
        ("ScaNN, tuned", "scann", tuned.settings),
        ("no search (call floor)", "noop", None),
    ]
    rows = []
    for name, kind, settings in methods:
        path = os.path.join(workdir, f"{kind}{len(rows)}")
        log(f"{name}: building ...")
        if kind == "noop":
            build = save_noop(candidates.shape[1], path)
        elif kind == "brute_force":
            build = save_brute_force(candidates, path)
        else:
            build = save_scann(candidates, settings, path)
        log(f"{name}: built in {build:.1f}s; measuring in a fresh process ...")
        stats, ids = measure(path, queries, clients)
        recall = (recall_at_k(ids[grading], exact[grading], K) if kind != "noop"
                  else float("nan"))
        rows.append({"method": name, "kind": kind, "settings": settings, "recall": recall,
                     "build_s": build, "size_mb": directory_mb(path), **stats})
        shutil.rmtree(path, ignore_errors=True)
    return rows, limits(searcher, candidates, queries[grading], exact[grading],
                        tuned.settings), candidates, tuned.settings


# --- Whole requests: the two-stage recommender beside retrieval alone ---------------------

def grown_base(model_dir: str, size: int):
    """The retrieval export at ``model_dir`` with ``size`` candidates, as the two-stage graph
    reads a retrieval export: its query tower and rated items, and candidate ids and titles
    where each grown copy stands for the item it was copied from (``grow``'s order)."""
    import tensorflow as tf

    from recsys_pipeline.trainer import export

    loaded = tf.saved_model.load(model_dir)
    reps = -(-size // int(loaded.candidate_ids.shape[0]))

    class Grown(tf.Module):
        def __init__(self):
            super().__init__()
            self.loaded = loaded
            self.candidate_ids = tf.Variable(
                np.tile(loaded.candidate_ids.numpy(), reps)[:size], trainable=False)
            self.candidate_titles = tf.Variable(
                np.tile(loaded.candidate_titles.numpy(), reps)[:size], trainable=False)

        @tf.function(input_signature=[export.USER_ID_SPEC, export.TIMESTAMP_SPEC])
        def query_embedding(self, user_id, timestamp):
            return self.loaded.query_embedding(user_id, timestamp)

        @tf.function(input_signature=[export.USER_ID_SPEC])
        def rated_pairs(self, user_id):
            # The real catalogue is the grown one's first rows: a rated item's row is valid.
            return self.loaded.rated_pairs(user_id)

    return Grown()


def measure_requests(path: str, pairs: list, clients: int, k: int) -> dict:
    """p50/p99 of ``serving_default`` requests, one client and ``clients`` at once, in a
    fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        users_path = os.path.join(tmp, "users.json")
        with open(users_path, "w") as f:
            json.dump(pairs, f)
        result = subprocess.run([sys.executable, "-c", MEASURE_REQUESTS, path, users_path,
                                 str(clients), str(k)], capture_output=True, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)
        if result.returncode != 0:
            raise SystemExit(f"measuring {path} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def run_requests(model_dir: str, ranking_dir: str, eval_dir: str, candidates: np.ndarray,
                 settings: ScannSettings, ns: list[int], n_users: int, workdir: str,
                 clients: int) -> list[dict]:
    """One row per servable: retrieval alone, then the two-stage recommender per N."""
    import tensorflow as tf

    from recsys_pipeline.pipeline.config import PipelineConfig
    from recsys_pipeline.serving import index, scann_export, two_stage
    from recsys_pipeline.trainer import export

    metadata = export.read_metadata(model_dir)
    base = grown_base(model_dir, len(candidates))
    layer = index.build_scann(candidates, settings)
    searched = scann_export.ScannIndex(
        layer.searcher_state, K, leaves_to_search=settings.num_leaves_to_search,
        reorder=settings.num_reordering_candidates, num_leaves=settings.num_leaves)
    ranking = tf.saved_model.load(ranking_dir)
    users, times = eval_pairs(eval_dir, n_users)
    pairs = [[u.decode(), int(t)] for u, t in zip(users, times, strict=True)]
    weight = PipelineConfig().recommender.rank_weight
    servables = [("retrieval alone (ScaNN, top 10)", 0,
                  scann_export.ScannExport(base, searched, K))]
    servables += [(f"two-stage, N={n}, rank_weight {weight:g}", K,
                   two_stage.TwoStageExport(base, metadata, ranking, weight, n, searched))
                  for n in ns]
    rows = []
    for name, k, module in servables:
        path = os.path.join(workdir, f"request{len(rows)}")
        log(f"{name}: saving ...")
        tf.saved_model.save(module, path, signatures={"serving_default": module.serve},
                            options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
        log(f"{name}: measuring {len(pairs)} requests in a fresh process ...")
        rows.append({"method": name, **measure_requests(path, pairs, clients, k)})
        log(f"  {rows[-1]}")
        shutil.rmtree(path, ignore_errors=True)
    return rows


def requests_table(rows: list[dict], size: int, n_users: int, clients: int) -> str:
    lines = [f"Whole requests at {size:,} candidates: serving_default(user_id, timestamp[, k]) "
             f"for {n_users} real eval users, one at a time, then {clients} clients at once "
             "for 5 s", "",
             f"| servable | p50 ms | p99 ms | {clients} clients p50 ms | {clients} clients p99 "
             f"ms | {clients} clients q/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['clients_p50_ms']:.2f} | {r['clients_p99_ms']:.2f} | "
                     f"{r['clients_qps']:.0f} |")
    return "\n".join(lines)


def table(rows: list[dict], limit: dict, size: int, n_queries: int, clients: int) -> str:
    base = rows[0]
    lines = [f"Serving benchmark: {size:,} candidates, {n_queries} real queries "
             f"(recall@{K} on the {n_queries // 2} not used for tuning), k={K}", "",
             "| method | recall@10 | p50 ms | p99 ms | single q/s | × BF | "
             f"{clients} clients q/s | × BF | batch q/s | × BF | "
             "build s | SavedModel MB | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {'-' if np.isnan(r['recall']) else format(r['recall'], '.4f')} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['single_qps']:.0f} | {r['single_qps'] / base['single_qps']:.1f} | "
            f"{r['concurrent_qps']:.0f} | {r['concurrent_qps'] / base['concurrent_qps']:.1f} | "
            f"{r['batch_qps']:.0f} | {r['batch_qps'] / base['batch_qps']:.1f} | "
            f"{r['build_s']:.1f} | {r['size_mb']:.0f} | {r['rss_mb']:.0f} |")
    for r in rows[2:]:
        if r["settings"]:
            shown = {k: getattr(r["settings"], k) for k in SHOWN_SETTINGS}
            lines += ["", f"{r['method']}: {json.dumps(shown, sort_keys=True)}"]
    floor = next(r for r in rows if r["kind"] == "noop")
    raw = limit["raw"]
    ceiling = base["p50_ms"] / (floor["p50_ms"] + raw["ms"])
    lines += ["", "Where a single query's time goes (same queries, same machine):", "",
              f"- the call itself (a SavedModel whose search does nothing): "
              f"{floor['p50_ms']:.2f} ms p50",
              f"- ScaNN's own searcher at the tuned settings, without TensorFlow: "
              f"{raw['ms']:.2f} ms per query (recall {raw['recall']:.4f})",
              f"- so at most {ceiling:.1f}x brute force's p50 with these settings, even if "
              f"TensorFlow's ScaNN op added nothing to ScaNN's own time",
              "", f"Recall@{K} with the leaves searched scored exactly (no quantization "
              f"error), {limit['leaves']} leaves: the best any search of that share can do",
              "", "| leaves searched | " + " | ".join(
                  f"{share:.0%}" for share in limit["partition_recall"]) + " |",
              "|---|" + "---|" * len(limit["partition_recall"]),
              "| recall | " + " | ".join(
                  f"{r:.4f}" for r in limit["partition_recall"].values()) + " |"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="outputs",
                        help="output directory of a `recsys run` (trained if empty)")
    parser.add_argument("--model-dir", help="a retrieval export to use instead")
    parser.add_argument("--eval-dir", help="eval split (TFRecords) for --model-dir's queries")
    parser.add_argument("--candidates", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--target-recall", type=float, default=0.97)
    parser.add_argument("--clients", type=int, default=os.cpu_count() or 1,
                        help="concurrent single-query clients (default: one per core)")
    parser.add_argument("--ranking-dir", help="a ranking export for the two-stage requests, "
                        "with --model-dir")
    parser.add_argument("--two-stage", default="100,200,500",
                        help="the recommender's Ns whose whole requests are measured "
                        "(comma-separated; empty: none)")
    parser.add_argument("--users", type=int, default=500,
                        help="eval users whose requests are measured")
    args = parser.parse_args(argv)
    import recsys_pipeline  # noqa: F401  (Keras 2 before TensorFlow loads)

    if args.model_dir:
        model_dir, eval_dir, ranking_dir = args.model_dir, args.eval_dir, args.ranking_dir
    else:
        model_dir, eval_dir, ranking_dir = find_model(args.output_dir)
    ns = [int(n) for n in args.two_stage.split(",") if n.strip()]
    if ns and not ranking_dir:
        raise SystemExit("the two-stage requests need a ranking export: --ranking-dir")
    log(f"model {model_dir}; queries from {eval_dir}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as workdir:
        rows, limit, candidates, tuned = run(model_dir, eval_dir, args.candidates, args.queries,
                                             args.target_recall, workdir, args.clients)
        print(table(rows, limit, args.candidates, args.queries, args.clients), flush=True)
        if ns:
            requests = run_requests(model_dir, ranking_dir, eval_dir, candidates, tuned, ns,
                                    args.users, workdir, args.clients)
            print()
            print(requests_table(requests, args.candidates, args.users, args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
