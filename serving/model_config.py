"""models.config: which versions of each model TF Serving serves, newest or by version label.

Without labels a model's entry serves its newest version, so every push takes all of its
traffic at once. With ``serving.version_labels`` on, a pushed model is served by TF Serving's
version labels instead, and its ``model_version_policy`` lists exactly the labelled versions:

* ``stable``: the version clients get (``/v1/models/<model>/labels/stable``); the first push
  of a model is stable at once, as there is nothing to compare it with;
* ``canary``: the next push, until ``recsys promote --model M`` moves ``stable`` to it. A
  client (or the mesh in front of TF Serving) sends a share of the traffic to
  ``/labels/canary``;
* ``previous``: the stable version before the last promote, kept loaded so that
  ``recsys rollback`` can move ``stable`` back to it at once.

TF Serving moves a label that is already assigned only onto a version it has loaded (a new
label may name a version still loading, with ``--allow_version_labels_for_unavailable_models``;
otherwise its reload fails and keeps failing). So every label move here targets a version in
service: promote moves ``stable`` onto the loaded canary, rollback onto the loaded previous
stable, and a push while a canary is still undecided is written to disk without a label (the
canary is not replaced under the clients' feet): promote it, or roll it back, first. A client
that names no version gets the highest loaded one, the canary: clients address a label.

The labels live in models.config itself, the file TF Serving reads and an operator may edit,
so every rewrite starts from it: a models.config that no longer parses is refused with its
line, and a label pointing at a version that is not on disk is refused by name, before
anything is written. models.stock.config carries the same entries, less the ScaNN models.

One writer at a time: on Kubeflow the Pushers are parallel pods on one volume, and a push,
promote or rollback reads models.config, edits it and writes it back. ``locked`` holds a POSIX
record lock (``fcntl.lockf``) on ``<serving_dir>/.models.config.lock`` for the whole of it.
The kernel drops the lock when its holder's process ends, however it ends, so a killed pusher
never leaves it held; NFS (v4, or v3 with lockd) and CephFS volumes carry such locks between
machines. The lock file names its holder, which a writer that waits too long reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import socket
import time
from typing import Iterator, Optional

from recsys_pipeline import files
from recsys_pipeline.errors import OutputError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import layout

LOCK_FILE = ".models.config.lock"
LOCK_TIMEOUT_S = 1800.0  # a holder may be copying a large model into place
STABLE, CANARY, PREVIOUS = "stable", "canary", "previous"
LABELS = (STABLE, CANARY, PREVIOUS)


@dataclasses.dataclass(frozen=True)
class Labels:
    """A model's labelled versions (None: that label is not assigned)."""

    stable: Optional[int] = None
    canary: Optional[int] = None
    previous: Optional[int] = None

    def items(self) -> list[tuple[str, Optional[int]]]:
        return [(STABLE, self.stable), (CANARY, self.canary), (PREVIOUS, self.previous)]

    def served(self) -> list[int]:
        return sorted({v for _, v in self.items() if v is not None})


_held: dict[str, int] = {}  # lock files this process holds, and how deep (``locked`` nests)


