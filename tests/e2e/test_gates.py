"""The eval gates end to end, on a 20,000-rating subset of MovieLens 100K with few epochs,
the optional GRU4Rec branch ([sequential]) on, so that it is gated like the others.

1. A first run with modest bounds blesses and pushes every model, and writes every user's
   top 10 from the blessed recommender ([bulk] on).
2. Bounds no model can meet: nothing blessed, nothing pushed, the serving directory untouched.
3. Modest bounds again but a deliberately bad training config: the new models are worse than
   the blessed baselines beyond the tolerance, so they are not pushed.
"""

import hashlib
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout, model_config
from tests.conftest import write_subset

pytestmark = pytest.mark.e2e

RECSYS = str(pathlib.Path(sys.executable).parent / "recsys")

FAST = """
[retrieval]
epochs = 4
[ranking]
epochs = 3
ensemble = 1
"""
SEQUENTIAL = """
[sequential]
enabled = true
epochs = 4
[bulk]
enabled = true
"""
MODEST = """
[evaluation]
min_top_k_accuracy = 0.05
min_sequential_top_k_accuracy = 0.05
max_rmse = 1.5
min_ndcg = 0.02
"""
IMPOSSIBLE = """
[evaluation]
min_top_k_accuracy = 0.99
min_sequential_top_k_accuracy = 0.99
max_rmse = 0.2
"""
BAD_TRAINING = """
[retrieval]
epochs = 1
learning_rate = 0.0001
optimizer = "sgd"
[ranking]
epochs = 1
learning_rate = 0.000001
optimizer = "sgd"
[sequential]
epochs = 1
learning_rate = 0.0001
optimizer = "sgd"
"""
# The trained models, and the recommender built from them (its variants).
COMPOSED = tuple(p.model_name for p in nodes.RECOMMENDER.pushes)
MODELS = tuple(m for m in nodes.MODEL_NAMES if m not in COMPOSED) + (nodes.SEQUENTIAL_MODEL,)


def _config(tmp, name, *parts):
    sections: dict[str, list[str]] = {}
    for part in parts:
        current = None
        for line in part.strip().splitlines():
            if line.startswith("["):
                current = line
                sections.setdefault(current, [])
            else:
                sections[current].append(line)  # later parts override earlier keys
    text = ""
    for header, lines in sections.items():
        keys = {}
        for line in lines:
            keys[line.split("=")[0].strip()] = line
        text += header + "\n" + "\n".join(keys.values()) + "\n"
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _run(out, data, config):
    result = subprocess.run([RECSYS, "run", "--output-dir", str(out), "--data-dir", str(data),
                             "--config", config], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _tree_digest(root):
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(set(filenames) - {model_config.LOCK_FILE}):  # who last wrote
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _row(stdout, model):
    match = re.search(rf"^  {model}\s+\S+\s+([\d.]+)\s+[<>]= [\d.]+\s+([\d.]+|-)\s+(yes|NO)\s+"
                      r"(.*)$", stdout, flags=re.M)
    assert match, stdout
    return match.groups()


@pytest.fixture(scope="module")
def subset(real_ml100k, tmp_path_factory):
    return write_subset(real_ml100k, tmp_path_factory.mktemp("subset") / "ml-100k", 20_000)


def test_models_are_pushed_only_through_the_gates(subset, tmp_path, fresh_signature):
    out = tmp_path / "out"
    first = _run(out, subset, _config(tmp_path, "modest", FAST, SEQUENTIAL, MODEST))
    for model in MODELS + COMPOSED:
        value, baseline, blessed, pushed = _row(first, model)
        assert blessed == "yes" and baseline == "-", first
        assert pushed == layout.latest_version_dir(str(out / "serving"), model)
    # The pushed GRU4Rec model answers its warm-up request in a fresh process, and serves
    # from the train history it carries.
    pushed = layout.latest_version_dir(str(out / "serving"), nodes.SEQUENTIAL_MODEL)
    popular = layout.read_warmup(pushed)[0]  # serving_default's first: popular items
    got = fresh_signature(pushed, "serving_default", **layout.request_tensors(popular))
    assert got["item_ids"].shape == (1, 100)
    user = (subset / "u.data").read_text().split()[0].encode()
    got = fresh_signature(pushed, "recommend", user_id=np.array([user], object),
                          timestamp=np.array([10**10], np.int64))
    assert got["known_user"].tolist() == [True] and got["item_ids"].shape == (1, 100)
    digest = _tree_digest(out / "serving")
    # Every user the recommender knows, 10 items each, none of them rated in train.
    bulk = re.search(r"^  bulk recommendations: (\S+) \((\d+) rows for (\d+) users; catalogue "
                     r"coverage ([\d.]+)%\)$", first, flags=re.M)
    assert bulk, first
    import pyarrow.parquet as pq

    table = pq.read_table(bulk.group(1)).to_pylist()
    assert len(table) == int(bulk.group(2)) == 10 * int(bulk.group(3))
    assert float(bulk.group(4)) == pytest.approx(
        100 * len({r["item_id"] for r in table}) / 1682, abs=0.05)

    # 2. Bounds no model can meet.
    second = _run(out, subset, _config(tmp_path, "impossible", FAST, SEQUENTIAL, IMPOSSIBLE))
    for model in MODELS:
        value, baseline, blessed, pushed = _row(second, model)
        assert blessed == "NO", second
        assert pushed.startswith("not pushed:") and "outside its bound" in pushed, pushed
    _assert_not_built(second)
    assert "  bulk recommendations: none (the recommender was not blessed: the ScaNN index" \
        in second, second
    assert _tree_digest(out / "serving") == digest  # the served versions are untouched

    # 3. Worse models than the blessed baselines, within the absolute bounds.
    third = _run(out, subset, _config(tmp_path, "worse", FAST, SEQUENTIAL, MODEST,
                                      BAD_TRAINING))
    for model in MODELS:
        value, baseline, blessed, pushed = _row(third, model)
        assert blessed == "NO" and baseline != "-", third
        assert "beyond the tolerance" in pushed, pushed
    retrieval_value, retrieval_baseline, *_ = _row(third, nodes.SCANN_MODEL)
    assert float(retrieval_value) < float(retrieval_baseline) - 0.01
    sequential_value, sequential_baseline, *_ = _row(third, nodes.SEQUENTIAL_MODEL)
    assert float(sequential_value) < float(sequential_baseline) - 0.01
    ranking_value, ranking_baseline, *_ = _row(third, nodes.RANKING_MODEL)
    assert float(ranking_value) > float(ranking_baseline) + 0.01
    _assert_not_built(third)
    assert _tree_digest(out / "serving") == digest


def _assert_not_built(stdout):
    """The recommender is not built from stages their gates did not bless, nor pushed."""
    for model in COMPOSED:
        assert re.search(rf"^  {model}\s+\S+\s+-\s+\S+ [\d.]+\s+-\s+NO\s+not pushed: the "
                         r"ScaNN index was not blessed .*nothing to build the recommender from$",
                         stdout, flags=re.M), stdout
