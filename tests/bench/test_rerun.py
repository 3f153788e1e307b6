"""Smoke test of bench/rerun.py: two runs of the whole pipeline on 1,500 ratings of MovieLens
100K with one epoch each; the rerun keeps every gate's verdict, the index and the
recommender, and the table says so."""

import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import write_subset

pytestmark = pytest.mark.e2e

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "rerun.py"
FAST = """
[retrieval]
epochs = 1
[ranking]
epochs = 1
ensemble = 1
[evaluation]
min_top_k_accuracy = 0.0
max_rmse = 5.0
min_ndcg = 0.0
[index]
min_recall = 0.9
"""


def test_rerun_benchmark_prints_its_table(real_ml100k, tmp_path):
    data = write_subset(real_ml100k, tmp_path / "ml-100k", 1500)
    (tmp_path / "fast.toml").write_text(FAST)
    result = subprocess.run(
        [sys.executable, str(BENCH), "--data-dir", str(data), "--config",
         str(tmp_path / "fast.toml"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = dict(re.findall(r"^(first|rerun)\s+([\d.]+)\s+\d+\s+\d+$", result.stdout, re.M))
    assert set(rows) == {"first", "rerun"}, result.stdout
    for node, kept in (("RetrievalEvaluator", "blessing"), ("RankingEvaluator", "blessing"),
                       ("ScannIndexer", "index_blessing"), ("Recommender", "blessing")):
        assert re.search(rf"^  {node}\s+[\d.]+s  kept its earlier {kept}$", result.stdout,
                         re.M), (node, result.stdout)
    # On 1,500 ratings start-up dominates the rerun: the target is for ML-100K (RESULTS.md).
    share = re.search(r"^rerun / first run = ([\d.]+)% \(target <= 25%: (met|NOT met)\)$",
                      result.stdout, re.M)
    assert share, result.stdout
    assert float(share.group(1)) == pytest.approx(
        100 * float(rows["rerun"]) / float(rows["first"]), abs=0.2)
