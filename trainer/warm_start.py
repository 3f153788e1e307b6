"""Warm start: a Trainer begins from its branch's last blessed model, not from random weights.

A scheduled run retrains on a window that mostly overlaps the last one, so starting from the
served model and training a few epochs (``warm_epochs``) reaches its quality in a fraction of
the time. The vocabularies move between windows, though: users and items arrive and leave,
so row i of an embedding is not the same user in two Transform outputs. Embedding rows are
therefore mapped by vocabulary *value*: a value in both vocabularies keeps its row, a new one
keeps its fresh initialization, a vanished one is dropped; out-of-vocabulary rows map onto
each other. Every other weight (dense layers, cross layers, the time buckets) is copied as
it is.

Each Trainer saves its weights beside its serving export (``WarmStart/`` in the model
artifact, never pushed), with the vocabularies they were indexed by and an architecture
description. A base model whose description differs (another embedding size, other layers,
another ensemble size), or that is missing or unreadable, gives a cold start; the reason is
recorded in the export's metadata and shown in the run summary. The model's id embeddings
are tagged with their vocabulary (``models.id_embedding``), so nothing here guesses which
axis is which.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from recsys_pipeline import progress
from recsys_pipeline.transform import features as F

WARM_START_DIR = "WarmStart"
WEIGHTS_FILE = "weights.npz"
DESCRIPTION_FILE = "warm_start.json"
VOCABULARY_DIR = "vocabularies"


@dataclasses.dataclass(frozen=True)
class VocabularyRows:
    """How one vocabulary's embedding rows were carried over."""

    kept: int  # values in both vocabularies: their rows copied from the base model
    new: int  # values only in the new vocabulary: freshly initialized rows
    dropped: int  # values only in the base vocabulary: their rows left behind


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What a Trainer started from (recorded in the export's metadata)."""

    warm: bool
    base_model: str = ""  # the base model's serving directory, "" when none was given
    reason: str = ""  # why the start was cold
    epochs: int = 0
    rows: dict[str, VocabularyRows] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        """One line for the run summary."""
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        if not self.warm:
            return f"cold start ({self.reason}), {epochs}"
        users = self.rows.get(F.USER_ID)
        counts = ""
        if users:
            counts = f" (users: {users.kept} kept, {users.new} new, {users.dropped} dropped)"
        return f"warm start from {self.base_model}{counts}, {epochs}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmStart:
        rows = {k: VocabularyRows(**v) for k, v in data.get("rows", {}).items()}
        return cls(**{**data, "rows": rows})


def weights_dir(serving_model_dir: str) -> str:
    """Where a Trainer's warm-start weights lie: beside its serving export."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), WARM_START_DIR)


def vocabulary_tags(model: tf.keras.Model) -> list[Optional[str]]:
    """Per weight of ``model`` (in ``model.weights`` order), the vocabulary its rows index."""
    tags = {}
    for module in model.submodules:
        vocabulary = getattr(module, "vocabulary", None)
        if isinstance(vocabulary, str) and isinstance(module, tf.keras.layers.Embedding):
            tags[module.embeddings.ref()] = vocabulary
    return [tags.get(w.ref()) for w in model.weights]


def describe(members: Sequence[tf.keras.Model], kind: str) -> dict[str, Any]:
    """The architecture a base model must match: every weight's vocabulary and shape (the
    rows axis left out where a vocabulary indexes it)."""
    return {"kind": kind, "members": [
        [{"vocabulary": tag, "shape": list(w.shape[1:] if tag else w.shape)}
         for w, tag in zip(m.weights, vocabulary_tags(m), strict=True)] for m in members]}


def _read_vocabulary(path: str) -> list[bytes]:
    with tf.io.gfile.GFile(path, "rb") as f:
        lines = f.read().split(b"\n")
    return lines[:-1] if lines and not lines[-1] else lines


def save(members: Sequence[tf.keras.Model], kind: str, vocabulary_file: Callable[[str], str],
         directory: str) -> None:
    """Writes the trained members' weights, their vocabularies and architecture."""
    tf.io.gfile.makedirs(os.path.join(directory, VOCABULARY_DIR))
    arrays = {f"m{i}_w{j}": w.numpy() for i, m in enumerate(members)
              for j, w in enumerate(m.weights)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(os.path.join(directory, WEIGHTS_FILE), "wb") as f:
        f.write(buffer.getvalue())
    used = {t for m in members for t in vocabulary_tags(m) if t}
    for name in sorted(used):
        tf.io.gfile.copy(vocabulary_file(name), os.path.join(directory, VOCABULARY_DIR, name),
                         overwrite=True)
    with tf.io.gfile.GFile(os.path.join(directory, DESCRIPTION_FILE), "w") as f:
        f.write(json.dumps(describe(members, kind), indent=1, sort_keys=True))


def row_map(base: list[bytes], new: list[bytes], base_rows: int,
            new_rows: int) -> tuple[np.ndarray, np.ndarray, VocabularyRows]:
    """(new row indices, base row indices) to copy, and the counts: rows of values in both
    vocabularies, and the out-of-vocabulary rows after each vocabulary, pairwise."""
    position = {value: i for i, value in enumerate(base)}
    pairs = [(i, position[v]) for i, v in enumerate(new) if v in position]
    oov = min(new_rows - len(new), base_rows - len(base))
    pairs += [(len(new) + k, len(base) + k) for k in range(max(oov, 0))]
    kept = sum(1 for v in new if v in position)
    counts = VocabularyRows(kept=kept, new=len(new) - kept, dropped=len(base) - kept)
    table = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1], counts


