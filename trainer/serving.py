"""The TF Serving model base directory: layout, models.config, warm-up requests, and serving.

Layout (what TF Serving's file-system source watches)::

    <serving_dir>/models.config          every served model (ScaNN-capable TF Serving image)
    <serving_dir>/models.stock.config    the models stock TF Serving can load (no ScaNN ops)
    <serving_dir>/<model>/<version>/     SavedModel; version = integer, newest is served
        assets.extra/tf_serving_warmup_requests   PredictionLog TFRecords, replayed at load
        assets.extra/recsys_push.json             what was pushed, from where, when

Only all-digit directory names are versions to TF Serving; the Pusher writes a version under
a dot-prefixed staging name and renames it into place, so a half-written version is never
visible. ``Recommender`` is ``recsys recommend``: ScaNN retrieval, then ranking.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional

SCANN_MODEL = "retrieval"
BRUTE_FORCE_MODEL = "retrieval_brute_force"
RANKING_MODEL = "ranking"
MODEL_NAMES = (SCANN_MODEL, BRUTE_FORCE_MODEL, RANKING_MODEL)
# Pushed only when enabled in the config ([sequential]).
SEQUENTIAL_MODEL = "sequential"
OPTIONAL_MODEL_NAMES = (SEQUENTIAL_MODEL,)
# Models that need ScaNN's custom ops (ScaNN's TF Serving image).
SCANN_MODELS = (SCANN_MODEL,)

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


def models_config_text(serving_dir: str, names: list[str]) -> str:
    """A TF Serving ``--model_config_file`` (text proto) serving ``names`` from this base."""
    entries = "".join(
        "  config {\n"
        f"    name: \"{name}\"\n"
        f"    base_path: \"{os.path.join(os.path.abspath(serving_dir), name)}\"\n"
        "    model_platform: \"tensorflow\"\n"
        "  }\n" for name in names)
    return "model_config_list {\n" + entries + "}\n"


def write_models_configs(serving_dir: str) -> None:
    """Rewrites both models.config files from the models that have a version on disk."""
    served = [n for n in sorted(os.listdir(serving_dir))
              if not n.startswith(".") and versions(os.path.join(serving_dir, n))]
    stock = [n for n in served if n not in SCANN_MODELS]
    for filename, names in ((MODELS_CONFIG, served), (STOCK_MODELS_CONFIG, stock)):
        _atomic_write(os.path.join(serving_dir, filename), models_config_text(serving_dir, names))


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def warmup_logs(model_name: str, inputs: dict[str, list]) -> list:
    """PredictionLogs replaying one serving_default request per input row."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    rows = len(next(iter(inputs.values())))
    logs = []
    for i in range(rows):
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
        for key, values in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(
                [values[i]], dtype=tf.int64 if isinstance(values[i], int) else tf.string))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup(version_dir: str, model_name: str, inputs: dict[str, list]) -> str:
    """Writes ``assets.extra/tf_serving_warmup_requests``; returns its path."""
    import tensorflow as tf

    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(model_name, inputs):
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
    """A warm-up PredictionLog's request as signature keyword arguments."""
    import tensorflow as tf

    return {k: tf.make_ndarray(v) for k, v in log.predict_log.request.inputs.items()}


# --- Serving from Python (recsys recommend) ---------------------------------------------------

@dataclasses.dataclass
class Recommendation:
    movie_id: str
    title: str
    retrieval_score: Optional[float]
    predicted_rating: Optional[float]


@dataclasses.dataclass
class Recommendations:
    user_id: str
    known_user: bool
    items: list[Recommendation]
    versions: dict[str, str]  # model name -> version directory used


class Recommender:
    """Newest pushed ScaNN retrieval + ranking versions, loaded as TF Serving would."""

    def __init__(self, serving_dir: str):
        from recsys_pipeline.errors import OutputError

        self.version_dirs = {}
        for name in (SCANN_MODEL, RANKING_MODEL):
            path = latest_version_dir(serving_dir, name)
            if path is None:
                raise OutputError(
                    f"no pushed version of model '{name}' under {serving_dir}. Run "
                    "`recsys run` until the model is blessed and pushed, or pass the "
                    "--output-dir of a run that pushed it.")
            problem = version_problem(path)
            if problem:
                raise OutputError(
                    f"{path} is not a version this pipeline pushed: {problem}. TF Serving "
                    "serves the highest version number, so it would serve this directory too: "
                    "move it out of the model directory (or `recsys rollback` to a good one).")
            self.version_dirs[name] = path
        import scann  # noqa: F401  (registers ScaNN's ops; the retrieval model needs them)
        import tensorflow as tf

        from recsys_pipeline.trainer import export

        self._tf = tf
        self.metadata = export.read_metadata(self.version_dirs[SCANN_MODEL])
        self._retrieval = tf.saved_model.load(self.version_dirs[SCANN_MODEL])
        self._ranking = tf.saved_model.load(self.version_dirs[RANKING_MODEL])

    def recommend(self, user_id: str, k: int = 10,
                  timestamp: Optional[int] = None) -> Recommendations:
        """Top-k for a user: ScaNN candidates re-ranked by predicted rating.

        Unknown users get the most-rated movies of the training data instead (the retrieval
        model would only return what its out-of-vocabulary embedding scores highest).
        """
        tf = self._tf
        serving_k = int(self.metadata["serving_k"])
        if k > serving_k:
            from recsys_pipeline.errors import ConfigError

            raise ConfigError(f"--k {k} is above the {serving_k} candidates the retrieval "
                              "model returns (index.k)")
        when = timestamp if timestamp is not None else self.metadata["latest_train_timestamp"]
        retrieved = self._retrieval.signatures["serving_default"](
            user_id=tf.constant([user_id]), timestamp=tf.constant([when], tf.int64))
        known = bool(retrieved["known_user"].numpy()[0])
        if known:
            found = [(m.decode(), t.decode("utf-8", "replace"), float(s)) for m, t, s in zip(
                retrieved["movie_ids"].numpy()[0], retrieved["movie_titles"].numpy()[0],
                retrieved["scores"].numpy()[0], strict=True)
                if math.isfinite(s)]  # -inf marks places the search left unfilled
        else:
            found = [(p["movie_id"], p["title"], None)
                     for p in self.metadata["popular"][:serving_k]]
        ratings = []
        if found:
            served = self._ranking.signatures["serving_default"](
                user_id=tf.constant([user_id] * len(found)),
                movie_id=tf.constant([f[0] for f in found]))
            ratings = served["rating"].numpy().reshape(-1).tolist()
        items = [Recommendation(*f, float(r)) for f, r in zip(found, ratings, strict=True)]
        if known:
            items.sort(key=lambda r: -r.predicted_rating)
        return Recommendations(user_id, known, items[:k], dict(self.version_dirs))
