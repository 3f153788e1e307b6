"""Smoke test of bench/training.py on the tiny Transform output (made in-test)."""

import pathlib
import re
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "training.py"


def test_training_benchmark_prints_its_table(tiny):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--transform-dir", tiny.transform_dir,
         "--train", tiny.train_files[0], "--eval", tiny.eval_files[0],
         "--catalogue", tiny.catalogue_dir, "--epochs", "2"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    number = r"([\d,]+) \| "
    rows = re.findall(r"^\| (retrieval|ranking) \| 1024 \| 2 \| " + number * 5 + r"([\d.]+) \|$",
                      result.stdout, flags=re.M)
    assert [r[0] for r in rows] == ["retrieval", "ranking"], result.stdout
    for _, examples, *rates, cpu in rows:
        assert int(examples.replace(",", "")) == len(tiny.raw_train_rows)
        assert all(int(rate.replace(",", "")) > 0 for rate in rates)
        assert float(cpu) > 0
    # The Trainers' own epoch lines are part of the output: it ran the real train().
    assert "retrieval epoch 2/2" in result.stdout and "ranking epoch 2/2" in result.stdout
