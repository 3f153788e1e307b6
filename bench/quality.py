"""Quality benchmark: the pipeline's models against baselines, on seeded random splits.

    .venv/bin/python bench/quality.py --data-dir ../shared/data/ml-100k [--seeds 0,1,2]

For every seed it runs ``recsys run`` with ``[split] seed`` set (random 80/20 split; every
other setting from ``--config`` or the defaults), then grades on that run's eval split:

* the Trainers' models, as the Trainer wrote them (the brute-force retrieval export's
  ``query_embedding`` and catalogue embeddings; the ranking export's ``serving_default``);
* variants of them (``RETRIEVAL_VARIANTS``, ``RANKING_VARIANTS``: DCN, bias terms, no logQ
  correction, accidental hits removed, title words, ReLU layers, implicit feedback, multitask),
  trained by the Trainers' own ``train()`` on the same Transform output and exported the same
  way (``--no-variants`` skips them);
* baselines fitted here on the same train split: most popular (train counts), EASE
  (Steck 2019, closed form on the binary user x item matrix) for retrieval; the global mean
  and biased matrix factorization (alternating least squares) for ranking.

Retrieval: top-10/50/100 accuracy as TFRS's FactorizedTopK defines it (the eval item is
among the k highest-scored of the whole catalogue), with the items the user rated in train
left in (comparable to TFRS's published numbers) and excluded. Ranking: RMSE. Prints mean
and standard deviation over the seeds as one markdown table, train time and examples/second
of the learned models, and whether each learned retrieval model beats popularity.

Lists (unless ``--no-lists``): what a user is shown, graded as the recommender's gate grades it
-- NDCG@10 of each eval user's top 10 (asked once, at their first eval rating's time; an item's
gain is the user's eval rating of it; items rated in train never listed) -- for most popular,
EASE, and the two-stage recommender (``serving/two_stage.py``, over the brute-force retrieval
export and the ranking export) at each ``LIST_CANDIDATES`` N and ``RANK_WEIGHTS`` blend,
rank_weight 0 being retrieval alone. The best blend is what ``recommender.rank_weight``
defaults to.

Then, unless ``--sequential no``, sequential retrieval on leave-last-out: each user's last
rating (by time) is the test pair and the rest is train; contexts come from the product's
Beam builder (``data/sequences.py``). HR@10 and NDCG@10 over every item rated in train, with
the user's train items left in and excluded, for most popular, EASE, a two-tower model of
user and item ids (the pipeline's loss, no context features) and GRU4Rec
(``models.build_sequential``); the seeds seed the learned models. ``--sequential only`` skips
the pipeline runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import time
from typing import Optional

import numpy as np

from recsys_pipeline.pipeline import nodes

KS = (10, 50, 100)
LIST_K = 10
LIST_CANDIDATES = (100, 200)
RANK_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
EASE_LAMBDA = 500.0
MF_FACTORS, MF_REG, MF_ITERATIONS = 32, 15.0, 12  # best of a small grid on ML-100K


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Data -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Split:
    """Ratings of one split as aligned arrays (ids as the dataset's strings)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray


def read_split(directory: str) -> Split:
    """ExampleGen's raw tf.Examples of one split."""
    import tensorflow as tf

    from recsys_pipeline.trainer.inputs import READ_BATCH_SIZE, files
    from recsys_pipeline.transform import features as F

    spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.string),
            F.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
            F.USER_RATING: tf.io.FixedLenFeature([], tf.float32),
            F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}
    parts: dict[str, list] = {k: [] for k in spec}
    for batch in tf.data.TFRecordDataset(files(directory), compression_type="GZIP").batch(
            READ_BATCH_SIZE):
        for key, value in tf.io.parse_example(batch, spec).items():
            parts[key].append(value.numpy())
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    return Split(joined[F.USER_ID], joined[F.ITEM_ID], joined[F.USER_RATING],
                 joined[F.TIMESTAMP])


