"""ServingPusher's push: TF Serving layout, warm-up file, models.config, atomicity."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from recsys_pipeline.components import serving_pusher
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout
from recsys_pipeline.trainer import export
from recsys_pipeline.trainer.export_metadata import ExportMetadata


class _Echo(tf.Module):
    """A stand-in SavedModel: serving_default(user_id, timestamp) -> its inputs, scaled."""

    def __init__(self, scale):
        super().__init__()
        self.scale = tf.Variable(float(scale))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="timestamp")])
    def serve(self, user_id, timestamp):
        return {"n": tf.strings.length(user_id), "t": tf.cast(timestamp, tf.float32) * self.scale}

    def signatures(self):
        return {"serving_default": self.serve}


def _model(tmp_path, name, scale=1.0):
    path = tmp_path / name
    export.save(_Echo(scale), str(path), ExportMetadata(
        kind="test", warmup_inputs={"user_id": ["7", "42"], "timestamp": [5, 6]}))
    return str(path)


def test_push_writes_a_numbered_version_with_warmup_and_config(tmp_path, fresh_signature):
    source = _model(tmp_path, "m1")
    base = tmp_path / "serving"
    result = serving_pusher.push(source, str(base), "ranking", {"source_model": "a"})
    version, path = result.version, result.destination
    assert path == str(base / "ranking" / str(version)) and os.path.isdir(path)
    assert layout.versions(str(base / "ranking")) == [version]
    assert sorted(os.listdir(base / "ranking")) == [str(version)]  # no staging left behind
    record = layout.read_push_record(path)
    assert record["source_model"] == "a" and record["version"] == version

    logs = layout.read_warmup(path)
    assert len(logs) == 2
    request = logs[1].predict_log.request
    assert request.model_spec.name == "ranking"
    assert request.model_spec.signature_name == "serving_default"
    args = layout.request_tensors(logs[1])
    assert args["user_id"].tolist() == [b"42"] and args["timestamp"].tolist() == [6]
    # TF Serving replays each warm-up request against the loaded version: so do we.
    out = fresh_signature(path, "serving_default", **args)
    assert out["n"].tolist() == [2] and out["t"].tolist() == [6.0]

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / layout.MODELS_CONFIG).read_text(), config)
    assert [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config] \
        == [("ranking", str(base / "ranking"), "tensorflow")]


def test_same_model_is_not_pushed_twice_and_a_new_one_gets_a_higher_version(tmp_path):
    base = str(tmp_path / "serving")
    v1 = serving_pusher.push(_model(tmp_path, "m1"), base, "retrieval",
                             {"source_model": "a"}).version
    again = serving_pusher.push(_model(tmp_path, "m1b"), base, "retrieval",
                                {"source_model": "a"})
    assert again.version is None and not again.pushed and again.reason.startswith("unchanged")
    v2 = serving_pusher.push(_model(tmp_path, "m2", 2.0), base, "retrieval",
                             {"source_model": "b"}).version
    assert v2 > v1 and layout.versions(os.path.join(base, "retrieval")) == [v1, v2]
    assert layout.latest_version_dir(base, "retrieval").endswith(str(v2))


def test_stock_config_leaves_out_the_scann_model(tmp_path):
    base = str(tmp_path / "serving")
    for name in nodes.MODEL_NAMES:
        serving_pusher.push(_model(tmp_path, name), base, name, {"source_model": name})
    def names(filename):
        config = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(open(os.path.join(base, filename)).read(), config)
        return [c.name for c in config.model_config_list.config]
    assert names(layout.MODELS_CONFIG) == sorted(nodes.MODEL_NAMES)
    assert names(layout.STOCK_MODELS_CONFIG) == sorted(
        set(nodes.MODEL_NAMES) - set(nodes.SCANN_MODELS))


_KILLED_PUSH = """
import os, signal, sys
from recsys_pipeline.components import serving_pusher
def die(src, dst):  # the process dies after writing the version, before renaming it
    os.kill(os.getpid(), signal.SIGKILL)
