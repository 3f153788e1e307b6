"""File registries and pointers: how steps on open-source Kubeflow Pipelines find what a TFX
Resolver would have found in ML Metadata.

That backend cannot run Resolvers, so the components that a Resolver would feed record what
they produce in a registry directory (local or ``gs://``), one small JSON object per record
(a single object write: atomic on GCS and locally), and readers take the newest record whose
files still exist. The Evaluators record blessings (read by BlessedModelLookup) and the
SpanWindow records windows (read by the next window). BlessedModelLookup hands its answer on
as a *pointer*, a ``baseline.json`` in its output artifact, which the Evaluators and Trainers
follow to the model it names. The same registries let a rerun with unchanged inputs keep an
earlier execution's outputs (``same_inputs``) instead of re-evaluating, re-tuning or
rebuilding. Not a component: helpers those components share.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

POINTER_FILE = "baseline.json"


def record(registry: str, fields: dict) -> str:
    """Writes one record holding ``fields`` (plus the time); returns its path."""
    fileio.makedirs(registry)
    name = f"{time.time_ns():020d}.json"
    path = os.path.join(registry, name)
    tmp = os.path.join(registry, f".{name}.tmp")
    with fileio.open(tmp, "w") as f:
        f.write(json.dumps({**fields, "recorded_at": time.time()}))
    fileio.rename(tmp, path, overwrite=True)
    return path


def _names(registry: str) -> list[str]:
    if not registry or not fileio.exists(registry):
        return []
    return sorted(n.rstrip("/") for n in fileio.listdir(registry)
                  if n.endswith(".json") and not n.startswith("."))


def _read(registry: str, name: str) -> dict:
    with fileio.open(os.path.join(registry, name)) as f:
        return json.loads(f.read())


def newest(registry: str, usable: Callable[[dict], bool]) -> Optional[dict]:
    """The newest record that is ``usable`` (its files exist), or None."""
    for name in reversed(_names(registry)):
        found = _read(registry, name)
        if usable(found):
            return found
    return None


def latest_blessed(registry: str) -> Optional[dict]:
    """The newest blessing record (it names its ``model_uri``), or None when nothing has been
    blessed yet. A blessed model whose files were deleted cannot be a baseline: the one before
    it is taken."""
    return newest(registry, lambda r: fileio.exists(r["model_uri"]))


def same_inputs(registry: str, inputs: dict) -> Optional[dict]:
    """The newest record of an execution with exactly these ``inputs`` whose outputs (its
    ``outputs``, name -> uri) still exist: what a rerun can keep instead of redoing."""
    return newest(registry, lambda r: r.get("inputs") == inputs and all(
        fileio.exists(uri) for uri in (r.get("outputs") or {}).values()))


def copy_tree(source: str, destination: str) -> None:
    """Copies the folder ``source`` into ``destination`` (either local or ``gs://``)."""
    for directory, _, files in fileio.walk(source):
        relative = os.path.relpath(directory, source)
        target = os.path.normpath(os.path.join(destination, relative))
        fileio.makedirs(target)
        for name in files:
            fileio.copy(os.path.join(directory, name), os.path.join(target, name),
                        overwrite=True)


def records(registry: str) -> list[dict]:
    """Every record, oldest first."""
    return [_read(registry, name) for name in _names(registry)]


def write_pointer(uri: str, model_uri: Optional[str], registry: str) -> None:
    """A pointer to ``model_uri`` (None: no model yet) in the artifact directory ``uri``."""
    fileio.makedirs(uri)
    with fileio.open(os.path.join(uri, POINTER_FILE), "w") as f:
        f.write(json.dumps({"model_uri": model_uri, "registry": registry}))


def follow_pointers(baselines: list) -> list:
    """Baseline artifacts with pointers replaced by the models they name (a pointer to no
    model is left out, as an empty Resolver output would be)."""
    resolved = []
    for artifact in baselines:
        pointer = os.path.join(artifact.uri, POINTER_FILE)
        if not fileio.exists(pointer):
            resolved.append(artifact)
            continue
        with fileio.open(pointer) as f:
            target = json.loads(f.read()).get("model_uri")
        if target:
            model = standard_artifacts.Model()
            model.uri = target
            # The pointer's id stands for the model: Kubeflow's entrypoint maps ids back to
            # the artifact names it was given, and knows only the pointer's.
            model.id = artifact.id
            resolved.append(model)
    return resolved
