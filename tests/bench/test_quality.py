"""bench/quality.py: the grader and baselines on hand-made data, and a one-seed smoke run of
the whole benchmark on a MovieLens subset (marked e2e)."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from recsys_pipeline.pipeline.config import PipelineConfig
from tests.conftest import make_ml100k, write_subset

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _split(q, rows):
    users, items, ratings = zip(*rows, strict=True)
    return q.Split(np.array(users, object), np.array(items, object),
                   np.array(ratings, np.float32), np.zeros(len(rows), np.int64))


def test_top_k_accuracy_counts_ranks_with_and_without_seen_items(quality, monkeypatch):
    monkeypatch.setattr(quality, "KS", (1, 2))
    items = np.array([b"a", b"b", b"c"], object)
    train = _split(quality, [(b"u", b"a", 5), (b"v", b"b", 3)])
    test = _split(quality, [(b"u", b"b", 4), (b"v", b"c", 4)])
    g = quality.Grader(items, train, test)
    # Scores prefer a > b > c for everyone.
    scores = lambda rows: np.tile([3.0, 2.0, 1.0], (len(rows), 1))  # noqa: E731
    assert g.accuracy(scores, exclude_seen=False) == {1: 0.0, 2: 0.5}  # b is 2nd, c 3rd
    # u has seen a: b becomes u's first; v has seen b: c becomes v's second.
    assert g.accuracy(scores, exclude_seen=True) == {1: 0.5, 2: 1.0}


def test_a_tie_ranks_behind_and_a_non_finite_score_misses(quality, monkeypatch):
    monkeypatch.setattr(quality, "KS", (1, 3))
    items = np.array([b"a", b"b", b"c"], object)
    train = _split(quality, [(b"u", b"a", 5)])
    test = _split(quality, [(b"u", b"b", 4), (b"u", b"c", 4)])
    g = quality.Grader(items, train, test)
    constant = lambda rows: np.ones((len(rows), 3))  # noqa: E731
    # Three items scored alike: each test item has the two others at least as high.
    np.testing.assert_array_equal(g.ranks(constant, exclude_seen=False), [2, 2])
    assert g.accuracy(constant, exclude_seen=False) == {1: 0.0, 3: 1.0}
    nan = lambda rows: np.full((len(rows), 3), np.nan)  # noqa: E731
    assert g.accuracy(nan, exclude_seen=False) == {1: 0.0, 3: 0.0}


def test_ndcg_discounts_by_rank_and_ignores_misses(quality):
    ranks = np.array([0, 1, 9, 10, np.inf])
    expected = (1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5
    assert quality.ndcg(ranks, 10) == pytest.approx(expected)


def test_leave_last_out_holds_out_each_users_latest_rating(quality, tmp_path):
    # u1: m1 at t=10, m3 at t=30, m2 at t=20 -> m3 is held out with context [m1, m2].
    data = make_ml100k(tmp_path, "1\t1\t5\t10\n1\t3\t3\t30\n1\t2\t4\t20\n"
                                 "2\t3\t4\t5\n2\t1\t2\t6\n")
    seq = quality.leave_last_out(str(data), 2, str(tmp_path / "work"),
                                 PipelineConfig().beam.pipeline_args)
    held_out = dict(zip(seq.test.users, zip(seq.test.items, map(tuple, seq.test_context),
                                            strict=True), strict=True))
    assert held_out == {"1": ("3", ("1", "2")), "2": ("1", ("", "3"))}
    train = sorted(zip(seq.train.users, seq.train.items, map(tuple, seq.train_context),
                       strict=True))
    assert train == [("1", "1", ("", "")), ("1", "2", ("", "1")), ("2", "3", ("", ""))]
    g = quality.Grader(np.unique(seq.train.items), seq.train, seq.test)
    # m2 was rated only by u1, in train: unknown ids and padding become LIST_PADDING.
    np.testing.assert_array_equal(quality.item_rows(g, seq.test_context), [[0, 1], [-1, 2]])


def test_ease_recommends_what_co_occurs(quality):
    # Users who rate a also rate b; the test asks whether a user with only a gets b first.
    rows = [(f"u{i}".encode(), m, 4) for i in range(20) for m in (b"a", b"b")]
    rows += [(f"w{i}".encode(), m, 4) for i in range(20) for m in (b"c", b"d")]
    rows += [(b"x", b"a", 4), (b"y", b"c", 4)]
    items = np.array([b"a", b"b", b"c", b"d"], object)
    test = _split(quality, [(b"x", b"b", 5), (b"y", b"d", 5)])
    g = quality.Grader(items, _split(quality, rows), test)
    scores = quality.ease_scores(g, lam=1.0)(np.arange(2))
    assert scores[0].argmax() in (0, 1) and scores[0][1] > scores[0][2]
    assert scores[1][3] > scores[1][0]


def test_biased_mf_beats_the_global_mean_on_low_rank_ratings(quality):
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(60, 2)), rng.normal(size=(40, 2))
    full = np.clip(3.5 + users @ items.T + rng.normal(0, 0.1, (60, 40)), 1, 5)
    cells = [(u, m) for u in range(60) for m in range(40)]
    order = rng.permutation(len(cells))
    pick = lambda idx: [(f"u{cells[i][0]}".encode(), f"m{cells[i][1]}".encode(),  # noqa: E731
                         full[cells[i]]) for i in idx]
    train, test = _split(quality, pick(order[:1800])), _split(quality, pick(order[1800:]))
    g = quality.Grader(np.array([f"m{i}".encode() for i in range(40)], object), train, test)
    predicted = quality.biased_mf(g, factors=2, reg=1.0)(g.test_u, g.test_m)
    mean = quality.rmse(np.full(len(test.ratings), train.ratings.mean()), test.ratings)
    assert quality.rmse(predicted, test.ratings) < 0.5 * mean


@pytest.mark.e2e
def test_quality_benchmark_one_seed_on_a_subset(real_ml100k, tmp_path):
    data = write_subset(real_ml100k, tmp_path / "ml-100k", 4_000)
    config = tmp_path / "fast.toml"
    # The pipeline's own recommender is left out: the benchmark composes its two stages itself.
    config.write_text("[retrieval]\nepochs = 1\n\n[ranking]\nepochs = 1\nensemble = 1\n\n"
                      "[recommender]\nenabled = false\nrank_weight = 0.5\n")
    result = subprocess.run(
        [sys.executable, str(BENCH), "--data-dir", str(data), "--seeds", "3",
         "--config", str(config), "--workdir", str(tmp_path / "work"),
         "--list-candidates", "50", "--rank-weights", "0,0.5"],
        capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    number = r"(\d\.\d{4})"
    for name in ("most popular", "EASE", "two-tower \\(pipeline\\)",
                 "two-tower, no logQ correction", "two-tower, accidental hits removed"):
        assert re.search(rf"^\| {name} \| " + rf"{number} \| " * 6, out, flags=re.M), out
    for name in ("global mean", "biased MF \\(ALS\\)", "ranking MLP \\(pipeline\\)",
                 "ranking DCN", "ranking DCN \\+ bias terms"):
        assert re.search(rf"^\| {name} \|(  \|){{6}} {number} \|", out, flags=re.M), out
    assert re.search(r"two-tower \(pipeline\) (beats|does NOT beat) most popular", out)
    for name in ("most popular", "EASE", "two-stage N=50, retrieval alone",
                 "two-stage N=50, rank_weight 0.5"):
        assert re.search(rf"^\| {name} \| {number} \|$", out, flags=re.M), out
    assert re.search(rf"Best blend: two-stage N=50, rank_weight 0.5 \({number}\); the "
                     r"pipeline's default \(two-stage N=100, rank_weight 0.5\) is not in this "
                     "grid", out), out
    assert re.search(rf"At N=50 the best blend {number} against retrieval alone {number} and "
                     rf"most popular {number}", out), out
    assert "Sequential retrieval, leave-last-out" in out
    for name in ("most popular", "EASE", "two-tower, ids only", "GRU4Rec"):
        assert len(re.findall(rf"^\| {name} \| " + rf"{number} \| " * 4, out, flags=re.M)) == (
            2 if name in ("most popular", "EASE") else 1), out  # the first two: both tables
    assert re.search(r"GRU4Rec HR@10 \(seen excluded\) is \d+\.\d\dx the best", out)
    assert "epoch" not in out  # the Trainers' progress goes to stderr
    # The split was the configured seed's.
    assert 'seed = 3' in (tmp_path / "work" / "seed-3" / "bench-quality.toml").read_text()


def test_popularity_breaks_ties_so_that_tied_items_do_not_share_the_best_rank(quality):
    items = np.array([b"a", b"b", b"c", b"d"], object)
    train = _split(quality, [(b"u", b"a", 4), (b"v", b"a", 4), (b"u", b"b", 4), (b"v", b"c", 4)])
    test = _split(quality, [(b"w", b"b", 4), (b"w", b"c", 4), (b"w", b"d", 4)])
    g = quality.Grader(items, train, test)
    # a (2 ratings) first, then b and c (1 each) in catalogue order, then d.
    np.testing.assert_array_equal(g.ranks(quality.popularity_scores(g), exclude_seen=False),
                                  [1, 2, 3])
