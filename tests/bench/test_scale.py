"""bench/scale.py: its table and growth exponents, and a smoke run of the whole DAG on a tiny
synthetic dataset (marked e2e: it runs ``recsys run``)."""

import importlib.util
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_growth_exponent_and_table():
    scale = _module()
    assert scale.exponent(1, 10.0, 5, 50.0) == pytest.approx(1.0)
    assert scale.exponent(1, 10.0, 5, 10.0) == pytest.approx(0.0)
    assert scale.exponent(2, 3.0, 8, 48.0) == pytest.approx(2.0)
    runs = [{"order": ["A", "B"], "seconds": {"A": 1.0, "B": 2.0}, "peak_mb": {"A": 10, "B": 20},
             "total_s": 3.0, "overall_peak_mb": 20},
            {"order": ["A", "B"], "seconds": {"A": 10.0, "B": 4.0}, "peak_mb": {"A": 30, "B": 40},
             "total_s": 14.0, "overall_peak_mb": 40}]
    text = scale.table([100_000, 1_000_000], runs)
    assert "| A | 1.00 | 10 | 10.00 | 30 | 1.00 |" in text
    assert f"| B | 2.00 | 20 | 4.00 | 40 | {math.log10(2):.2f} |" in text
    assert f"| **whole run** | 3.00 | 20 | 14.00 | 40 | {math.log10(14 / 3):.2f} |" in text


def test_process_tree_memory_includes_children():
    scale = _module()
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; x = bytearray(200 * 2**20); time.sleep(30)"])
    try:
        for _ in range(100):
            if scale.tree_rss_mb(os.getpid()) > scale.tree_rss_mb(child.pid) > 150:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert scale.tree_rss_mb(child.pid) > 150
        assert scale.tree_rss_mb(os.getpid()) >= scale.tree_rss_mb(child.pid)
    finally:
        child.kill()
        child.wait()


@pytest.mark.e2e
def test_scale_benchmark_runs_the_dag_and_prints_its_table(tmp_path):
    # On a declared Parquet log (a shop's: its own columns, ISO times, a product table), so
    # that this one run also shows such a log blessed, pushed and served with its titles
    # (five epochs: at one, the ranking model is not yet within its RMSE bound).
    result = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "3000", "--epochs", "5", "--layout",
         "interactions", "--format", "parquet", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = dict(re.findall(r"^\| (\S+) \| ([\d.]+) \| [\d,]+ \|", result.stdout, flags=re.M))
    assert len(rows) == 19, result.stdout  # every component of the DAG, whole run apart
    for component in ("InteractionsExampleGen", "Transform", "RetrievalTrainer",
                      "RetrievalEvaluator"):
        assert float(rows[component]) > 0, result.stdout
    # Memory is read when each component starts and ends, however short it is.
    peaks = re.findall(r"^\| \w+ \| [\d.]+ \| ([\d,]+) \|$", result.stdout, flags=re.M)
    assert len(peaks) == 19 and all(int(p.replace(",", "")) > 300 for p in peaks), peaks
    whole = re.search(r"^\| \*\*whole run\*\* \| ([\d.]+) \| ([\d,]+) \|", result.stdout,
                      flags=re.M)
    assert whole and float(whole.group(1)) > sum(float(v) for v in rows.values()) * 0.5
    assert int(whole.group(2).replace(",", "")) > 300  # TensorFlow alone is more than that
    data = tmp_path / "data-3000"
    assert sorted(p.name for p in data.iterdir()) == [
        "customers.parquet", "interactions.parquet", "products.parquet", "recsys.toml"]
    assert "(interactions layout, parquet)" in result.stdout
    recsys = os.path.join(os.path.dirname(sys.executable), "recsys")
    served = subprocess.run([recsys, "recommend", "--config", str(tmp_path / "bench-scale.toml"),
                             "--output-dir", str(tmp_path / "run-3000"), "--user-id", "C3",
                             "--k", "5"], capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stdout + served.stderr
    listed = re.findall(r"^\s+\d+\s+(P\d{5})\s.*Synthetic Product (\d+) \(\d{4}\)$",
                        served.stdout, flags=re.M)
    assert len(listed) == 5 and all(p == f"P{int(n):05d}" for p, n in listed), served.stdout
