"""``recsys rollback``: serve an earlier pushed version again.

A model served by version labels (``serving.version_labels``) rolls back by moving its
``stable`` label back to the previous stable, which stays loaded for this (and dropping any
canary): nothing is copied (``serving/model_config.py``).
Otherwise TF Serving serves a model's highest version number, so a rollback re-publishes the
chosen version's files under a new, higher number -- with the pusher's own staging-and-rename,
so TF Serving never sees a partial version -- rather than deleting the bad one (which stays on
disk for inspection), and records it in the new version's push record (``rollback``). Either
way it goes in ``<serving>/<model>/rollbacks.jsonl``, which the pushers read: a model withdrawn
by a rollback is not pushed again by a later run that blesses the same model.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

from recsys_pipeline.errors import OutputError

if TYPE_CHECKING:
    from recsys_pipeline.components.serving_pusher import PushResult
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout


def _check_names(version_dir: str, what: str) -> None:
    """Refuses to serve again a version whose signatures have other names than the served
    ones (a version pushed with movie names returns ``movie_ids``): its clients would break."""
    from recsys_pipeline.trainer.export_metadata import METADATA_FILE, ExportMetadata

    path = os.path.join(version_dir, "assets.extra", METADATA_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            ExportMetadata.from_json(f.read(), where=f"{what} ({version_dir})")


def rollback(serving_dir: str, model_name: str, to_version: int) -> PushResult:
    """Serves ``to_version`` of ``model_name`` again: its stable label moved there, or it
    published as a new newest version (see the module doc); returns what serves it."""
    from recsys_pipeline.components.serving_pusher import PushResult, push
    from recsys_pipeline.serving import model_config

    known = nodes.MODEL_NAMES + nodes.OPTIONAL_MODEL_NAMES
    if model_name not in known:
        raise OutputError(f"unknown model {model_name!r}; the pushed models are "
                          f"{', '.join(known)}")
    model_dir = os.path.join(serving_dir, model_name)
    available = layout.versions(model_dir)
    if to_version not in available:
        listing = ", ".join(map(str, available)) or "none"
        raise OutputError(f"{model_name} has no version {to_version} under {model_dir} "
                          f"(versions: {listing})")
    with model_config.locked(serving_dir):
        labels = model_config.read_labels(serving_dir).get(model_name)
        serving = labels.stable if labels is not None and labels.stable is not None else \
            available[-1]
        if to_version == serving:
            which = "stable label's" if labels is not None else "newest"
            raise OutputError(f"{model_name} version {to_version} is already the {which}: it is "
                              "the one being served")
        source = os.path.join(model_dir, str(to_version))
        _check_names(source, f"{model_name} version {to_version}")
        try:
            record = layout.read_push_record(source)
            current = layout.read_push_record(os.path.join(model_dir, str(serving)))
        except (OSError, ValueError) as e:
            raise OutputError(f"cannot read the push records of {model_name} ({e}): not a version "
                              "this pipeline pushed") from None
        if record.get(nodes.SOURCE_MODEL_PROPERTY) == current.get(nodes.SOURCE_MODEL_PROPERTY):
            raise OutputError(f"{model_name} version {serving} already serves the model of version "
                              f"{to_version}")
        entry = {"at": time.time(), "model_name": model_name, "from_version": serving,
                 "to_version": to_version,
                 "withdrawn_source_model": current.get(nodes.SOURCE_MODEL_PROPERTY),
                 "restored_source_model": record.get(nodes.SOURCE_MODEL_PROPERTY)}
        if labels is not None:
            model_config.roll_back(serving_dir, model_name, labels, to_version)
            result = PushResult(to_version, source)
            entry["stable_label"] = to_version
        else:
            result = push(source, serving_dir, model_name, {**record, "rollback": entry})
            if result.version is None:
                raise OutputError(f"rollback of {model_name} to {to_version} was not published: "
                                  f"{result.reason}")
            entry["new_version"] = result.version
        with open(os.path.join(model_dir, layout.ROLLBACK_LOG), "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return result
