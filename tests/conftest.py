"""Shared fixtures: tiny MovieLens datasets written by the tests, in all three layouts, Beam
pipelines on the product's runner, and a temp directory per test session."""

import os
import pathlib
import shutil

import pytest

import recsys_pipeline  # noqa: F401  (selects Keras 2 before any test imports TensorFlow)
from recsys_pipeline.rundir import run_temp_dir
from tests.shared_fixtures import data, excluding, retrieval, stages, tiny  # noqa: F401  (by name)

ML100K_GENRE = "unknown|0\nAction|1\nComedy|2\n"

# The files whose tests take longest (CI's --durations), longest first. `make test` hands
# whole files to its two workers in collection order (--no-loadscope-reorder), so these go
# first and the many short files fill in around them: otherwise the longest one, starting
# late, is the run's tail.
LONGEST_FIRST = ("kubeflow/test_launcher.py", "e2e/test_faults.py", "e2e/test_local_pipeline.py",
                 "e2e/test_span_window.py", "e2e/test_gates.py", "e2e/test_declared_log.py",
                 "bench/test_scale.py", "bench/test_quality.py", "trainer/test_distribute.py",
                 "bench/test_replay.py", "bench/test_rerun.py",
                 "kubeflow/test_launcher_vertex.py", "bench/test_serving.py",
                 "e2e/test_spans.py")


def pytest_collection_modifyitems(config, items):
    """Longest files first (``LONGEST_FIRST``), every file's own order kept."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item):
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return rank.get(path, len(rank))

    items.sort(key=key)


@pytest.fixture(scope="session", autouse=True)
def _session_temp_dir(tmp_path_factory):
    """The temp directory a ``recsys run`` gets, for the whole session (each xdist worker).

    The tests' own Beam pipelines and TFDV calls leave staging directories and statistics
    files in the temp directory, as a run's components do; they go with the session's.
    """
    tmp_path_factory.getbasetemp()  # pytest's own base stays where it was (kept for failures)
    with run_temp_dir():
        yield


def beam_pipeline():
    """A Beam pipeline on the runner the product's components use (``[beam]`` defaults)."""
    import apache_beam as beam

    from recsys_pipeline.pipeline.config import PipelineConfig

    return beam.Pipeline(argv=PipelineConfig().beam.pipeline_args)


def write(path: pathlib.Path, text: str, encoding: str = "utf-8") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def make_ml100k(root: pathlib.Path, ratings: str | None = None) -> pathlib.Path:
    """Three items (one latin-1 title), three users; u.genre names three genres."""
    d = root / "ml-100k"
    write(d / "u.genre", ML100K_GENRE)
    write(d / "u.item",
          "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
          "2|Café au lait (1993)|01-Jan-1993||http://x|0|1|1\n"
          "3|Heat (1995)|01-Jan-1995||http://x|0|1|0\n", encoding="latin-1")
    write(d / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    write(d / "u.data", ratings if ratings is not None else
          "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t3\t4\t878542960\n3\t1\t1\t875071561\n")
    return d


def make_ml1m(root: pathlib.Path) -> pathlib.Path:
    d = root / "ml-1m"
    write(d / "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                            "2::Jumanji (1995)::Adventure\n"
                            "3::Amélie (2001)::Comedy|Romance\n", encoding="latin-1")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    write(d / "ratings.dat", "1::1::5::978300760\n1::3::3::978302109\n2::2::4::978301968\n")
    return d


def make_csv(root: pathlib.Path, items: str | None = None) -> pathlib.Path:
    d = root / "ml-latest-small"
    write(d / "movies.csv", items if items is not None else
          "movieId,title,genres\n"
          "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
          "2,\"Dark Knight, The (2008)\",Action|Crime\n"
          "3,Amélie (Fabuleux destin d'Amélie Poulain) (2001),(no genres listed)\n")
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n"
                             "1,1,4.0,964982703\n1,3,0.5,964981247\n7,2,3.5,1106635946\n")
    return d


@pytest.fixture
def ml100k(tmp_path):
    return make_ml100k(tmp_path)


@pytest.fixture
def ml1m(tmp_path):
    return make_ml1m(tmp_path)


@pytest.fixture
def csv_dataset(tmp_path):
    return make_csv(tmp_path)


def write_subset(real_ml100k: pathlib.Path, directory: pathlib.Path,
                 n_ratings: int) -> pathlib.Path:
    """The first ``n_ratings`` ratings of MovieLens 100K with its item/user/genre files."""
    directory.mkdir(parents=True)
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(real_ml100k / name, directory / name)
    with open(real_ml100k / "u.data") as src, open(directory / "u.data", "w") as dst:
        for _ in range(n_ratings):
            dst.write(src.readline())
    return directory


@pytest.fixture(scope="session")
def real_ml100k() -> pathlib.Path:
    """The original MovieLens 100K from shared/ (RECSYS_DATA_DIR); fails loudly if missing."""
    path = os.environ.get("RECSYS_DATA_DIR")
    if not path or not (pathlib.Path(path) / "u.data").is_file():
        pytest.fail("end-to-end tests need MovieLens 100K: set RECSYS_DATA_DIR to the directory "
                    "holding u.data (CI uses ../shared/data/ml-100k)")
    return pathlib.Path(path)


_FRESH_SCRIPT = """
import sys, numpy as np
import scann  # ScaNN's ops must be registered before a ScaNN SavedModel loads
import tensorflow as tf
model_dir, signature, inp, out = sys.argv[1:]
loaded = tf.saved_model.load(model_dir)
args = dict(np.load(inp, allow_pickle=True))
fn = loaded.signatures[signature]
result = fn(**{k: tf.constant(v) for k, v in args.items()})
np.savez(out, **{k: v.numpy() for k, v in result.items()})
"""


_REPLAY_SCRIPT = """
import json, sys
import scann  # ScaNN's ops must be registered before a ScaNN SavedModel loads
import tensorflow as tf
from recsys_pipeline.serving import layout
version = sys.argv[1]
loaded = tf.saved_model.load(version)
answered = []
for log in layout.read_warmup(version):
    name = log.predict_log.request.model_spec.signature_name
    out = loaded.signatures[name](**{k: tf.constant(v)
                                     for k, v in layout.request_tensors(log).items()})
    answered.append([name, sorted(out)])
print(json.dumps(answered))
"""


@pytest.fixture(scope="session")
def replay_warmup():
    """Replays a pushed version's warm-up file in a new Python process, as TF Serving does
    when it loads the version; returns [signature, its output keys] per request."""
    import json
    import subprocess
    import sys

    def replay(version_dir):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run([sys.executable, "-c", _REPLAY_SCRIPT, str(version_dir)],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return replay


@pytest.fixture(scope="session")
def fresh_signature(tmp_path_factory):
    """Calls a SavedModel signature in a new Python process (as a server would load it)."""
    import subprocess
    import sys

    import numpy as np

    tmp = tmp_path_factory.mktemp("fresh")
    script = tmp / "call.py"
    script.write_text(_FRESH_SCRIPT)
    counter = iter(range(10**6))

    def call(model_dir, signature, **inputs):
        n = next(counter)
        inp, out = tmp / f"in{n}.npz", tmp / f"out{n}.npz"
        np.savez(inp, **{k: np.asarray(v) for k, v in inputs.items()})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run([sys.executable, str(script), str(model_dir), signature,
                                 str(inp), str(out)], capture_output=True, text=True, env=env,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(np.load(out, allow_pickle=True))

    return call