@dataclasses.dataclass
class Grader:
    """Index spaces and the train interactions every retrieval method is graded with."""

    item_ids: np.ndarray  # the catalogue's row order
    train: Split
    test: Split

    def __post_init__(self):
        self.item_row = {m: i for i, m in enumerate(self.item_ids.tolist())}
        self.user_ids = np.unique(self.train.users)
        self.user_row = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self.train_u = np.array([self.user_row[u] for u in self.train.users.tolist()])
        self.train_m = np.array([self.item_row.get(m, -1) for m in self.train.items.tolist()])
        self.test_u = np.array([self.user_row.get(u, -1) for u in self.test.users.tolist()])
        self.test_m = np.array([self.item_row.get(m, -1) for m in self.test.items.tolist()])

    @functools.cached_property
    def seen(self) -> np.ndarray:
        """Binary users x items matrix of the train split (built once per grader)."""
        x = np.zeros((len(self.user_ids), len(self.item_ids)), np.float32)
        keep = self.train_m >= 0
        x[self.train_u[keep], self.train_m[keep]] = 1.0
        return x

    def ranks(self, scores_for, exclude_seen: bool) -> np.ndarray:
        """Per test pair, how many other items score at least as high as its item (inf: not in
        the catalogue, or scored non-finite);
        ``scores_for(rows)`` scores test rows over the catalogue."""
        out = np.full(len(self.test_m), np.inf)
        seen = self.seen if exclude_seen else None
        for start in range(0, len(self.test_m), 2048):
            rows = np.arange(start, min(start + 2048, len(self.test_m)))
            scores = np.array(scores_for(rows), np.float32)
            if seen is not None:
                users = self.test_u[rows]
                known = users >= 0
                scores[known] = np.where(seen[users[known]] > 0, -np.inf, scores[known])
            target = self.test_m[rows]
            valid = target >= 0
            positive = scores[np.arange(len(rows)), np.maximum(target, 0)]
            # As the exports' top_k_hit ranks: every other item scored at least as high is
            # ahead (a tie is no hit), and a non-finite positive is a miss.
            ahead = (scores >= positive[:, None]).sum(axis=1) - 1
            valid &= np.isfinite(positive)
            out[rows[valid]] = ahead[valid]
        return out

    def accuracy(self, scores_for, exclude_seen: bool) -> dict[int, float]:
        """Top-k accuracy (hit rate at k) over the test pairs, for every k in KS."""
        rank = self.ranks(scores_for, exclude_seen)
        return {k: float(np.mean(rank < k)) for k in KS}


def ndcg(rank: np.ndarray, k: int) -> float:
    """NDCG@k of one relevant item per test pair: 1 / log2(rank + 2) inside the top k."""
    gain = np.zeros(len(rank))
    inside = rank < k
    gain[inside] = 1.0 / np.log2(rank[inside] + 2.0)
    return float(np.mean(gain))


# --- Baselines ------------------------------------------------------------------------------

def popularity_scores(g: Grader):
    """Train counts, ties broken by catalogue order: a popularity list is one fixed order (the
    grader ranks a tie behind, so tied counts would all share the worst rank)."""
    counts = np.bincount(g.train_m[g.train_m >= 0], minlength=len(g.item_ids)).astype(float)
    counts -= np.arange(len(counts)) / (len(counts) + 1.0)  # < 1 apart: counts keep their order
    return lambda rows: np.broadcast_to(counts, (len(rows), len(counts)))


def ease_scores(g: Grader, lam: float = EASE_LAMBDA):
    """EASE: B = I - P / diag(P) with P = (X'X + lam I)^-1, zero diagonal; scores X_u B."""
    x = g.seen
    gram = x.T.astype(np.float64) @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    user_scores = (x @ b).astype(np.float32)
    fallback = popularity_scores(g)  # users without train ratings

    def scores(rows):
        users = g.test_u[rows]
        return np.where((users >= 0)[:, None], user_scores[np.maximum(users, 0)],
                        fallback(rows))
    return scores


