"""Fault injection: the runner is killed with SIGKILL inside ExampleGen, Transform, a Trainer,
an Evaluator and a Pusher (tests/faults.py stops it at the exact point). After each kill the
serving directory holds only the complete, previously blessed versions, ML Metadata opens,
and a rerun completes, reusing what finished before the kill. The ExampleGen kill is followed
by the Transform one: the run killed in Transform is the rerun that has to redo ExampleGen.
Plus a disk full during a push.

Each scenario starts from a copy of one served baseline (3,000 ratings of MovieLens 100K, few
epochs) and changes the data or the config so that the component to kill has to execute.
"""

import errno
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from recsys_pipeline.components import serving_pusher
from recsys_pipeline.metadata import summarize_runs
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving import layout
from tests.conftest import write_subset

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
RECSYS = str(pathlib.Path(sys.executable).parent / "recsys")
# The recommender (built from the others after their gates) is left out: no fault point is
# in it, and each scenario would rebuild it. The index's recall bound is loose: a few hundred
# queries measure it within a few points, and its gate is not what is tested here.
BASE_CONFIG = """
[retrieval]
epochs = 2
[ranking]
epochs = 1
ensemble = 1
[evaluation]
min_top_k_accuracy = 0.01
max_rmse = 3.0
[recommender]
enabled = false
[index]
min_recall = 0.9
"""
MODELS = [m for m in nodes.MODEL_NAMES
          if nodes.push_of_model(m) not in nodes.RECOMMENDER.pushes]


def _subset(real_ml100k, root, n):
    d = root / f"ml-100k-{n}"
    return d if d.exists() else write_subset(real_ml100k, d, n)


def _config(path, extra=""):
    path.write_text(BASE_CONFIG + extra)
    return str(path)


