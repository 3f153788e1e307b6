"""AnomalyGate: real TFDV anomalies against the curated schema stop the run, by name."""

import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from recsys_pipeline.components.anomaly_gate import AnomalyGate, describe_anomalies
from recsys_pipeline.components.interactions_example_gen import to_example
from recsys_pipeline.errors import ValidationError
from recsys_pipeline.pipeline.pipeline import schema_path
from recsys_pipeline.transform import features as F


def _example(gender=b"M", rating=4.0, user_features=True):
    demographics = {F.user_feature("gender"): [gender], F.user_feature("age"): [b"30"],
                    F.user_feature("occupation"): [b"writer"]} if user_features else {}
    return to_example({F.USER_ID: [b"1"], F.ITEM_ID: [b"2"], F.ITEM_TITLE: [b"T"],
                       F.ITEM_GENRES: [b"Drama"], F.TIMESTAMP: [880000000],
                       F.USER_RATING: [rating], **demographics})


def _anomalies(tmp_path, records):
    path = str(tmp_path / "data.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    stats = tfdv.generate_statistics_from_tfrecord(path)
    schema = tfdv.load_schema_text(schema_path("ml-100k"))
    return tfdv.validate_statistics(stats, schema)


def _gate_artifact(tmp_path, by_split):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / "anomalies")
    artifact.split_names = artifact_utils.encode_split_names(list(by_split))
    for split, anomalies in by_split.items():
        os.makedirs(os.path.join(artifact.uri, f"Split-{split}"))
        with open(os.path.join(artifact.uri, f"Split-{split}", "SchemaDiff.pb"), "wb") as f:
            f.write(anomalies.SerializeToString())
    return artifact


def _run_gate(artifact):
    executor = AnomalyGate.EXECUTOR_SPEC.executor_class()
    executor.Do({"anomalies": [artifact]}, {}, {})


def test_clean_data_passes_the_gate(tmp_path):
    anomalies = _anomalies(tmp_path, [_example(), _example(b"F", 1.0)])
    assert describe_anomalies({"train": anomalies}) == []
    _run_gate(_gate_artifact(tmp_path, {"train": anomalies, "eval": anomalies}))


def test_anomalies_stop_the_run_naming_feature_and_problem(tmp_path):
    bad = _anomalies(tmp_path, [_example(), _example(gender=b"X", rating=7.0)])
    lines = describe_anomalies({"eval": bad})
    assert any("eval: feature 'user_feature_gender'" in line and "X" in line
               for line in lines), lines
    assert any("feature 'user_rating'" in line for line in lines), lines
    clean = anomalies_pb2.Anomalies()
    with pytest.raises(ValidationError, match=r"eval: feature 'user_feature_gender'"):
        _run_gate(_gate_artifact(tmp_path, {"train": clean, "eval": bad}))


def test_a_movielens_user_missing_from_the_user_file_stops_the_run(tmp_path):
    # ExampleGen keeps the user's ratings without demographics; MovieLens' schema requires them.
    lines = describe_anomalies({"train": _anomalies(tmp_path, [_example(), _example(
        user_features=False)])})
    for column in ("age", "gender", "occupation"):
        assert any(f"train: feature 'user_feature_{column}'" in line for line in lines), lines