def biased_mf(g: Grader, factors: int = MF_FACTORS, reg: float = MF_REG,
              iterations: int = MF_ITERATIONS, seed: int = 0):
    """Rating = mean + b_u + b_m + p_u . q_m by alternating least squares (ridge per row)."""
    rng = np.random.default_rng(seed)
    keep = g.train_m >= 0
    u, m, r = g.train_u[keep], g.train_m[keep], g.train.ratings[keep].astype(np.float64)
    n_u, n_m = len(g.user_ids), len(g.item_ids)
    mean = r.mean()
    # Biases ride along as factors: user rows are [p_u, b_u, 1], item rows [q_m, 1, b_m],
    # so their dot product is p_u . q_m + b_u + b_m. Each side is a ridge regression per row.
    bias_u, bias_m = factors, factors + 1
    p = np.hstack([rng.normal(0, 0.1, (n_u, factors)), np.zeros((n_u, 1)), np.ones((n_u, 1))])
    q = np.hstack([rng.normal(0, 0.1, (n_m, factors)), np.ones((n_m, 1)), np.zeros((n_m, 1))])
    by_user = [np.flatnonzero(u == i) for i in range(n_u)]
    by_item = [np.flatnonzero(m == j) for j in range(n_m)]

    def solve(fixed, rows_of, other, own, const):
        """New rows for one side: ``own`` is its bias column, ``const`` its constant 1."""
        out = np.zeros((len(rows_of), fixed.shape[1]))
        out[:, const] = 1.0
        cols = [*range(factors), own]
        for i, idx in enumerate(rows_of):
            if len(idx) == 0:
                continue
            f = fixed[other[idx]]
            a = f[:, cols]
            y = r[idx] - mean - f[:, const]  # the other side's bias
            sol = np.linalg.solve(a.T @ a + reg * np.eye(len(cols)), a.T @ y)
            out[i, :factors], out[i, own] = sol[:factors], sol[-1]
        return out

    for _ in range(iterations):
        p = solve(q, by_user, m, own=bias_u, const=bias_m)
        q = solve(p, by_item, u, own=bias_m, const=bias_u)

    def predict(users, items):
        known_u, known_m = users >= 0, items >= 0
        pred = np.full(len(users), mean)
        both = known_u & known_m
        pred[both] += np.sum(p[users[both]] * q[items[both]], axis=1)
        only_u, only_m = known_u & ~known_m, ~known_u & known_m
        pred[only_u] += p[users[only_u], bias_u]
        pred[only_m] += q[items[only_m], bias_m]
        return np.clip(pred, 0.5, 5.0)
    return predict


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, float) - actual) ** 2)))


# --- The pipeline's models ------------------------------------------------------------------

def run_seed(data_dir: str, work: str, seed: int, base_config) -> dict[str, str]:
    """``recsys run`` with ``split.seed = seed``; paths of its splits and Trainer models."""
    from recsys_pipeline.local_runner import recsys_command
    from recsys_pipeline.metadata import summarize_runs
    from recsys_pipeline.pipeline.config import render_toml

    output_dir = os.path.join(work, f"seed-{seed}")
    config = dataclasses.replace(base_config, output_dir=output_dir,
                                 split=dataclasses.replace(base_config.split, kind="random",
                                                           seed=seed))
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "bench-quality.toml")
    with open(path, "w") as f:
        f.write(render_toml(config))
    started = time.monotonic()
    subprocess.run(recsys_command("run", "--data-dir", data_dir, "--config", path), check=True,
                   stdout=sys.stderr)
    log(f"seed {seed}: pipeline {time.monotonic() - started:.0f}s")
    summary = summarize_runs(config)[-1]
    examples = summary.output(nodes.EXAMPLE_GEN, "examples")
    transformed = summary.output(nodes.TRANSFORM, "transformed_examples")
    return {"train": os.path.join(examples, "Split-train"),
            "eval": os.path.join(examples, "Split-eval"),
            "transform": summary.output(nodes.TRANSFORM, "transform_graph"),
            "transformed_train": os.path.join(transformed, "Split-train"),
            "transformed_eval": os.path.join(transformed, "Split-eval"),
            "catalogue": os.path.join(summary.output(nodes.EXAMPLE_GEN, "catalogue"),
                                      "Split-catalogue"),
            "retrieval_export": os.path.join(summary.output(nodes.RETRIEVAL.trainer, "model"),
                                      "Format-Serving"),
            "ranking_export": os.path.join(summary.output(nodes.RANKING.trainer, "model"),
                                    "Format-Serving")}


def learned_retrieval(path: str, g: Grader):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    candidates = loaded.candidate_embeddings.numpy()
    ids = loaded.candidate_ids.numpy()
    order = np.array([g.item_row[m] for m in ids.tolist()])
    # The export's catalogue order, re-indexed to the grader's.
    aligned = np.zeros((len(g.item_ids), candidates.shape[1]), np.float32)
    aligned[order] = candidates
    query = loaded.signatures["query_embedding"]

    def scores(rows):
        out = query(user_id=tf.constant(g.test.users[rows]),
                    timestamp=tf.constant(g.test.timestamps[rows]))
        return out["embedding"].numpy() @ aligned.T
    return scores