@contextlib.contextmanager
def locked(serving_dir: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Holds the serving base's writer lock (see the module doc); nests within a process."""
    path = os.path.join(serving_dir, LOCK_FILE)
    key = os.path.realpath(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    os.makedirs(serving_dir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise OutputError(f"{path}: cannot lock it ({e.strerror}): the serving "
                                      "base needs a file system with POSIX locks") from None
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                    raise OutputError(
                        f"{path}: another writer of models.config ({holder or 'unknown'}) "
                        f"held it for over {timeout:g} s; nothing was changed. Retry once it "
                        "is done (a holder that died has already let go)") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the lock


def _path(serving_dir: str) -> str:
    return os.path.join(serving_dir, layout.MODELS_CONFIG)


def read_labels(serving_dir: str) -> dict[str, Labels]:
    """Each labelled model's labels in ``<serving_dir>/models.config`` (none: no file), each
    checked against the versions on disk."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = _path(serving_dir)
    if not os.path.isfile(path):
        return {}
    parsed = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        text = f.read()
    try:
        text_format.Parse(text, parsed)
    except text_format.ParseError as e:
        raise OutputError(f"{path} does not parse at line {e.GetLine()}, column "
                          f"{e.GetColumn()}: {e}. Nothing was changed; fix the file (or "
                          "delete it: every push and promote rewrites it from the versions "
                          "on disk, without labels).") from None
    found = {}
    for entry in parsed.model_config_list.config:
        if not entry.version_labels:
            continue
        unknown = sorted(set(entry.version_labels) - set(LABELS))
        if unknown:
            raise OutputError(f"{path}: model {entry.name} has label(s) {', '.join(unknown)}; "
                              f"the pipeline manages only {', '.join(LABELS)}")
        labels = Labels(*(entry.version_labels.get(label) for label in LABELS))
        on_disk = layout.versions(os.path.join(serving_dir, entry.name))
        for label, version in labels.items():
            if version is not None and version not in on_disk:
                raise OutputError(
                    f"{path}: label {label} of model {entry.name} points at version "
                    f"{version}, which is not under {os.path.join(serving_dir, entry.name)} "
                    f"(versions: {', '.join(map(str, on_disk)) or 'none'}). Nothing was "
                    "changed; point the label at a version that exists.")
        found[entry.name] = labels
    return found


def config_text(serving_dir: str, names: list[str], labels: dict[str, Labels]) -> str:
    """A TF Serving ``--model_config_file`` (text proto) serving ``names`` from this base:
    a labelled model its labelled versions, any other its newest."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add(
            name=name, base_path=os.path.join(os.path.abspath(serving_dir), name),
            model_platform="tensorflow")
        if name in labels:
            entry.model_version_policy.specific.versions.extend(labels[name].served())
            for label, version in labels[name].items():
                if version is not None:
                    entry.version_labels[label] = version
    return text_format.MessageToString(config)


def write(serving_dir: str, changes: Optional[dict[str, Optional[Labels]]] = None) -> None:
    """Rewrites models.config and models.stock.config from the models on disk, keeping the
    labels models.config holds except for ``changes`` (a model -> its new labels, or None to
    serve its newest version)."""
    labels = read_labels(serving_dir)
    for name, new in (changes or {}).items():
        if new is None:
            labels.pop(name, None)
        else:
            labels[name] = new
    served = [n for n in sorted(os.listdir(serving_dir))
              if not n.startswith(".") and layout.versions(os.path.join(serving_dir, n))]
    stock = [n for n in served if n not in nodes.SCANN_MODELS]
    for filename, names in ((layout.MODELS_CONFIG, served),
                            (layout.STOCK_MODELS_CONFIG, stock)):
        files.atomic_write(os.path.join(serving_dir, filename),
                            config_text(serving_dir, names, labels))


def after_push(serving_dir: str, model_name: str, version: int,
               labelled: bool) -> Optional[str]:
    """models.config once ``version`` of ``model_name`` is on disk: with labels, the canary
    (stable, for a model's first labelled version); without, the newest. Returns why the
    version was left unlabelled, if it was."""
    if not labelled:
        write(serving_dir, {model_name: None})
        return None
    current = read_labels(serving_dir).get(model_name)
    if current is None or current.stable is None:
        write(serving_dir, {model_name: Labels(stable=version)})
        return None
    if current.canary is not None:
        write(serving_dir)
        return (f"on disk but not labelled: version {current.canary} is still the canary "
                f"(recsys promote --model {model_name}, or recsys rollback, decides it first)")
    write(serving_dir, {model_name: dataclasses.replace(current, canary=version)})
    return None


def served_version_dir(serving_dir: str, model_name: str) -> Optional[str]:
    """The version directory of the traffic's default: the stable label's with labels (the
    label clients address), else the newest."""
    labels = read_labels(serving_dir).get(model_name)
    if labels is not None and labels.stable is not None:
        return os.path.join(serving_dir, model_name, str(labels.stable))
    return layout.latest_version_dir(serving_dir, model_name)


def promote(serving_dir: str, model_name: str) -> Labels:
    """Moves ``stable`` to the canary, and the old stable to ``previous``; the new labels."""
    known = nodes.MODEL_NAMES + nodes.OPTIONAL_MODEL_NAMES
    if model_name not in known:
        raise OutputError(f"unknown model {model_name!r}; the pushed models are "
                          f"{', '.join(known)}")
    with locked(serving_dir):
        labels = read_labels(serving_dir).get(model_name)
        if labels is None:
            raise OutputError(f"{model_name} is not served by label in "
                              f"{_path(serving_dir)}: nothing to promote (turn "
                              "serving.version_labels on, and push)")
        if labels.canary is None:
            raise OutputError(f"{model_name} has no canary to promote: stable is version "
                              f"{labels.stable}, and no push since has been labelled canary")
        promoted = Labels(stable=labels.canary, previous=labels.stable)
        write(serving_dir, {model_name: promoted})
    return promoted


def roll_back(serving_dir: str, model_name: str, labels: Labels, version: int) -> Labels:
    """``stable`` back to ``version``, which must be the loaded ``previous`` (TF Serving moves
    a label only onto a loaded version); the canary is dropped."""
    if version != labels.previous:
        raise OutputError(
            f"{model_name} is served by label, and version {version} is not in service: TF "
            "Serving moves the stable label only onto a loaded version, and the one kept "
            "loaded for a rollback is "
            + (f"the previous stable, version {labels.previous}" if labels.previous else
               "none yet (no promote has happened)")
            + ". Roll back to that, or edit models.config in two steps: add the version to "
            "model_version_policy, and move the label once TF Serving has loaded it.")
    restored = Labels(stable=version)
    write(serving_dir, {model_name: restored})
    return restored
