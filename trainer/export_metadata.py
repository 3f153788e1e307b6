"""What an export records about itself, in ``assets.extra/recsys_model.json``.

One record type for every Trainer's export (and the ScaNN index built from one), so that the
Pusher, ``recsys recommend``, the indexer and the benchmarks read fields, not string keys.
TF-free: the file is plain JSON, and readers that never load the model need no TensorFlow.
Fields a kind does not have stay None and are left out of the file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from recsys_pipeline.errors import OutputError
from recsys_pipeline.pipeline.nodes import NAMES
from recsys_pipeline.trainer.hparams import to_custom_config

METADATA_FILE = "recsys_model.json"


@dataclasses.dataclass(frozen=True)
class Training:
    """How a model was trained: wall time, last epoch's loss, hyperparameters."""

    train_seconds: float
    final_loss: float
    hparams: dict[str, Any]

    @classmethod
    def of(cls, seconds: float, history, hp) -> Training:
        """From a Keras History and the hyperparameter dataclass that produced it."""
        return cls(round(seconds, 2), float(history.history["loss"][-1]), to_custom_config(hp))


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """An export's record of itself (see the module doc)."""

    kind: str  # the branch's name, or SCANN_KIND for the ScaNN index built on retrieval
    warmup_inputs: dict[str, list]  # serving_default inputs replayed by TF Serving at load
    vocab_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    train_examples: Optional[int] = None
    latest_train_timestamp: Optional[int] = None
    serving_k: Optional[int] = None
    eval_k: Optional[int] = None
    catalogue_size: Optional[int] = None
    popular: Optional[list[dict[str, Any]]] = None  # the fallback for unknown users
    exclude_rated: Optional[dict[str, int]] = None  # max_per_user, pairs
    rated_pairs: Optional[int] = None  # (user, item) pairs of the exported rated items
    seen_pairs: Optional[int] = None  # a recommender's: (user, item) pairs it never serves
    mean_rating: Optional[float] = None
    context_length: Optional[int] = None
    candidates: Optional[int] = None
    history_ratings: Optional[int] = None
    index: Optional[dict[str, Any]] = None  # serving.index_params.IndexReport, as a dict
    train_seconds: Optional[float] = None
    final_loss: Optional[float] = None
    hparams: Optional[dict[str, Any]] = None
    trainer_eval_rmse: Optional[float] = None
    warm_start: Optional[dict[str, Any]] = None  # warm_start.WarmStart, as a dict
    retrieval_kind: Optional[str] = None  # a recommender's: the kind of its retrieval stage
    names: str = NAMES  # the naming generation of its signatures and features

    def with_training(self, training: Optional[Training]) -> ExportMetadata:
        return self if training is None else dataclasses.replace(
            self, **dataclasses.asdict(training))

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v is not None},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "an export") -> ExportMetadata:
        """Reads the record; an OutputError for an export of another naming generation (one
        written with movie names, ``movie_ids`` and ``movie_id_index``, has none), which this
        code would misread."""
        fields = json.loads(text)
        if fields.get("names") != NAMES:
            found = fields.get("names", "movie names: movie_id, movie_ids")
            raise OutputError(
                f"{where} was written by an older recsys-pipeline ({found})"
                f" and cannot be read by this one ({NAMES}: user_id, item_id, item_ids). Run with "
                "a fresh --output-dir (and serving.base_dir), or retrain into this one after "
                "moving its tfx/, metadata.sqlite and serving/ aside.")
        return cls(**fields)
