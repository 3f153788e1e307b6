"""The rolling window and the next_span split through `recsys run`, over three small spans
of MovieLens 100K in time order, on disk together (a backlog) and taken by three plain runs,
oldest first, two spans per window:

1. span 1 alone: its own time split (nothing older to train on), blessed and pushed;
2. spans 1-2: trained on span 1, and the candidate and the served model (the baseline) are
   both scored on span 2;
3. spans 2-3: the window moved, span 1 left it.

Runs 2 and 3 warm-start each Trainer from the model the run before blessed. A fourth span,
nothing but ratings of three blockbusters (the kind of log a broken client sends), is stopped
by the drift gate before Transform; a fifth, span 3 delivered again, is refused as a repeat
before anything is trained on it.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from recsys_pipeline import metadata
from recsys_pipeline.components import span_window
from recsys_pipeline.model_summary import BASELINE, CANDIDATE, read_evaluation
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving import layout

pytestmark = pytest.mark.e2e

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")
RATINGS_PER_SPAN = 1200
CONFIG = """
[data]
window_spans = 2
[split]
kind = "next_span"
[retrieval]
epochs = 1
warm_epochs = 1
[ranking]
epochs = 1
warm_epochs = 1
ensemble = 1
[evaluation]
min_top_k_accuracy = 0.0
max_rmse = 5.0
top_k_tolerance = 1.0
rmse_tolerance = 1.0
min_ndcg = 0.0
ndcg_tolerance = 1.0
[index]
min_recall = 0.9
"""


def _recsys(*args):
    result = subprocess.run([RECSYS, *args], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def replay(real_ml100k, tmp_path_factory):
    """Three spans run one after the other; (config, run summaries, run stdouts)."""
    root = tmp_path_factory.mktemp("spans")
    data = root / "data"
    data.mkdir()
    for name in ("u.item", "u.user", "u.genre"):
        (data / name).write_bytes((real_ml100k / name).read_bytes())
    lines = sorted((real_ml100k / "u.data").read_text().splitlines(),
                   key=lambda line: int(line.split("\t")[3]))
    for i in range(3):
        (data / f"span-{i + 1}").mkdir()
        chunk = lines[i * RATINGS_PER_SPAN:(i + 1) * RATINGS_PER_SPAN]
        (data / f"span-{i + 1}" / "u.data").write_text("\n".join(chunk) + "\n")
    rest = lines[3 * RATINGS_PER_SPAN:]
    blockbusters = [line for line in rest if line.split("\t")[1] in ("50", "258", "100")]
    (data / "span-4").mkdir()
    (data / "span-4" / "u.data").write_text("\n".join(blockbusters[:RATINGS_PER_SPAN]) + "\n")
    (data / "span-5").mkdir()
    (data / "span-5" / "u.data").write_bytes((data / "span-3" / "u.data").read_bytes())
    (root / "config.toml").write_text(CONFIG)
    out = root / "out"
    plain = ["run", "--output-dir", str(out), "--data-dir", str(data), "--config",
             str(root / "config.toml")]
    args = [*plain, "--span"]
    stdouts = [_recsys(*plain) for _ in (1, 2, 3)]  # "latest": the backlog, oldest first
    config = PipelineConfig()
    config.output_dir = str(out)
    runs = metadata.summarize_runs(config)
    served = {m: layout.versions(os.path.join(config.serving_dir, m)) for m in nodes.MODEL_NAMES}
    blocked = subprocess.run([RECSYS, *args, "4"], capture_output=True, text=True, timeout=900)
    repeated = subprocess.run([RECSYS, *args, "5"], capture_output=True, text=True, timeout=900)
    after = {m: layout.versions(os.path.join(config.serving_dir, m)) for m in nodes.MODEL_NAMES}
    return config, runs, stdouts, (blocked, repeated, served, after)


def _window(run):
    return run.properties(nodes.SPAN_WINDOW, "window"), run.output(nodes.SPAN_WINDOW, "window")


def test_the_window_rolls_over_the_spans(replay):
    config, runs, stdouts, _ = replay
    # Each plain run took the oldest span not yet ingested: no model was trained on older
    # data than the one it replaced.
    assert [span_window.read_window(_window(r)[1])["span"] for r in runs] == [1, 2, 3]
    assert all(f", span {n}" in out for n, out in zip((1, 2, 3), stdouts, strict=True))
    assert [_window(r)[0]["window_spans"] for r in runs] == ["1", "1,2", "2,3"]
    assert [_window(r)[0]["window_split"] for r in runs] == [
        span_window.WITHIN_SPANS, span_window.NEXT_SPAN, span_window.NEXT_SPAN]
    assert "span window:          spans 2,3 (" in stdouts[2]
    listing = _recsys("runs", "--output-dir", config.output_dir)
    assert "span 3" in listing and "window 2,3" in listing
    record = span_window.read_window(_window(runs[2])[1])
    assert record["spans"] == [2, 3] and [h["number"] for h in record["history"]] == [1, 2, 3]


def test_next_span_scores_candidate_and_baseline_on_the_newest_span(replay):
    config, runs, _, _ = replay
    store = metadata.open_store(config)
    run = runs[1]
    props, window_uri = _window(run)
    record = span_window.read_window(window_uri)
    assert record["ratings"] == {"train": RATINGS_PER_SPAN, "eval": RATINGS_PER_SPAN}
    for branch in (nodes.RETRIEVAL, nodes.RANKING):
        evaluator = next(c for c in run.components if c.node_id == branch.evaluator)
        assert evaluator.state == "ran"
        (evaluation_artifact,) = store.get_artifacts_by_uri(evaluator.outputs["evaluation"][0])
        execution = metadata.producer(store, evaluation_artifact)
        examples = [a for key, a in metadata.inputs(store, execution) if key == "examples"]
        assert [a.uri for a in examples] == [window_uri]
        assert examples[0].properties["span"].int_value == 2
        evaluation = read_evaluation(evaluator.outputs["evaluation"][0])
        names = {name for (_, name) in evaluation.metrics}
        # Both models scored in the same TFMA run over that window's eval split (span 2).
        assert any(evaluation.value(n, BASELINE) is not None for n in names), evaluation
        assert any(evaluation.value(n, CANDIDATE) is not None for n in names), evaluation


def test_later_spans_warm_start_from_the_last_blessed_model(replay):
    from recsys_pipeline.trainer import models, warm_start
    from recsys_pipeline.trainer.common import first_batch, load_training_data
    from recsys_pipeline.trainer.export import read_metadata
    from recsys_pipeline.trainer.hparams import RetrievalHParams
    from recsys_pipeline.transform import features as F

    _, runs, stdouts, _ = replay
    for branch in (nodes.RETRIEVAL, nodes.RANKING):
        starts = [r.properties(branch.trainer, "model")[nodes.WARM_START_PROPERTY] for r in runs]
        assert starts[0].startswith("cold start (no base model"), starts[0]
        for before, start in zip(runs, starts[1:], strict=False):
            base = os.path.join(before.output(branch.trainer, "model"), "Format-Serving")
            assert start.startswith(f"warm start from {base}"), start
            assert start.endswith(", 1 epoch"), start
    assert "retrieval start:      warm start from" in stdouts[1]

    # Before the first step of run 2: its retrieval model, built from run 2's Transform output
    # and seeded from run 1's model as its Trainer was.
    first, second = runs[0], runs[1]
    base_dir = os.path.join(first.output(nodes.RETRIEVAL.trainer, "model"), "Format-Serving")
    serving = os.path.join(second.output(nodes.RETRIEVAL.trainer, "model"), "Format-Serving")
    hp = RetrievalHParams(**read_metadata(serving).hparams)
    train_files = [os.path.join(second.output(nodes.TRANSFORM, "transformed_examples"),
                                "Split-train", "*")]
    data = load_training_data(second.output(nodes.TRANSFORM, "transform_graph"), train_files,
                              os.path.join(second.output(nodes.EXAMPLE_GEN, "catalogue"),
                                           "Split-catalogue"))
    model = models.build_retrieval(data.sizes, hp, data.stats.item_index_counts,
                                            numeric=data.numeric)
    models.build_weights(model, first_batch(data, train_files))
    initial = model.query_tower.user.embeddings.numpy().copy()
    start = warm_start.restore([model], nodes.RETRIEVAL.name,
                               data.tft_output.vocabulary_file_by_name, base_dir,
                               warm_epochs=hp.warm_epochs, cold_epochs=hp.epochs)
    assert start.warm, start.reason
    users = model.query_tower.user.embeddings.numpy()
    weights_dir = warm_start.weights_dir(base_dir)
    saved = np.load(os.path.join(weights_dir, warm_start.WEIGHTS_FILE))
    j = [w.ref() for w in model.weights].index(model.query_tower.user.embeddings.ref())
    base_users = saved[f"m0_w{j}"]
    with open(os.path.join(weights_dir, warm_start.VOCABULARY_DIR, F.USER_ID), "rb") as f:
        old = f.read().split(b"\n")[:-1]
    new = data.tft_output.vocabulary_by_name(F.USER_ID)
    both = [u for u in new if u in set(old)]
    newcomers = [u for u in new if u not in set(old)]
    assert both and newcomers, (len(both), len(newcomers))
    assert start.rows[F.USER_ID].kept == len(both) and start.rows[F.USER_ID].new == len(newcomers)
    for user in both:
        np.testing.assert_array_equal(users[new.index(user)], base_users[old.index(user)])
    for user in newcomers:
        row = users[new.index(user)]
        np.testing.assert_array_equal(row, initial[new.index(user)])
        # Copied from no one: no user's trained row (the base's out-of-vocabulary rows never
        # trained, and hold what the same seed draws here too).
        assert not (base_users[:len(old)] == row).all(axis=1).any(), user


def test_the_drift_gate_stops_a_drifted_span_and_names_the_feature(replay):
    _, runs, stdouts, (blocked, _, served, after) = replay
    # The natural drift of MovieLens from span to span passes, and is recorded.
    for run in runs[1:]:
        assert _window(run)[0]["drift"].startswith("against span "), _window(run)[0]
    assert "span drift:           against span 2: item_id " in stdouts[2]
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output[-3000:]
    assert "span 4 has drifted from span 3: item_id L-infinity distance 0." in output, \
        output[-3000:]
    assert after == served  # nothing pushed


def test_a_span_delivered_again_is_refused_before_training(replay):
    _, runs, _, (_, repeated, served, after) = replay
    output = repeated.stdout + repeated.stderr
    assert repeated.returncode == 2, output[-3000:]
    assert f"span 5 repeats {RATINGS_PER_SPAN:,} of its {RATINGS_PER_SPAN:,} ratings from " \
        "span 3 (same user, item and timestamp" in output, output[-3000:]
    assert "Traceback" not in repeated.stderr, repeated.stderr[-3000:]
    assert after == served  # nothing trained on it, nothing pushed


def test_the_report_plots_the_gated_metrics_per_span(replay):
    config, runs, _, _ = replay
    _recsys("report", "--output-dir", config.output_dir)
    with open(os.path.join(config.output_dir, "report", "index.html")) as f:
        page = f.read()
    top_k = PipelineConfig().evaluation.top_k
    for title in (f"retrieval: top-{top_k} accuracy, per span", "ranking: RMSE, per span"):
        assert f'aria-label="{title}"' in page, title
    # Span 2's candidate, and the served model (span 1's) scored on span 2 beside it.
    assert "<title>span 2: 0." in page and "<title>span 2: served model 0." in page
    assert "<title>span 1: served model" not in page  # nothing served before the first span
