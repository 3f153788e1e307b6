"""Request contract: TF Serving's REST predict bodies, row and columnar, for every signature of
the retrieval (brute force and ScaNN), ranking and two-stage exports, and the docs' bodies."""

import base64
import json
import pathlib
import re

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
    """served model name -> (export dir, loaded SavedModel), the recommender built here."""
    retrieval_dir, scann_dir, ranking_dir = stages
    recommender_dir = str(tmp_path_factory.mktemp("rest") / "recommender")
    two_stage.build(retrieval_dir, ranking_dir, recommender_dir, 0.5)
    dirs = {nodes.BRUTE_FORCE_MODEL: retrieval_dir, nodes.SCANN_MODEL: scann_dir,
            nodes.RANKING_MODEL: ranking_dir, two_stage.KIND: recommender_dir}
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
                  two_stage.KIND: ("serving_default",)}
    return [(m, s) for m, names in signatures.items() for s in names]


def test_every_signature_is_covered(models):
    for name, (_, model) in models.items():
        covered = {s for m, s in _cases() if m == name}
        assert covered == set(model.signatures), name


@pytest.mark.parametrize("model_name, signature", _cases())
def test_row_and_columnar_bodies_answer_as_the_signature(models, tiny, model_name, signature):
    path, model = models[model_name]
    columns = _columns(model, signature, path, tiny)
    rows = [{n: columns[n][i] for n in columns} for i in range(len(next(iter(columns.values()))))]
    if len(columns) == 1:
        rows = [next(iter(r.values())) for r in rows]  # a lone input's instances are bare
    # Through JSON text, as a client sends them.
    row_body = json.loads(json.dumps({"signature_name": signature, "instances": rows}))
    column_body = json.loads(json.dumps({"signature_name": signature, "inputs": columns}))
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


def test_the_documented_bodies_are_accepted(models):
    bodies = re.findall(r"curl -d '(\{.*?\})' \\\n\s+localhost:8501/v1/models/(\w+):predict",
                        DOCS.read_text())
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
        rest.predict(models[two_stage.KIND][1], body)
