"""The rolling window and the next_span split through `recsys run`, over three small spans
of MovieLens 100K in time order, two spans per window:

1. span 1 alone: its own time split (nothing older to train on), blessed and pushed;
2. spans 1-2: trained on span 1, and the candidate and the served model (the baseline) are
   both scored on span 2;
3. spans 2-3: the window moved, span 1 left it.
"""

import os
import subprocess
import sys

import pytest

from recsys_pipeline import metadata
from recsys_pipeline.components import span_window
from recsys_pipeline.model_summary import BASELINE, CANDIDATE, read_evaluation
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig

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
[ranking]
epochs = 1
ensemble = 1
[evaluation]
min_top_k_accuracy = 0.0
max_rmse = 5.0
top_k_tolerance = 1.0
rmse_tolerance = 1.0
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
    (root / "config.toml").write_text(CONFIG)
    out = root / "out"
    stdouts = [_recsys("run", "--output-dir", str(out), "--data-dir", str(data),
                       "--config", str(root / "config.toml"), "--span", str(n))
               for n in (1, 2, 3)]
    config = PipelineConfig()
    config.output_dir = str(out)
    return config, metadata.summarize_runs(config), stdouts


def _window(run):
    return run.properties(nodes.SPAN_WINDOW, "window"), run.output(nodes.SPAN_WINDOW, "window")


def test_the_window_rolls_over_the_spans(replay):
    config, runs, stdouts = replay
    assert [_window(r)[0]["window_spans"] for r in runs] == ["1", "1,2", "2,3"]
    assert [_window(r)[0]["window_split"] for r in runs] == [
        span_window.WITHIN_SPANS, span_window.NEXT_SPAN, span_window.NEXT_SPAN]
    assert "span window:          spans 2,3 (" in stdouts[2]
    listing = _recsys("runs", "--output-dir", config.output_dir)
    assert "span 3" in listing and "window 2,3" in listing
    record = span_window.read_window(_window(runs[2])[1])
    assert record["spans"] == [2, 3] and [h["number"] for h in record["history"]] == [1, 2, 3]


def test_next_span_scores_candidate_and_baseline_on_the_newest_span(replay):
    config, runs, _ = replay
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
