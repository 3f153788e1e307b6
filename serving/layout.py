"""The TF Serving model base directory: layout, models.config, warm-up requests, push records.

Layout (what TF Serving's file-system source watches)::

    <serving_dir>/models.config          every served model (ScaNN-capable TF Serving image)
    <serving_dir>/models.stock.config    the models stock TF Serving can load (no ScaNN ops)
                                         (both written by ``model_config``: newest or labels)
    <serving_dir>/<model>/<version>/     SavedModel; version = integer, newest is served
        assets.extra/tf_serving_warmup_requests   PredictionLog TFRecords, replayed at load
        assets.extra/recsys_push.json             what was pushed, from where, when

Only all-digit directory names are versions to TF Serving; the Pusher writes a version under
a dot-prefixed staging name and renames it into place, so a half-written version is never
visible. ``serving.recommend`` reads this layout for ``recsys recommend``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

MODELS_CONFIG = "models.config"
STOCK_MODELS_CONFIG = "models.stock.config"
WARMUP_FILE = "tf_serving_warmup_requests"
PUSH_RECORD = "recsys_push.json"
ROLLBACK_LOG = "rollbacks.jsonl"  # per model: what `recsys rollback` took out of service


def versions(model_dir: str) -> list[int]:
    """Versions TF Serving would see under a model's base path, oldest first."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir)
                  if n.isdigit() and os.path.isdir(os.path.join(model_dir, n)))


def latest_version_dir(serving_dir: str, model_name: str) -> Optional[str]:
    """The directory TF Serving serves for ``model_name`` (its newest version), if any."""
    found = versions(os.path.join(serving_dir, model_name))
    return os.path.join(serving_dir, model_name, str(found[-1])) if found else None


def read_push_record(version_dir: str) -> dict[str, Any]:
    with open(os.path.join(version_dir, "assets.extra", PUSH_RECORD)) as f:
        return json.load(f)


def withdrawn_models(model_dir: str) -> dict[str, dict[str, Any]]:
    """{source model: rollback entry} of the models rollbacks took out of service."""
    path = os.path.join(model_dir, ROLLBACK_LOG)
    if not os.path.exists(path):
        return {}
    withdrawn = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                withdrawn[entry["withdrawn_source_model"]] = entry
    return withdrawn


def version_problem(version_dir: str) -> Optional[str]:
    """Why ``version_dir`` is not a complete version this pipeline pushed, or None."""
    if not os.path.isfile(os.path.join(version_dir, "saved_model.pb")):
        return "it has no saved_model.pb"
    try:
        read_push_record(version_dir)
    except (OSError, ValueError) as e:
        return f"its push record assets.extra/{PUSH_RECORD} is missing or unreadable ({e})"
    return None


def signature_inputs(model_dir: str) -> dict[str, tuple[str, ...]]:
    """Each serving signature of the SavedModel at ``model_dir`` and its input names, read
    from ``saved_model.pb`` alone (nothing is loaded, so no custom op is needed)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    return {name: tuple(sorted(signature.inputs))
            for name, signature in saved.meta_graphs[0].signature_def.items()
            if not name.startswith("__")}  # TF's own init op signature


def warmup_logs(model_name: str, inputs: dict[str, list],
                signatures: Optional[dict[str, tuple[str, ...]]] = None) -> list:
    """PredictionLogs replaying one request per input row to every signature whose inputs
    ``inputs`` holds (``signatures``: name -> input names; default: serving_default takes them
    all), serving_default first. A signature fed what no warm-up input holds (``evaluate``'s
    serialized tf.Examples, for TFMA) gets none."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    signatures = signatures or {"serving_default": tuple(inputs)}
    order = sorted(signatures, key=lambda name: (name != "serving_default", name))
    rows = len(next(iter(inputs.values())))
    logs = []
    for name in order:
        if not set(signatures[name]) <= set(inputs):
            continue
        for i in range(rows):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
            for key in signatures[name]:
                values = inputs[key]
                request.inputs[key].CopyFrom(tf.make_tensor_proto(
                    [values[i]], dtype=tf.int64 if isinstance(values[i], int) else tf.string))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup(version_dir: str, model_name: str, inputs: dict[str, list]) -> str:
    """Writes ``assets.extra/tf_serving_warmup_requests`` for every signature the warm-up
    inputs can feed (``warmup_logs``); returns its path."""
    import tensorflow as tf

    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(model_name, inputs, signature_inputs(version_dir)):
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: str) -> list:
    """The PredictionLogs of a version's warm-up file (as TF Serving reads them)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, "assets.extra", WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]


def request_tensors(log) -> dict:
    """A warm-up PredictionLog's request as keyword arguments of its signature
    (``log.predict_log.request.model_spec.signature_name``)."""
    import tensorflow as tf

    return {k: tf.make_ndarray(v) for k, v in log.predict_log.request.inputs.items()}
