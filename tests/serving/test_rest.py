"""Request contract: TF Serving's REST predict bodies, row and columnar, for every signature of
the retrieval (brute force and ScaNN), ranking and recommender (ScaNN and brute force)
exports, and the docs' bodies; the same answers from the SavedModels loaded in a fresh
process, as a server loads them."""

import base64
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import rest, two_stage
from recsys_pipeline.trainer import export

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "serving.md"


@pytest.fixture(scope="module")
def models(stages, tiny, tmp_path_factory):
    """served model name -> (export dir, loaded SavedModel), the recommenders built here."""
    retrieval_dir, scann_dir, ranking_dir = stages
    root = tmp_path_factory.mktemp("rest")
    dirs = {nodes.BRUTE_FORCE_MODEL: retrieval_dir, nodes.SCANN_MODEL: scann_dir,
            nodes.RANKING_MODEL: ranking_dir}
    for name, source in ((nodes.RECOMMENDER_MODEL, scann_dir),
                         (nodes.RECOMMENDER_BRUTE_FORCE_MODEL, retrieval_dir)):
        dirs[name] = str(root / name)
        two_stage.build(source, ranking_dir, dirs[name], 0.5)
    return {name: (path, tf.saved_model.load(path)) for name, path in dirs.items()}


def _raw_eval_examples(tiny, n=4) -> list[bytes]:
    paths = sorted(pathlib.Path(tiny.raw_eval_dir).glob("*"))
    records = tf.data.TFRecordDataset([str(p) for p in paths], compression_type="GZIP")
    return [r.numpy() for r in records.take(n)]


def _columns(model, name, path, tiny) -> dict[str, list]:
    """Plain-JSON inputs of signature ``name``: the export's warm-up inputs, or raw eval
    tf.Examples (base64) for ``evaluate``."""
    if name == "evaluate":
        return {"examples": [{"b64": base64.b64encode(e).decode()}
                             for e in _raw_eval_examples(tiny)]}
    warmup = export.read_metadata(path).warmup_inputs
    specs = model.signatures[name].structured_input_signature[1]
    return {n: warmup[n] for n in specs}


def _cases():
    signatures = {nodes.BRUTE_FORCE_MODEL: ("serving_default", "query_embedding", "evaluate"),
                  nodes.SCANN_MODEL: ("serving_default", "query_embedding"),
                  nodes.RANKING_MODEL: ("serving_default", "evaluate"),
                  nodes.RECOMMENDER_MODEL: ("serving_default",),
                  nodes.RECOMMENDER_BRUTE_FORCE_MODEL: ("serving_default",)}
    return [(m, s) for m, names in signatures.items() for s in names]


def test_every_signature_is_covered(models):
    for name, (_, model) in models.items():
        covered = {s for m, s in _cases() if m == name}
        assert covered == set(model.signatures), name


def _bodies(models, tiny, model_name, signature) -> tuple[dict, dict]:
    """(row body, columnar body) of one signature, through JSON text as a client sends them."""
    path, model = models[model_name]
    columns = _columns(model, signature, path, tiny)
    rows = [{n: columns[n][i] for n in columns} for i in range(len(next(iter(columns.values()))))]
    if len(columns) == 1:
        rows = [next(iter(r.values())) for r in rows]  # a lone input's instances are bare
    return (json.loads(json.dumps({"signature_name": signature, "instances": rows})),
            json.loads(json.dumps({"signature_name": signature, "inputs": columns})))


@pytest.mark.parametrize("model_name, signature", _cases())
def test_row_and_columnar_bodies_answer_as_the_signature(models, tiny, model_name, signature):
    model = models[model_name][1]
    row_body, column_body = _bodies(models, tiny, model_name, signature)
    by_rows, by_columns = rest.predict(model, row_body), rest.predict(model, column_body)

    direct = model.signatures[signature](**{
        n: tf.constant(v) for n, v in rest.signature_inputs(
            column_body, model.signatures[signature].structured_input_signature[1]).items()})
    outputs = sorted(direct)
    columnar = by_columns["outputs"] if len(outputs) > 1 else {outputs[0]: by_columns["outputs"]}
    predictions = [p if len(outputs) > 1 else {outputs[0]: p} for p in by_rows["predictions"]]
    for name in outputs:
        expected = direct[name].numpy()
        if expected.dtype == np.object_:
            expected = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(
                expected)
        np.testing.assert_array_equal(np.array(columnar[name], dtype=expected.dtype), expected)
        np.testing.assert_array_equal(
            np.array([p[name] for p in predictions], dtype=expected.dtype), expected)


def _documented_bodies() -> list[tuple[str, str]]:
    return re.findall(r"curl -d '(\{.*?\})' \\\n\s+localhost:8501/v1/models/(\w+):predict",
                      DOCS.read_text())


_FRESH = """
import json, sys
import scann  # ScaNN's ops must be registered before a ScaNN SavedModel loads
import tensorflow as tf
from recsys_pipeline.serving import rest
requests = json.loads(open(sys.argv[1]).read())
loaded = {path: tf.saved_model.load(path) for path in sorted({p for p, _ in requests})}
print(json.dumps([rest.predict(loaded[path], body) for path, body in requests]))
"""


def test_a_fresh_process_answers_every_body_as_the_models_in_memory(models, tiny, tmp_path):
    # Every model's every signature in both forms, and the docs' bodies, sent to the
    # SavedModels loaded in a new Python process, as TF Serving loads them.
    requests = [(models[m][0], body) for m, s in _cases()
                for body in _bodies(models, tiny, m, s)]
    requests += [(models[m][0], json.loads(body)) for body, m in _documented_bodies()
                 if m in models]
    (tmp_path / "requests.json").write_text(json.dumps(requests))
    result = subprocess.run([sys.executable, "-c", _FRESH, str(tmp_path / "requests.json")],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    by_path = {path: model for path, model in models.values()}
    in_memory = [rest.predict(by_path[path], body) for path, body in requests]
    assert len(fresh) == len(in_memory) == len(requests)
    for request, got, expected in zip(requests, fresh, in_memory, strict=True):
        assert got == expected, request


def test_the_documented_bodies_are_accepted(models):
    bodies = _documented_bodies()
    assert len(bodies) >= 4, bodies
    checked = 0
    for body, model_name in bodies:
        if model_name not in models:
            continue  # the opt-in sequential model: tests/trainer/test_sequential.py
        answer = rest.predict(models[model_name][1], json.loads(body))
        assert answer.get("predictions") or answer.get("outputs"), (model_name, body)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("body, message", [
    ({"instances": [{"user_id": "u1"}]}, "instances\\[0\\]: must name exactly"),
    ({"inputs": {"user_id": ["u1"], "timestamp": [1], "k": [3], "x": [1]}}, "unknown \\['x'\\]"),
    ({"instances": [{"user_id": 7, "timestamp": 1, "k": 3}]},
     "instances.user_id: expected a string"),
    ({"instances": [{"user_id": "u1", "timestamp": "now", "k": 3}]},
     "instances.timestamp: expected a number"),
    ({"instances": []}, "non-empty list"),
    ({"signature_name": "rank", "instances": [{"user_id": "u1"}]}, "no signature 'rank'"),
])
def test_malformed_bodies_name_the_field(models, body, message):
    with pytest.raises(ConfigError, match=message):
        rest.predict(models[nodes.RECOMMENDER_MODEL][1], body)