def learned_ranking(path: str, g: Grader) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    out = [serve(user_id=tf.constant(g.test.users[i:i + 4096]),
                 item_id=tf.constant(g.test.items[i:i + 4096]))["rating"].numpy()
           for i in range(0, len(g.test.users), 4096)]
    return np.concatenate(out).reshape(-1)


def training_speed(path: str) -> tuple[float, float]:
    from recsys_pipeline.trainer import export

    meta = export.read_metadata(path)
    assert meta.train_seconds and meta.hparams and meta.train_examples, path
    seconds = float(meta.train_seconds)
    passes = meta.hparams["epochs"] * meta.hparams.get("ensemble", 1)
    return seconds, meta.train_examples * passes / seconds


# Options measured against the configured models: each is trained by the Trainer's own
# train() on the same seed's Transform output and exported as the Trainer exports.
RETRIEVAL_VARIANTS = {
    "two-tower, no logQ correction": {"popularity_correction": False},
    "two-tower, accidental hits removed": {"remove_accidental_hits": True},
    "two-tower + title words": {"title_text": True},
    "two-tower, linear towers": {"hidden_layers": []},
    "two-tower, linear towers, learning rate 0.1": {"hidden_layers": [], "learning_rate": 0.1},
    "two-tower, learning rate 0.1": {"learning_rate": 0.1},
    "two-tower, implicit: positives rated 4+": {"min_rating": 4.0},
}
# Architectures are compared as single networks (the pipeline's default is an ensemble).
RANKING_VARIANTS = {
    "ranking MLP, one network": {"ensemble": 1},
    "ranking DCN": {"architecture": "dcn", "ensemble": 1},
    "ranking DCN + bias terms": {"architecture": "dcn", "bias_terms": True, "ensemble": 1},
    "ranking MLP + bias terms": {"bias_terms": True, "ensemble": 1},
    "ranking multitask (retrieval weight 0.1)": {"retrieval_weight": 0.1, "ensemble": 1},
    "ranking multitask (retrieval weight 1)": {"retrieval_weight": 1.0, "ensemble": 1},
}


def train_variants(paths: dict[str, str], config, work: str) -> dict[str, tuple[str, str]]:
    """Exports of every variant: name -> (kind, export path)."""
    from recsys_pipeline.trainer import inputs, ranking_trainer, retrieval_trainer
    from recsys_pipeline.trainer.common import load_training_data
    from recsys_pipeline.trainer.export_metadata import Training

    train = inputs.files(paths["transformed_train"])
    evaluation = inputs.files(paths["transformed_eval"])
    data = load_training_data(paths["transform"], train, paths["catalogue"])
    out = {}
    for name, change in {**RETRIEVAL_VARIANTS, **RANKING_VARIANTS}.items():
        path = os.path.join(work, re.sub(r"\W+", "_", name).strip("_"))
        if name in RETRIEVAL_VARIANTS:
            hp = dataclasses.replace(config.retrieval, **change)
            model, history, seconds = retrieval_trainer.train(data, hp, train)
            retrieval_trainer.export_model(
                model, data, path, serving_k=config.index.k, eval_k=config.evaluation.top_k,
                training=Training.of(seconds, history, hp), hp=hp)
            out[name] = (nodes.RETRIEVAL.name, path)
        else:
            hp = dataclasses.replace(config.ranking, **change)
            model, history, seconds = ranking_trainer.train(data, hp, train, evaluation)
            ranking_trainer.export_model(model, data, path,
                                         training=Training.of(seconds, history, hp))
            out[name] = (nodes.RANKING.name, path)
        log(f"  variant {name}: trained in {seconds:.0f}s")
    return out


