"""ServingPusher: ships a blessed SavedModel to the TF Serving model base, atomically.

For ``<serving_dir>/<model_name>/``, a push:
  1. does nothing unless the blessing says blessed (the reason is recorded on the output);
  2. does nothing if the newest version already holds this very model (a cached rerun), or if
     ``recsys rollback`` withdrew this model from service (``<model>/rollbacks.jsonl``);
  3. copies the SavedModel to a dot-prefixed staging directory next to the versions, adds the
     warm-up requests and a push record, fsyncs, and renames it to the next integer version:
     TF Serving only loads all-digit directories, so it never sees a partial version, and a
     crash leaves at most a staging directory, removed by the next push;
  4. rewrites ``models.config`` / ``models.stock.config`` (atomically) from what is on disk,
     holding the serving base's writer lock from step 2 on (``model_config.locked``: parallel
     Pushers on one volume take turns, and none loses another's label):
     the new version is served as the newest, or with ``version_labels`` labelled canary
     (stable, for a model's first; ``serving/model_config.py``), and TF Serving's batching and
     monitoring files (``serving/server_settings.py``).

Output ``pushed_model`` custom properties: ``pushed`` (0/1), ``pushed_version``,
``pushed_destination`` and ``reason``, read by the run summary.
"""

import dataclasses
import json
import os
import shutil
import time
from typing import Optional

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout, model_config, server_settings
from recsys_pipeline.serving.server_settings import ServerSettings
from recsys_pipeline.trainer import export

STAGING_PREFIX = ".staging-"


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What a push did: the version it published and where, or why it published none."""

    version: Optional[int] = None
    destination: Optional[str] = None
    reason: Optional[str] = None  # why nothing was published, or why it serves no traffic

    @property
    def pushed(self) -> bool:
        return self.version is not None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(dirpath)


def _next_version(model_dir: str) -> int:
    # Seconds since the epoch, like TFX's Pusher, but always above every existing version.
    existing = layout.versions(model_dir)
    return max([int(time.time())] + [v + 1 for v in existing])


def remove_stale_staging(model_dir: str) -> None:
    """Removes staging directories left by a push that did not finish."""
    if os.path.isdir(model_dir):
        for name in os.listdir(model_dir):
            if name.startswith(STAGING_PREFIX):
                shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)


def copy_tree(source: str, destination: str) -> None:
    """Copies a model directory; the source may be on object storage (gs://), read with
    tf.io.gfile -- as on Kubeflow, where artifacts live under a gs:// pipeline root."""
    if "://" not in source:
        shutil.copytree(source, destination)
        return
    import tensorflow as tf

    for dirpath, _, filenames in tf.io.gfile.walk(source):
        relative = dirpath[len(source):].lstrip("/")
        os.makedirs(os.path.join(destination, relative), exist_ok=True)
        for name in filenames:
            tf.io.gfile.copy(os.path.join(dirpath, name),
                             os.path.join(destination, relative, name), overwrite=True)


def push(model_dir: str, serving_dir: str, model_name: str,
         record: dict, labelled: bool = False,
         settings: Optional[ServerSettings] = None) -> PushResult:
    """Pushes the SavedModel at ``model_dir`` (see the module doc); ``labelled``: serve it by
    version label; ``settings``: TF Serving's batching and monitoring files to write."""
    with model_config.locked(serving_dir):
        model_config.read_labels(serving_dir)  # refuse a broken models.config before any copy
        target = os.path.join(serving_dir, model_name)
        newest = layout.latest_version_dir(serving_dir, model_name)
        if newest is not None:
            try:
                previous = layout.read_push_record(newest)
            except (OSError, ValueError):
                previous = {}
            if previous.get(nodes.SOURCE_MODEL_PROPERTY) == record.get(nodes.SOURCE_MODEL_PROPERTY):
                return PushResult(reason=f"unchanged: {newest} already serves this model")
        source = str(record.get(nodes.SOURCE_MODEL_PROPERTY))
        withdrawn = layout.withdrawn_models(target).get(source)
        if withdrawn and "rollback" not in record:
            return PushResult(reason=f"withdrawn by recsys rollback (version "
                                     f"{withdrawn['from_version']} -> {withdrawn['to_version']}): "
                                     "not pushed again")
        os.makedirs(target, exist_ok=True)
        remove_stale_staging(target)
        version = _next_version(target)
        staging = os.path.join(target, f"{STAGING_PREFIX}{version}-{os.getpid()}")
        copy_tree(model_dir, staging)
        metadata = export.read_metadata(staging)
        layout.write_warmup(staging, model_name, metadata.warmup_inputs)
        record = dict(record, version=version, model_name=model_name, pushed_at=time.time())
        with open(os.path.join(staging, "assets.extra", layout.PUSH_RECORD), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        _fsync_tree(staging)
        final = os.path.join(target, str(version))
        os.rename(staging, final)
        _fsync_dir(target)  # make the rename itself durable
        unlabelled = model_config.after_push(serving_dir, model_name, version, labelled)
        if settings is not None:
            server_settings.write(serving_dir, settings)
        return PushResult(version, final, unlabelled)


@component
def ServingPusher(
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    pushed_model: OutputArtifact[standard_artifacts.PushedModel],
    serving_dir: Parameter[str],
    model_name: Parameter[str],
    source_fingerprint: Parameter[str] = "",
    version_labels: Parameter[int] = 0,
    server_settings_json: Parameter[str] = "",
):
    """Pushes ``model`` to ``<serving_dir>/<model_name>/<version>`` if it is blessed
    (``source_fingerprint``, the hash of this code, only keys TFX's cache); ``version_labels``
    1: served by label, canary first; ``server_settings_json``: ``ServerSettings`` to write."""
    blessed = model_blessing.get_int_custom_property(nodes.BLESSED_PROPERTY) == 1
    if not blessed:
        reason = (model_blessing.get_string_custom_property(nodes.REASON_PROPERTY)
                  or f"not blessed by {model_blessing.producer_component or 'the evaluator'}")
        _record(pushed_model, PushResult(reason=reason))
        return
    source = path_utils.serving_model_path(model.uri)
    # A ScaNN index artifact names the trained model it indexes: rebuilding the index of the
    # same model (a rerun) is not a new model to serve.
    trained = model.get_string_custom_property(nodes.SOURCE_MODEL_PROPERTY) or model.uri
    _record(pushed_model, push(source, serving_dir, model_name, {
        nodes.SOURCE_MODEL_PROPERTY: trained, "artifact": model.uri, "artifact_id": model.id,
        "blessing": model_blessing.uri, "blessing_id": model_blessing.id},
        labelled=bool(version_labels),
        settings=ServerSettings.from_json(server_settings_json) if server_settings_json else None))


def _record(pushed_model, result: PushResult) -> None:
    pushed_model.set_int_custom_property(nodes.PUSHED_PROPERTY, int(result.pushed))
    if result.reason:
        pushed_model.set_string_custom_property(nodes.REASON_PROPERTY, result.reason)
    if result.version is not None:
        pushed_model.set_int_custom_property("pushed_version", result.version)
        pushed_model.set_string_custom_property(nodes.PUSHED_DESTINATION_PROPERTY,
                                                result.destination or "")
