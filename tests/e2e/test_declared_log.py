"""A declared CSV log with explicit ratings, a weight column, item features of every kind and
user features, through the whole DAG as a new user runs it: ``recsys synth --layout
interactions``, then ``recsys run`` with the declaration it wrote, then ``recsys recommend``."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from recsys_pipeline.data import synthetic
from recsys_pipeline.transform import features as F

pytestmark = pytest.mark.e2e

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")


def _recsys(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    result = subprocess.run([RECSYS, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("declared")
    data = tmp / "data"
    _recsys("synth", "--ratings", "3000", "--layout", "interactions", "--format", "csv",
            "--out", str(data), "--seed", "2")
    # A weight per interaction (a quantity bought, 1 to 3), declared as the weight column.
    log = data / "interactions.csv"
    header, *rows = log.read_text().splitlines()
    log.write_text("\n".join([f"{header},quantity"] + [f"{row},{1 + i % 3}"
                                                        for i, row in enumerate(rows)]) + "\n")
    declaration = (data / synthetic.DECLARED_CONFIG).read_text()
    assert 'weight_column = ""' in declaration
    config = tmp / "run.toml"
    # Five epochs: at one, the ranking model is not yet within its RMSE bound. The index gate
    # is tested elsewhere: here it would grade 12 held-out queries (25 users), where one
    # query's misses move recall by up to 0.08 and ScaNN's partitioning is randomized (builds
    # of this run measured 0.8 to 1.0 against the automatic search's aim of 0.85), so the
    # index searches every leaf, which is exact.
    config.write_text("[retrieval]\nepochs = 5\n\n[ranking]\nepochs = 5\n\n"
                      "[index]\nnum_leaves_to_search = 1000\n\n"
                      + declaration.replace('weight_column = ""', 'weight_column = "quantity"'))
    out = tmp / "out"
    result = _recsys("run", "--config", str(config), "--data-dir", str(data), "--output-dir",
                     str(out))
    return config, out, result.stdout


def _newest(pattern: str) -> str:
    found = sorted(glob.glob(pattern), key=lambda p: int(p.rstrip("/").split("/")[-1]))
    assert found, pattern
    return found[-1]


def test_the_declared_log_is_blessed_pushed_and_served_with_titles(run):
    config, out, stdout = run
    for model in ("retrieval", "ranking", "recommender"):
        assert os.listdir(out / "serving" / model), stdout
    served = _recsys("recommend", "--config", str(config), "--output-dir", str(out),
                     "--user-id", "C5", "--k", "5", timeout=300)
    listed = re.findall(r"^\s+\d+\s+(P\d{5})\s.*Synthetic Product (\d+) \(\d{4}\)$",
                        served.stdout, flags=re.M)
    assert len(listed) == 5 and all(p == f"P{int(n):05d}" for p, n in listed), served.stdout


def test_every_declared_kind_reaches_transform_and_the_towers(run):
    _, out, _ = run
    root = out / "tfx" / "recsys-pipeline"
    imported = tfdv.load_schema_text(_newest(str(root / "ImportSchemaGen" / "schema" / "*"))
                                     + "/schema.pbtxt")
    declared = {f.name for f in imported.feature if F.is_declared(f.name)}
    assert declared == {F.item_feature(c.split(":")[0]) for c in synthetic.ITEM_FEATURES} | {
        F.user_feature(c.split(":")[0]) for c in synthetic.USER_FEATURES}
    transform = tft.TFTransformOutput(_newest(str(root / "Transform" / "transform_graph" / "*")))
    spec = transform.transformed_feature_spec()
    for name in ("category", "brand", "tags", "description"):
        assert F.index_name(F.item_feature(name)) in spec
    assert F.numeric_name(F.item_feature("price")) in spec
    assert F.index_name(F.user_feature("segment")) in spec
    # The declared weight: required and non-negative in the schema, passed through to the
    # Trainers, whose retrieval loss counts each example by it.
    weight = {f.name: f for f in imported.feature}[F.WEIGHT]
    assert weight.float_domain.min == 0.0 and weight.presence.min_fraction == 1.0
    assert F.WEIGHT in spec
    assert F.numeric_name(F.user_feature("age")) in spec
    assert set(transform.vocabulary_by_name(F.item_feature("category"))) <= {
        c.encode() for c in synthetic.CATEGORIES}
    assert b"deluxe" in transform.vocabulary_by_name(F.item_feature("description"))
    # The trained models hold an embedding per declared vocabulary feature, of items and of
    # users (the weights' vocabulary tags, which warm starts map rows by).
    for trainer in ("RetrievalTrainer", "RankingTrainer"):
        model = _newest(str(root / trainer / "model" / "*"))
        with open(os.path.join(model, "WarmStart", "warm_start.json")) as f:
            tags = {w["vocabulary"] for member in json.load(f)["members"] for w in member}
        assert {F.item_feature(n) for n in ("category", "brand", "tags", "description")} <= tags
        assert {F.user_feature(n) for n in ("segment", "region")} <= tags


def test_lineage_names_the_generated_schema_a_model_was_trained_under(run):
    config, out, _ = run
    (version,) = os.listdir(out / "serving" / "ranking")
    shown = _recsys("lineage", "--config", str(config), "--output-dir", str(out), "--model",
                    "ranking", "--version", version, timeout=300).stdout
    found = re.search(r"ImportSchemaGen \(execution \d+.*\n\s+schema_file: (\S+)", shown)
    assert found, shown
    assert re.search(r"/schemas/interactions-[0-9a-f]{16}\.pbtxt$", found.group(1))
    assert "item_feature_price" in open(found.group(1)).read()