def grade_seed(paths: dict[str, str],
               variants: Optional[dict[str, tuple[str, str]]] = None) -> dict[str, dict]:
    """Every method's metrics on one seed's split."""
    import tensorflow as tf

    train, test = read_split(paths["train"]), read_split(paths["eval"])
    catalogue = tf.saved_model.load(paths["retrieval_export"]).candidate_ids.numpy()
    g = Grader(catalogue, train, test)
    results: dict[str, dict] = {}
    retrieval_models = {"two-tower (pipeline)": paths["retrieval_export"]}
    ranking_models = {"ranking MLP (pipeline)": paths["ranking_export"]}
    for name, (kind, path) in (variants or {}).items():
        (retrieval_models if kind == nodes.RETRIEVAL.name else ranking_models)[name] = path
    methods = [("most popular", popularity_scores), ("EASE", ease_scores)]
    methods += [(name, lambda g, path=path: learned_retrieval(path, g))
                for name, path in retrieval_models.items()]
    for name, make in methods:
        started = time.monotonic()
        scores = make(g)
        row = {f"top{k}": v for k, v in g.accuracy(scores, exclude_seen=False).items()}
        row.update({f"top{k}_x": v for k, v in g.accuracy(scores, exclude_seen=True).items()})
        if name in retrieval_models:
            row["train_s"], row["eps"] = training_speed(retrieval_models[name])
        else:
            row["train_s"] = time.monotonic() - started
        results[name] = row
    mean = float(np.mean(train.ratings))
    results["global mean"] = {"rmse": rmse(np.full(len(test.ratings), mean), test.ratings)}
    started = time.monotonic()
    predict = biased_mf(g)
    results["biased MF (ALS)"] = {"rmse": rmse(predict(g.test_u, g.test_m), test.ratings),
                                  "train_s": time.monotonic() - started}
    for name, path in ranking_models.items():
        seconds, eps = training_speed(path)
        results[name] = {"rmse": rmse(learned_ranking(path, g), test.ratings),
                         "train_s": seconds, "eps": eps}
    return results


# --- Lists: NDCG@10 of what each user is shown ------------------------------------------------

def two_stage_name(candidates: int, rank_weight: float) -> str:
    what = "retrieval alone" if rank_weight == 0 else f"rank_weight {rank_weight:g}"
    return f"two-stage N={candidates}, {what}"


def list_seed(paths: dict[str, str], candidates=LIST_CANDIDATES,
              weights=RANK_WEIGHTS) -> dict[str, float]:
    """NDCG@10 per method on one seed's eval split (see the module doc)."""
    import tensorflow as tf

    from recsys_pipeline.serving import list_metrics, two_stage

    train, test = read_split(paths["train"]), read_split(paths["eval"])
    catalogue = tf.saved_model.load(paths["retrieval_export"]).candidate_ids.numpy()
    g = Grader(catalogue, train, test)
    users, timestamps, gains = list_metrics.relevance(paths["eval"])
    # Each eval user's first eval pair: the query the fixed-score baselines are asked with.
    first: dict[bytes, int] = {}
    for i in np.lexsort((test.timestamps, test.users)):
        first.setdefault(test.users[i], int(i))
    rows = np.array([first[u] for u in users])
    seen_rows = g.test_u[rows]
    results = {}
    for name, make in (("most popular", popularity_scores), ("EASE", ease_scores)):
        scores = np.array(make(g)(rows), np.float64)
        known = seen_rows >= 0
        scores[known] = np.where(g.seen[seen_rows[known]] > 0, -np.inf, scores[known])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :LIST_K]
        results[name] = list_metrics.ndcg(list(g.item_ids[top]), gains, LIST_K)
    for n in candidates:
        for weight in weights:
            module = two_stage.load(paths["retrieval_export"], paths["ranking_export"], weight, n)
            results[two_stage_name(n, weight)] = list_metrics.served_ndcg(
                module.serve, users, timestamps, gains, LIST_K)
    return results


def list_table(per_seed: list[dict[str, float]], default: tuple[int, float],
               candidates=LIST_CANDIDATES) -> str:
    names = list(per_seed[0])
    lines = [f"| method | NDCG@{LIST_K} |", "|---|---|"]
    means = {name: float(np.mean([s[name] for s in per_seed])) for name in names}
    for name in names:
        lines.append(f"| {name} | {_cell([s[name] for s in per_seed])} |")
    blends = [n for n in names if n.startswith("two-stage") and "retrieval alone" not in n]
    best = max(blends, key=means.get)
    mine = means.get(two_stage_name(*default))
    verdicts = [f"Best blend: {best} ({means[best]:.4f}); the pipeline's default "
                f"({two_stage_name(*default)}) "
                + ("is not in this grid." if mine is None else f"{mine:.4f}.")]
    for n in candidates:
        alone = means.get(two_stage_name(n, 0.0))
        at_n = [means[b] for b in blends if b.startswith(f"two-stage N={n},")]
        if alone is not None and at_n:
            verdicts.append(f"At N={n} the best blend {max(at_n):.4f} against retrieval alone "
                            f"{alone:.4f} and most popular {means['most popular']:.4f}.")
    return "\n".join(lines + [""] + verdicts)


# --- Sequential retrieval, leave-last-out ---------------------------------------------------

