"""Smoke test of bench/bulk.py: the tiny exports' recommender, pushed into a model base."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout, two_stage

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "bulk.py"


def test_bulk_benchmark_prints_its_table(stages, tiny, tmp_path):
    _, scann_dir, ranking_dir = stages
    two_stage.build(scann_dir, ranking_dir, str(tmp_path / "built"), 0.25)
    version = tmp_path / "outputs" / "serving" / nodes.RECOMMENDER_MODEL / "1"
    shutil.copytree(tmp_path / "built", version)
    (version / "assets.extra" / layout.PUSH_RECORD).write_text(json.dumps({"version": 1}))
    result = subprocess.run(
        [sys.executable, str(BENCH), "--output-dir", str(tmp_path / "outputs"), "--k", "3",
         "--repeats", "1"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    users = len({r["user_id"] for r in tiny.raw_train_rows})
    # Every user has more than 3 unrated items among the tiny catalogue's 20.
    assert re.search(rf"^\| 1 \| {users} \| {3 * users} \| \d+\.\d% \(\d+ of 20\) \| "
                     r"[\d.]+ \| [\d.]+ \|$", result.stdout, flags=re.M), result.stdout