def _run(out, data, config, env=None):
    result = subprocess.run([RECSYS, "run", "--output-dir", str(out), "--data-dir", str(data),
                             "--config", config], capture_output=True, text=True, timeout=900,
                            env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dict(re.findall(r"^  (\w+)\s+(ran|cached|failed|not run)\s", result.stdout,
                           flags=re.M))


def _served(out):
    """{model: [versions]} as TF Serving would see them (all-digit directories)."""
    return {m: layout.versions(str(out / "serving" / m)) for m in MODELS}


@pytest.fixture(scope="module")
def baseline(real_ml100k, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    out = root / "baseline"
    _run(out, _subset(real_ml100k, root, 3000), _config(root / "base.toml"))
    served = _served(out)
    assert all(len(v) == 1 for v in served.values()), served
    return root, out, served


def _kill_at(point, out, data, config, markers, env=None):
    markers.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.faults", point, str(markers), "run", "--output-dir",
         str(out), "--data-dir", str(data), "--config", config],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 600
    while not (markers / point).exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before reaching {point}:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run never reached {point}")
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _assert_only_complete_blessed_versions(out, served, kills):
    """After the ``kills``-th kill: the served versions as before, and ML Metadata readable."""
    assert _served(out) == served  # nothing new visible to TF Serving, nothing lost
    for model, versions in served.items():
        for version in versions:
            path = str(out / "serving" / model / str(version))
            assert layout.version_problem(path) is None, path
    # ML Metadata opens and reads: the killed runs are there, their last component unfinished.
    config = PipelineConfig(output_dir=str(out))
    runs = summarize_runs(config)
    assert len(runs) == 1 + kills and runs[-1].components
    return runs[-1]


# The fault points of a scenario, killed one run after another, and the ratings in the data
# (3,500: new data, so ExampleGen and Transform execute).
SCENARIOS = {"ExampleGen": (("ExampleGen", "Transform"), 3500), "Trainer": (("Trainer",), 3000),
             "Evaluator": (("Evaluator",), 3000), "Pusher": (("Pusher",), 3000)}


def _scenario_config(point):
    """(config, ran on the rerun, cached on the rerun): the change that makes ``point``'s
    component execute, and what finished before the kill that the rerun must reuse."""
    if point == "Transform":
        return BASE_CONFIG, ["Transform"], ["InteractionsExampleGen", "StatisticsGen",
                                            "ExampleValidator", "AnomalyGate"]
    if point == "Trainer":
        text = BASE_CONFIG.replace("[retrieval]\nepochs = 2", "[retrieval]\nepochs = 3")
        return text, ["RetrievalTrainer"], ["Transform", "RankingTrainer"]
    if point == "Evaluator":
        # New bounds for both gates, so both Evaluators execute TFMA (a gate given the same
        # model, examples and bound keeps its verdict instead), and the kill lands in the
        # first. Neither finished.
        text = BASE_CONFIG.replace("min_top_k_accuracy = 0.01", "min_top_k_accuracy = 0.02") \
            .replace("max_rmse = 3.0", "max_rmse = 3.1")
        return text, ["RetrievalEvaluator", "RankingEvaluator"], ["RetrievalTrainer",
                                                                  "RankingTrainer"]
    # Pusher: a retrained ranking model, blessed whatever its RMSE (wide tolerance), so that
    # RankingPusher copies it -- and is killed before publishing it.
    text = BASE_CONFIG.replace("[ranking]\nepochs = 1", "[ranking]\nepochs = 2").replace(
        "max_rmse = 3.0", "max_rmse = 3.0\nrmse_tolerance = 1.0")
    # The killed run's Evaluator had blessed the new model, so the rerun's baseline is that
    # model: the Evaluator runs again (against it), the Trainer does not.
    return text, ["RankingEvaluator", "RankingPusher"], ["Transform", "RetrievalTrainer",
                                                         "RankingTrainer"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kill_9_leaves_served_versions_and_a_rerun_recovers(baseline, real_ml100k, tmp_path,
                                                            scenario):
    root, base_out, served = baseline
    out = tmp_path / "outputs"
    shutil.copytree(base_out, out)
    points, ratings = SCENARIOS[scenario]
    data = _subset(real_ml100k, root, ratings)
    point = points[-1]
    text, ran, cached = _scenario_config(point)
    config = tmp_path / "scenario.toml"
    config.write_text(text)

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    for kills, killed in enumerate(points, start=1):
        _kill_at(killed, out, data, str(config), tmp_path / f"markers-{killed}", env)
        last = _assert_only_complete_blessed_versions(out, served, kills)
        # The killed run's temp directory is left (an earlier one's went at the next start).
        assert [p.name.startswith("recsys-run-") for p in system_tmp.iterdir()] == [True]
        if kills > 1:
            # The run after the ExampleGen kill executed ExampleGen again, whole, on the new
            # data (its killed execution was never published), before it was killed further on.
            states = {c.node_id: c.state for c in last.components}
            assert states[nodes.EXAMPLE_GEN] == "ran", states

    statuses = _run(out, data, str(config), env)  # the killed run's lock is gone with it
    # ... and so are their temp directories (TFX's sdists of itself in them), swept by the rerun.
    assert list(system_tmp.iterdir()) == []
    for name in ran:
        assert statuses[name] == "ran", (name, statuses)
    for name in cached:
        assert statuses[name] == "cached", (name, statuses)
    after = _served(out)
    for model, versions in after.items():
        assert versions[: len(served[model])] == served[model]  # old versions kept
        for version in versions:
            assert layout.version_problem(str(out / "serving" / model / str(version))) is None
        # A staging copy left by the kill is removed by the next push of that model.
        if len(versions) > len(served[model]):
            assert not [n for n in os.listdir(out / "serving" / model) if n.startswith(".")]
    if point == "Pusher":
        assert len(after[nodes.RANKING_MODEL]) == 2  # the killed push, done by the rerun


def test_disk_full_during_a_push_leaves_the_old_version_served(baseline, tmp_path, monkeypatch):
    _, base_out, served = baseline
    serving_dir = tmp_path / "serving"
    shutil.copytree(base_out / "serving", serving_dir)
    configs = {n: (serving_dir / n).read_bytes()
               for n in (layout.MODELS_CONFIG, layout.STOCK_MODELS_CONFIG)}
    model = nodes.RANKING_MODEL
    source = str(serving_dir / model / str(served[model][0]))

    def full_disk(src, dst):
        os.makedirs(dst)
        with open(os.path.join(dst, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", dst)

    monkeypatch.setattr(serving_pusher, "copy_tree", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        serving_pusher.push(source, str(serving_dir), model, {"source_model": "a new model"})
    assert _served(tmp_path) == served  # TF Serving still sees only the old version
    assert layout.version_problem(source) is None
    assert {n: (serving_dir / n).read_bytes() for n in configs} == configs