@dataclasses.dataclass
class Sequences:
    """Leave-last-out: each user's last rating is the test pair; contexts are item ids."""

    train: Split
    test: Split
    train_context: np.ndarray  # [train pairs, length] str, "" = padding
    test_context: np.ndarray


def leave_last_out(data_dir: str, length: int, work: str, beam_args: list[str]) -> Sequences:
    """Every rating with its context from the product's Beam builder (``data/sequences.py``),
    read by the same validating reader ExampleGen uses."""
    import apache_beam as beam

    from recsys_pipeline.data import movielens, sequences

    dataset = movielens.detect_layout(data_dir)
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, f"contexts-{length}.jsonl")
    with beam.Pipeline(argv=beam_args) as p:
        _ = (p | "Dataset" >> beam.Create([dataset])
             | "ReadRatings" >> beam.FlatMap(movielens.iter_ratings)
             | "Tuples" >> beam.Map(lambda r: (r.user_id, r.item_id, r.rating, r.timestamp))
             | "Contexts" >> sequences.BuildContexts(length)
             | "Json" >> beam.Map(json.dumps)
             | "Write" >> beam.io.WriteToText(out, shard_name_template=""))
    parts: dict[bool, dict[str, list]] = {
        last: {"u": [], "m": [], "r": [], "t": [], "c": []} for last in (False, True)}
    with open(out) as f:
        for line in f:
            row = json.loads(line)
            part = parts[row["is_last"]]
            part["u"].append(row["user_id"])
            part["m"].append(row["item_id"])
            part["r"].append(row["rating"])
            part["t"].append(row["timestamp"])
            part["c"].append(row["context"])

    def split(part):
        return Split(np.array(part["u"], object), np.array(part["m"], object),
                     np.array(part["r"], np.float32), np.array(part["t"], np.int64))
    return Sequences(split(parts[False]), split(parts[True]),
                     np.array(parts[False]["c"], object).reshape(-1, length),
                     np.array(parts[True]["c"], object).reshape(-1, length))


def item_rows(g: Grader, ids: np.ndarray) -> np.ndarray:
    """Catalogue rows of item ids (any shape); LIST_PADDING for padding and unknown ids."""
    from recsys_pipeline.transform import features as F

    flat = ids.reshape(-1)
    pos = np.minimum(np.searchsorted(g.item_ids, flat), len(g.item_ids) - 1)
    found = g.item_ids[pos] == flat
    return np.where(found, pos, F.LIST_PADDING).astype(np.int64).reshape(ids.shape)


def _fit(model, features: dict[str, np.ndarray], hp, label: str) -> float:
    import tensorflow as tf

    from recsys_pipeline.trainer.common import EpochProgress

    ds = (tf.data.Dataset.from_tensor_slices(features)
          .shuffle(len(next(iter(features.values()))), seed=hp.seed)
          .batch(hp.batch_size).prefetch(tf.data.AUTOTUNE))
    started = time.monotonic()
    model.fit(ds, epochs=hp.epochs, verbose=0, callbacks=[EpochProgress(label, hp.epochs)])
    return time.monotonic() - started


def _fit_and_score(g: Grader, model, hp, train: dict, test: dict, label: str):
    """Fits a model whose candidate tower is an item id embedding on ``train`` (plus the
    train items); returns (scores of the ``test`` rows over every item, train seconds)."""
    from recsys_pipeline.transform import features as F

    seconds = _fit(model, {**train, F.index_name(F.ITEM_ID): g.train_m}, hp, label)
    candidates = model.candidate_tower.embedding.embeddings.numpy()

    def scores(rows):
        return model.query_tower({n: v[rows] for n, v in test.items()}).numpy() @ candidates.T
    return scores, seconds


def gru4rec_scores(g: Grader, seq: Sequences, hp):
    """GRU4Rec (``models.build_sequential``) trained on the train pairs' contexts."""
    from recsys_pipeline.trainer import models
    from recsys_pipeline.transform import features as F

    model = models.build_sequential(len(g.item_ids), hp,
                                    np.bincount(g.train_m, minlength=len(g.item_ids)))
    return _fit_and_score(g, model, hp, {F.CONTEXT_INDEX: item_rows(g, seq.train_context)},
                          {F.CONTEXT_INDEX: item_rows(g, seq.test_context)}, "gru4rec")


