"""bench/replay.py: its counting and tables on hand-made days, and a smoke run of the whole
benchmark on two tiny synthetic days (marked e2e)."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from recsys_pipeline.data import arrivals
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
R, K = nodes.RETRIEVAL.name, nodes.RANKING.name


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up; replay imports quality
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def replay():
    _load("quality")
    return _load("replay")


def _day(replay, day, retrieval, ranking, blessed=(True, True), trainer_s=(10.0, 20.0),
         warm=True, graded=None):
    return replay.Day(day, 20261100 + day, True, 60.0, window_ratings=1000 * day,
                      gated={R: retrieval, K: ranking},
                      blessed={R: blessed[0], K: blessed[1]},
                      trainer_s={R: trainer_s[0], K: trainer_s[1]},
                      warm={R: warm, K: warm}, graded=graded or {})


def test_bad_pushes_count_blessed_models_worse_than_served_beyond_the_tolerance(replay):
    config = PipelineConfig()
    tol_k, tol_r = config.evaluation.top_k_tolerance, config.evaluation.rmse_tolerance
    days = [
        _day(replay, 1, (0.30, None), (0.90, None)),  # nothing served yet
        _day(replay, 2, (0.30 - tol_k / 2, 0.30), (0.90, 0.90)),  # within the tolerance
        _day(replay, 3, (0.30 - 2 * tol_k, 0.30), (0.90, 0.90)),  # worse, and pushed: bad
        _day(replay, 4, (0.30 - 2 * tol_k, 0.30), (0.90, 0.90), blessed=(False, True)),
        _day(replay, 5, (0.30, 0.30), (0.90 + 2 * tol_r, 0.90)),  # RMSE higher is worse
        _day(replay, 6, (0.30, 0.30), (0.90 - 2 * tol_r, 0.90)),
    ]
    assert replay.bad_pushes(days, config) == 2


def test_summary_compares_warm_with_cold_trainers_and_averages_from_day_8(replay):
    def graded(served):
        return {"served model": served, "EASE (window)": 0.2, "popularity (last span)": 0.1,
                "new users: recency-weighted": 0.15, "new users: most rated in window": 0.12}

    warm = [_day(replay, d, (0.3, 0.3), (0.9, 0.9), trainer_s=(3.0, 5.0), warm=d > 1,
                 graded=graded(0.1 if d < 8 else 0.3)) for d in range(1, 11)]
    cold = [_day(replay, d, (0.25, 0.25), (0.9, 0.9), trainer_s=(10.0, 10.0), warm=False,
                 graded=graded(0.2)) for d in range(1, 11)]
    text = replay.summary({"warm": warm, "cold": cold}, {"warm": 600.0, "cold": 1200.0},
                          PipelineConfig(), window=3)
    # Days 8-10 only: 0.3 against EASE's 0.2 and 3x popularity's 0.1.
    assert "warm: served top-100 0.3000 averaged over days 8-10: >= EASE (0.2000); 3.00x" in text
    assert "cold: served top-100 0.2000 averaged over days 8-10: >= EASE (0.2000); 2.00x" in text
    # The 9 warm-started days: 8 s of Trainers against 20 s.
    assert ("Warm-started Trainers took 40% of the cold Trainers' time on the 9 warm-started "
            "days (72s against 180s") in text
    assert "candidate top-100 on the new span 0.3000 warm, 0.2500 cold" in text
    assert "new users' fallback top-100 over days 8-10: recency-weighted 0.1500, most rated " \
           "in the window 0.1200" in text
    assert ("warm: 10/10 runs succeeded, whole replay 600s of runs; once the window was full "
            "(day 4 on), runs took 60-60s, the last 60s.") in text


def test_a_fixed_list_scores_by_position(replay):
    quality = sys.modules["quality"]
    split = quality.Split(np.array([b"u"], object), np.array([b"c"], object),
                          np.array([4.0], np.float32), np.zeros(1, np.int64))
    g = quality.Grader(np.array([b"a", b"b", b"c"], object), split, split)
    scores = replay.list_scores([b"c", b"x", b"a"], g)(np.arange(2))
    np.testing.assert_array_equal(scores, [[1, 0, 3], [1, 0, 3]])  # x is not in the catalogue


@pytest.mark.e2e
def test_replay_benchmark_on_two_tiny_days(tmp_path):
    config = tmp_path / "fast.toml"
    # Gates loose enough that two tiny days are blessed whatever they learn: this checks the
    # benchmark, not the models.
    config.write_text("[retrieval]\nepochs = 2\nwarm_epochs = 1\n\n"
                      "[ranking]\nepochs = 1\nwarm_epochs = 1\nensemble = 1\n\n"
                      "[evaluation]\nmin_top_k_accuracy = 0.0\nmax_rmse = 5.0\n"
                      "top_k_tolerance = 1.0\nrmse_tolerance = 1.0\n\n"
                      "[recommender]\nenabled = false\n")
    result = subprocess.run(
        [sys.executable, str(BENCH / "replay.py"), "--days", "2", "--ratings-per-day", "400",
         "--window", "2", "--modes", "warm", "--config", str(config),
         "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    out = result.stdout
    number = r"\d\.\d{4}"
    first, second = arrivals.span_number(0), arrivals.span_number(1)  # the synth's dates
    # Day 1: one span, nothing older to train on: no served model, nothing graded.
    assert re.search(rf"^\| 1 \| {first} \| 400 \| {number} / - \| {number} / - \| yes/yes \| "
                     r"\d+ \| no earlier span to compare with \| [\d.]+ \(c\) \| "
                     r"[\d.]+ \(c\) \| \d+ \| - \| - \| - \|",
                     out, flags=re.M), out
    # Day 2: trained on day 1 warm from day 1's model, both models scored on day 2.
    assert re.search(rf"^\| 2 \| {second} \| 800 \| {number} / {number} \| {number} / {number}"
                     rf" \| (yes|no)/(yes|no) \| (\d+|-) \| against span {first}: item_id "
                     r"\d\.\d+, user_rating \d\.\d+ \| [\d.]+ \(w\) \| [\d.]+ \(w\) \| \d+ \| "
                     rf"{number} \| {number} \| {number} \| 0\.\d\d \| {number} \| {number} \|",
                     out, flags=re.M), out
    assert re.search(r"warm: served top-100 \d\.\d{4} averaged over days 2-2", out), out
    assert "warm: pushes worse than the served model beyond the tolerance: 0." in out
    assert "warm: 2/2 runs succeeded" in out
    assert "epoch" not in out  # progress goes to stderr
