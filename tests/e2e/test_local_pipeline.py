"""End to end on MovieLens 100K: `recsys run` through ExampleGen .. Transform, cache, failures.

Runs the installed console script in a subprocess, exactly as `make run` does.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from recsys_pipeline.data import splits

pytestmark = pytest.mark.e2e

RECSYS = str(pathlib.Path(sys.executable).parent / "recsys")
COMPONENTS = ["ImportSchemaGen", "MovieLensExampleGen", "StatisticsGen", "ExampleValidator",
              "AnomalyGate", "Transform"]


def _recsys(*args, data_dir=None):
    env = dict(os.environ)
    if data_dir is not None:
        env["RECSYS_DATA_DIR"] = str(data_dir)
    return subprocess.run([RECSYS, *args], capture_output=True, text=True, env=env,
                          timeout=1200)


def _statuses(stdout):
    return dict(re.findall(r"^  (\w+)\s+(ran|cached|failed|not run)\s", stdout, flags=re.M))


@pytest.fixture(scope="module")
def first_run(real_ml100k, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "outputs"
    result = _recsys("run", "--output-dir", str(out), data_dir=real_ml100k)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_first_run_executes_every_component_and_prints_outputs(first_run, real_ml100k):
    out, result = first_run
    assert _statuses(result.stdout) == {c: "ran" for c in COMPONENTS}
    for label in ("transformed examples", "vocabularies"):
        match = re.search(rf"^  {label}:\s+(\S+)$", result.stdout, flags=re.M)
        assert match and os.path.isdir(match.group(1)), result.stdout
    for name in ["[1/6]", "[6/6] Transform"]:
        assert name in result.stdout  # progress per component


def test_vocabularies_match_the_training_split(first_run, real_ml100k):
    out, result = first_run
    assets = re.search(r"^  vocabularies:\s+(\S+)$", result.stdout, flags=re.M).group(1)
    train_users, train_movies = set(), set()
    with open(real_ml100k / "u.data") as f:
        for line in f:
            user, movie, _, ts = line.split("\t")
            if splits.random_split(user, movie, int(ts), 42, 0.2) == splits.TRAIN:
                train_users.add(user)
                train_movies.add(movie)

    def vocab(name):
        with open(os.path.join(assets, name), "rb") as f:
            return {line.rstrip(b"\n").decode() for line in f}

    assert vocab("user_id") == train_users  # Transform analyzes the train split only
    assert vocab("movie_id") == train_movies
    assert vocab("user_gender") == {"M", "F"}
    assert len(vocab("movie_genres")) == 19


def test_second_run_is_fully_cached(first_run, real_ml100k):
    out, _ = first_run
    result = _recsys("run", "--output-dir", str(out), data_dir=real_ml100k)
    assert result.returncode == 0, result.stderr
    assert _statuses(result.stdout) == {c: "cached" for c in COMPONENTS}
    assert "0 ran, 6 cached" in result.stdout


def _subset(real_ml100k, tmp_path, n_ratings=3000):
    d = tmp_path / "ml-100k"
    d.mkdir()
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(real_ml100k / name, d / name)
    with open(real_ml100k / "u.data") as src, open(d / "u.data", "w") as dst:
        for _ in range(n_ratings):
            dst.write(src.readline())
    return d


def test_corrupt_ratings_line_fails_with_file_and_line(real_ml100k, tmp_path):
    d = _subset(real_ml100k, tmp_path)
    lines = (d / "u.data").read_text().splitlines(keepends=True)
    lines[499] = "196\t242\t3\n"  # truncated: no timestamp
    (d / "u.data").write_text("".join(lines))
    result = _recsys("run", "--output-dir", str(tmp_path / "out"), "--data-dir", str(d))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {d / 'u.data'} line 500: expected 4" in result.stderr
    assert "Transform" not in _statuses(result.stdout)


def test_schema_anomaly_stops_the_run_before_transform(real_ml100k, tmp_path):
    d = _subset(real_ml100k, tmp_path)
    users = (d / "u.user").read_text().splitlines(keepends=True)
    users[0] = "1|150|M|technician|85711\n"  # parses, but outside the schema's age domain
    (d / "u.user").write_text("".join(users))
    out = tmp_path / "out"
    result = _recsys("run", "--output-dir", str(out), "--data-dir", str(d))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data validation found anomalies" in result.stderr
    assert "feature 'user_age'" in result.stderr
    assert not (out / "tfx" / "recsys-pipeline" / "Transform").exists()