def two_tower_mf_scores(g: Grader, hp):
    """The non-sequential learned model on the same protocol: user and item id towers,
    trained with the same Retrieval task (in-batch softmax, logQ) as the pipeline's."""
    import tensorflow as tf

    from recsys_pipeline.trainer import models
    from recsys_pipeline.transform import features as F

    user, item = F.index_name(F.USER_ID), F.index_name(F.ITEM_ID)
    tf.keras.utils.set_random_seed(hp.seed)
    # A test user with no train rating (-1) gets the one row training never touches, like the
    # pipeline's out-of-vocabulary bucket.
    oov = len(g.user_ids)
    model = models.RetrievalModel(
        models.IdTower(user, oov + 1, hp.embedding_dim),
        models.IdTower(item, len(g.item_ids), hp.embedding_dim), hp,
        np.bincount(g.train_m, minlength=len(g.item_ids)))
    model.compile(optimizer=models.make_optimizer(hp.optimizer, hp.learning_rate))
    return _fit_and_score(g, model, hp, {user: g.train_u},
                          {user: np.where(g.test_u < 0, oov, g.test_u)}, "two-tower (ids)")


SEQUENTIAL_K = 10


def sequential_seed(seq: Sequences, seed: int, seq_hp, mf_hp) -> dict[str, dict]:
    """HR@10 and NDCG@10 over the catalogue (items rated in train) of every method;
    ``seed`` seeds the learned models (the leave-last-out split has no randomness)."""
    g = Grader(np.unique(seq.train.items), seq.train, seq.test)
    seq_hp = dataclasses.replace(seq_hp, seed=seed)
    mf_hp = dataclasses.replace(mf_hp, seed=seed)
    methods = {"most popular": lambda: (popularity_scores(g), None),
               "EASE": lambda: (ease_scores(g), None),
               "two-tower, ids only": lambda: two_tower_mf_scores(g, mf_hp),
               "GRU4Rec": lambda: gru4rec_scores(g, seq, seq_hp)}
    results = {}
    for name, make in methods.items():
        started = time.monotonic()
        with contextlib.redirect_stdout(sys.stderr):
            scores, seconds = make()
        row = {"train_s": seconds if seconds is not None else time.monotonic() - started}
        if seconds is not None:
            row["eps"] = len(g.train_m) * (seq_hp if name == "GRU4Rec" else mf_hp).epochs / seconds
        for suffix, exclude in (("", False), ("_x", True)):
            rank = g.ranks(scores, exclude_seen=exclude)
            row["hr" + suffix] = float(np.mean(rank < SEQUENTIAL_K))
            row["ndcg" + suffix] = ndcg(rank, SEQUENTIAL_K)
        results[name] = row
        log(f"  leave-last-out {name}: HR@10 {row['hr']:.4f}, seen excluded {row['hr_x']:.4f}")
    return results