class _Cold(Exception):
    """Why a base model cannot seed this one (caught in ``restore``: a cold start)."""


def _load(directory: str) -> tuple[dict[str, Any], Any]:
    description_path = os.path.join(directory, DESCRIPTION_FILE)
    if not tf.io.gfile.exists(description_path):
        raise _Cold(f"the base model has no warm-start weights: {description_path} is missing")
    try:
        with tf.io.gfile.GFile(description_path) as f:
            description = json.loads(f.read())
        with tf.io.gfile.GFile(os.path.join(directory, WEIGHTS_FILE), "rb") as f:
            weights = np.load(io.BytesIO(f.read()))
            weights = {k: weights[k] for k in weights.files}
    except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
        raise _Cold(f"the base model's warm-start files in {directory} are unreadable "
                    f"({type(e).__name__}: {e})") from e
    return description, weights


def _assign(members: Sequence[tf.keras.Model], kind: str, vocabulary_file: Callable[[str], str],
            directory: str) -> dict[str, VocabularyRows]:
    description, weights = _load(directory)
    wanted = describe(members, kind)
    if description.get("kind") != kind:
        raise _Cold(f"the base model is a {description.get('kind')!r} model, not {kind!r}")
    if len(description["members"]) != len(wanted["members"]):
        raise _Cold(f"the base model has {len(description['members'])} members, this one "
                    f"{len(wanted['members'])}")
    for i, (have, want) in enumerate(zip(description["members"], wanted["members"],
                                         strict=True)):
        if have != want:
            raise _Cold(f"the architecture differs (member {i}: {_first_difference(have, want)})")
    vocabularies: dict[str, tuple[list[bytes], list[bytes]]] = {}
    rows: dict[str, VocabularyRows] = {}
    values: list[tuple[tf.Variable, np.ndarray]] = []
    for i, member in enumerate(members):
        for j, (w, tag) in enumerate(zip(member.weights, vocabulary_tags(member), strict=True)):
            base = weights.get(f"m{i}_w{j}")
            if base is None:
                raise _Cold(f"the base model's weights lack member {i} weight {j}")
            if not tag:
                values.append((w, base))
                continue
            if tag not in vocabularies:
                base_path = os.path.join(directory, VOCABULARY_DIR, tag)
                if not tf.io.gfile.exists(base_path):
                    raise _Cold(f"the base model's vocabulary {base_path} is missing")
                vocabularies[tag] = (_read_vocabulary(base_path),
                                     _read_vocabulary(vocabulary_file(tag)))
            to, frm, counts = row_map(*vocabularies[tag], base.shape[0], int(w.shape[0]))
            rows[tag] = counts
            merged = w.numpy()
            merged[to] = base[frm]
            values.append((w, merged))
    for w, value in values:  # only once everything matched: never half a warm start
        w.assign(value)
    return rows


def _first_difference(have: list, want: list) -> str:
    if len(have) != len(want):
        return f"{len(have)} weights in the base model, {len(want)} here"
    for j, (a, b) in enumerate(zip(have, want, strict=True)):
        if a != b:
            return (f"weight {j} is {a['vocabulary'] or 'dense'} {a['shape']} in the base "
                    f"model, {b['vocabulary'] or 'dense'} {b['shape']} here")
    return "none found"


def restore(members: Sequence[tf.keras.Model], kind: str, vocabulary_file: Callable[[str], str],
            base_model: Optional[str], *, warm_epochs: int, cold_epochs: int) -> WarmStart:
    """Seeds built ``members`` from ``base_model`` (a serving directory, or None); returns
    what happened. A base that does not fit leaves the members as initialized (cold)."""
    if not base_model:
        return WarmStart(warm=False, reason="no base model: the branch has no blessed model "
                         "yet, or the data has no span folders", epochs=cold_epochs)
    try:
        rows = _assign(members, kind, vocabulary_file, weights_dir(base_model))
    except _Cold as e:
        result = WarmStart(warm=False, base_model=base_model, reason=str(e), epochs=cold_epochs)
        progress.step(f"{kind}: {result.describe()}", warm_start=False, reason=str(e))
        return result
    result = WarmStart(warm=True, base_model=base_model, epochs=warm_epochs, rows=rows)
    progress.step(f"{kind}: {result.describe()}", warm_start=True)
    return result