serving_pusher.os.rename = die
serving_pusher.push(sys.argv[1], sys.argv[2], "retrieval", {"source_model": "new"})
"""


def test_a_pusher_killed_before_the_rename_leaves_nothing_tf_serving_would_load(tmp_path):
    base = tmp_path / "serving"
    pushed = serving_pusher.push(_model(tmp_path, "old"), str(base), "retrieval",
                                 {"source_model": "old"})
    old, old_path = pushed.version, pushed.destination
    config_before = (base / layout.MODELS_CONFIG).read_text()
    result = subprocess.run([sys.executable, "-c", _KILLED_PUSH, _model(tmp_path, "new", 3.0),
                             str(base)], capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    entries = os.listdir(base / "retrieval")
    staged = [e for e in entries if e.startswith(serving_pusher.STAGING_PREFIX)]
    assert staged, entries  # the new version was fully written, under a staging name...
    assert layout.versions(str(base / "retrieval")) == [old]  # ...that TF Serving ignores
    assert all(not e.isdigit() for e in staged)
    assert (base / layout.MODELS_CONFIG).read_text() == config_before
    assert layout.read_push_record(old_path)["source_model"] == "old"

    new = serving_pusher.push(_model(tmp_path, "new2", 3.0), str(base), "retrieval",
                              {"source_model": "new"}).version
    assert layout.versions(str(base / "retrieval")) == [old, new]
    assert not [e for e in os.listdir(base / "retrieval")
                if e.startswith(serving_pusher.STAGING_PREFIX)]  # cleaned up


def test_versions_ignore_non_numeric_directories(tmp_path):
    for name in ("3", "12", ".staging-13-1", "notes", "7x"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    assert layout.versions(str(tmp_path)) == [3, 12]
    assert layout.versions(str(tmp_path / "missing")) == []
    assert np.array_equal(layout.versions(str(tmp_path)), [3, 12])


class _TwoSignatures(_Echo):
    """``_Echo`` plus ``length(user_id)`` and an ``evaluate(examples)`` no warm-up feeds."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def length(self, user_id):
        return {"n": tf.strings.length(user_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate(self, examples):
        return {"n": tf.strings.length(examples)}

    def signatures(self):
        return {"serving_default": self.serve, "length": self.length, "evaluate": self.evaluate}


def test_warmup_covers_every_signature_its_inputs_can_feed(tmp_path, replay_warmup):
    source = tmp_path / "m"
    export.save(_TwoSignatures(1.0), str(source), ExportMetadata(
        kind="test", warmup_inputs={"user_id": ["7", "42"], "timestamp": [5, 6]}))
    assert layout.signature_inputs(str(source)) == {
        "serving_default": ("timestamp", "user_id"), "length": ("user_id",),
        "evaluate": ("examples",)}
    result = serving_pusher.push(str(source), str(tmp_path / "serving"), "ranking",
                                 {"source_model": "a"})
    logs = layout.read_warmup(result.destination)
    assert [(log.predict_log.request.model_spec.signature_name,
             sorted(log.predict_log.request.inputs)) for log in logs] == [
        ("serving_default", ["timestamp", "user_id"])] * 2 + [("length", ["user_id"])] * 2
    assert [name for name, _ in replay_warmup(result.destination)] == [
        "serving_default", "serving_default", "length", "length"]


@pytest.mark.parametrize("inputs", [{"user_id": ["1"], "item_id": ["2"]}])
def test_warmup_logs_carry_typed_tensors(inputs):
    (log,) = layout.warmup_logs("ranking", inputs)
    assert {k: v.dtype for k, v in log.predict_log.request.inputs.items()} == {
        "user_id": tf.string.as_datatype_enum, "item_id": tf.string.as_datatype_enum}


def test_copy_tree_reads_models_from_object_storage(tmp_path):
    # TensorFlow's in-memory filesystem stands in for gs://: the same tf.io.gfile code path.
    source = "ram://pusher-test/model"
    tf.io.gfile.makedirs(f"{source}/variables")
    for name, data in (("saved_model.pb", b"graph"), ("variables/variables.index", b"idx")):
        with tf.io.gfile.GFile(f"{source}/{name}", "wb") as f:
            f.write(data)
    serving_pusher.copy_tree(source, str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "saved_model.pb").read_bytes() == b"graph"
    assert (tmp_path / "copy" / "variables" / "variables.index").read_bytes() == b"idx"