def sequential_table(per_seed: list[dict[str, dict]]) -> str:
    k = SEQUENTIAL_K
    cols = ["hr", "ndcg", "hr_x", "ndcg_x"]
    head = [f"HR@{k}", f"NDCG@{k}", f"HR@{k} (seen excluded)", f"NDCG@{k} (seen excluded)",
            "train s", "examples/s"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in per_seed[0]:
        rows = [s[name] for s in per_seed]
        cells = [_cell([r[c] for r in rows]) for c in cols]
        cells.append(_cell([r["train_s"] for r in rows], 1))
        cells.append(_cell([r["eps"] for r in rows if "eps" in r], 0))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    verdicts = []
    for col, what in (("hr", "seen left in"), ("hr_x", "seen excluded")):
        mean = {n: float(np.mean([s[n][col] for s in per_seed])) for n in per_seed[0]}
        best = max((n for n in mean if n != "GRU4Rec"), key=mean.get)
        ratio = mean["GRU4Rec"] / mean[best] if mean[best] else float("inf")
        verdicts.append(f"GRU4Rec HR@{k} ({what}) is {ratio:.2f}x the best non-sequential model "
                        f"({best}, {mean[best]:.4f}); the target is 1.20x.")
    return "\n".join(lines + [""] + verdicts)


# --- Report ---------------------------------------------------------------------------------

def _cell(values: list[float], digits: int = 4) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def table(per_seed: list[dict[str, dict]]) -> str:
    names = list(per_seed[0])
    cols = [f"top{k}" for k in KS] + [f"top{k}_x" for k in KS] + ["rmse"]
    head = ([f"top-{k}" for k in KS] + [f"top-{k} (seen excluded)" for k in KS]
            + ["RMSE", "train s", "examples/s"])
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in names:
        rows = [s[name] for s in per_seed]
        cells = [_cell([r[c] for r in rows if c in r]) for c in cols]
        cells.append(_cell([r["train_s"] for r in rows if "train_s" in r], 1))
        cells.append(_cell([r["eps"] for r in rows if "eps" in r], 0))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    verdicts = []
    pop = np.mean([s["most popular"]["top100"] for s in per_seed])
    for name in names:
        if "two-tower" in name:
            mine = np.mean([s[name]["top100"] for s in per_seed])
            verdicts.append(f"{name} {'beats' if mine > pop else 'does NOT beat'} most popular "
                            f"on top-100 accuracy ({mine:.4f} vs {pop:.4f}).")
    return "\n".join(lines + [""] + verdicts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="a MovieLens dataset directory")
    parser.add_argument("--seeds", default="0,1,2", help="split seeds (comma-separated)")
    parser.add_argument("--config", help="pipeline config to start from (split.seed is set "
                        "per seed, split.kind to random)")
    parser.add_argument("--workdir", default=os.path.join("outputs", "bench-quality"))
    parser.add_argument("--no-variants", action="store_true",
                        help="grade the pipeline's models and the baselines only")
    parser.add_argument("--no-lists", action="store_true",
                        help="skip the lists' NDCG (two-stage blends against the baselines)")
    parser.add_argument("--list-candidates", default=",".join(map(str, LIST_CANDIDATES)),
                        help="the two-stage Ns to grade (comma-separated)")
    parser.add_argument("--rank-weights", default=",".join(f"{w:g}" for w in RANK_WEIGHTS),
                        help="the two-stage blends to grade (comma-separated; 0 = retrieval "
                        "alone)")
    parser.add_argument("--sequential", choices=("also", "no", "only"), default="also",
                        help="the leave-last-out section (GRU4Rec against the others)")
    parser.add_argument("--context-length", type=int, default=None,
                        help="GRU4Rec context length (default: SequentialHParams')")
    args = parser.parse_args(argv)
    import recsys_pipeline  # noqa: F401  (Keras 2 before TensorFlow loads)
    from recsys_pipeline.pipeline.config import PipelineConfig, load_config
    from recsys_pipeline.trainer.hparams import SequentialHParams

    base = load_config(args.config) if args.config else PipelineConfig()
    seeds = [int(s) for s in args.seeds.split(",")]
    work = os.path.abspath(args.workdir)
    if args.sequential != "only":
        per_seed, lists = [], []
        for seed in seeds:
            paths = run_seed(os.path.abspath(args.data_dir), work, seed, base)
            with contextlib.redirect_stdout(sys.stderr):  # epoch lines are progress
                variants = None if args.no_variants else train_variants(
                    paths, base, os.path.join(work, f"seed-{seed}", "variants"))
            per_seed.append(grade_seed(paths, variants))
            log(f"seed {seed}: {per_seed[-1]}")
            if not args.no_lists:
                lists.append(list_seed(
                    paths, [int(n) for n in args.list_candidates.split(",")],
                    [float(w) for w in args.rank_weights.split(",")]))
                log(f"seed {seed} lists: {lists[-1]}")
        print(f"Quality benchmark: {args.data_dir}, random 80/20 split, seeds {args.seeds} "
              f"(mean ± std over {len(seeds)})\n")
        print(table(per_seed))
        if lists:
            print(f"\nLists: NDCG@{LIST_K} of each eval user's top {LIST_K} (gain = the eval "
                  "rating, items rated in train never listed), seeds "
                  f"{args.seeds}\n")
            print(list_table(lists, (base.recommender.candidates,
                                     base.recommender.rank_weight),
                             [int(n) for n in args.list_candidates.split(",")]))
    if args.sequential != "no":
        seq_hp = SequentialHParams()
        if args.context_length:
            seq_hp = dataclasses.replace(seq_hp, context_length=args.context_length)
        seq = leave_last_out(os.path.abspath(args.data_dir), seq_hp.context_length,
                             os.path.join(work, "leave-last-out"), base.beam.pipeline_args)
        per_seed = [sequential_seed(seq, seed, seq_hp, base.retrieval) for seed in seeds]
        print(f"\nSequential retrieval, leave-last-out ({len(seq.test.users)} users' last "
              f"ratings; context {seq_hp.context_length} items; catalogue: items rated in "
              f"train; model seeds {args.seeds})\n")
        print(sequential_table(per_seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
