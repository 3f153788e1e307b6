"""Shared Trainer plumbing: what both run_fns load before building their model."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Optional

import tensorflow as tf
import tensorflow_transform as tft

from recsys_pipeline import progress
from recsys_pipeline.errors import TrainingError
from recsys_pipeline.trainer import inputs, models, warm_start
from recsys_pipeline.trainer.export_metadata import ExportMetadata, Training
from recsys_pipeline.trainer.inputs import READ_BATCH_SIZE, Catalogue, TrainStats
from recsys_pipeline.transform import features as F


@dataclasses.dataclass
class TrainingData:
    """The Transform output and derived tables a Trainer needs."""

    tft_output: tft.TFTransformOutput
    sizes: dict[str, int]
    catalogue: Catalogue
    stats: TrainStats
    feature_spec: dict
    # The declared numeric item and user features (the models read them beside the
    # vocabulary ones, which ``sizes`` names).
    numeric: tuple[str, ...] = ()

    def dataset(self, files: list[str], batch_size: int = READ_BATCH_SIZE, *,
                shuffle: bool = False,
                seed: int = 0) -> tf.data.Dataset:
        return inputs.transformed_dataset(files, self.feature_spec, batch_size,
                                          shuffle=shuffle, seed=seed)


def load_training_data(transform_dir: str, train_files: list[str],
                       catalogue_dir: str) -> TrainingData:
    """Reads the Transform output, the catalogue and one pass of train statistics."""
    tft_output = tft.TFTransformOutput(transform_dir)
    spec = tft_output.transformed_feature_spec()
    catalogue = inputs.load_catalogue(catalogue_dir, tft_output)
    sizes = inputs.vocab_sizes(tft_output)
    stats = inputs.train_stats(inputs.transformed_dataset(train_files, spec, READ_BATCH_SIZE),
                               sizes[F.index_name(F.ITEM_ID)])
    return TrainingData(tft_output, sizes, catalogue, stats, spec,
                        inputs.numeric_features(tft_output))


def first_batch(data: TrainingData, train_files: list[str]) -> dict[str, tf.Tensor]:
    """A few training examples, to build a model's weights before training."""
    return next(iter(data.dataset(train_files, 16)))


def start_from(base_model: Optional[str], members: list[tf.keras.Model], kind: str,
               data: TrainingData, train_files: list[str], hp: Any) -> warm_start.WarmStart:
    """Builds ``members``' weights on one batch and, with ``hp.warm_start``, seeds them from
    ``base_model`` (a serving directory; see ``warm_start.py``). The result says how many
    epochs to train: ``hp.warm_epochs`` warm, ``hp.epochs`` cold."""
    batch = first_batch(data, train_files)
    for member in members:
        models.build_weights(member, batch)  # a no-op for members built already
    if not hp.warm_start:
        return warm_start.WarmStart(warm=False, reason="warm_start is off", epochs=hp.epochs)
    return warm_start.restore(members, kind, data.tft_output.vocabulary_file_by_name,
                              base_model, warm_epochs=hp.warm_epochs, cold_epochs=hp.epochs)


def save_warm_start(members: list[tf.keras.Model], kind: str, data: TrainingData,
                    serving_model_dir: str) -> None:
    """Saves the trained weights a later run's warm start reads, beside the export."""
    warm_start.save(members, kind, data.tft_output.vocabulary_file_by_name,
                    warm_start.weights_dir(serving_model_dir))


def export_metadata(kind: str, data: TrainingData, training: Optional[Training],
                    **fields: Any) -> ExportMetadata:
    """The one writer of every Trainer's ``ExportMetadata``: what all exports record about
    their training data and run, plus the kind's own ``fields``."""
    return ExportMetadata(
        kind=kind, vocab_sizes=data.sizes, train_examples=data.stats.num_examples,
        latest_train_timestamp=data.stats.latest_timestamp, **fields).with_training(training)


class EpochProgress(tf.keras.callbacks.Callback):
    """One line per epoch on the console (Keras' own bar is noise in a pipeline log).

    TFRS models report the last batch's loss; the line shows the epoch's mean batch loss.
    A non-finite batch loss stops training at once with a ``TrainingError``: a diverged model
    would otherwise train on, be exported and reach its gate with NaN scores.
    """

    def __init__(self, label: str, epochs: int):
        super().__init__()
        self._label, self._epochs = label, epochs
        self._start = 0.0
        self._epoch = 0
        self._losses: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = time.monotonic()
        self._losses = []

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                raise TrainingError(
                    f"{self._label}: the training loss became {loss} at epoch "
                    f"{self._epoch + 1}/{self._epochs}, batch {batch + 1}: the model diverged; "
                    f"lower [{self._label}] learning_rate or check the data's values")
            self._losses.append(loss)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._losses:
            logs["loss"] = sum(self._losses) / len(self._losses)
        metrics = {k: float(v) for k, v in sorted(logs.items())
                   if k in ("loss", "rmse", "val_loss", "val_rmse")}
        seconds = time.monotonic() - self._start
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        progress.step(f"{self._label} epoch {epoch + 1}/{self._epochs}: {shown} "
                      f"({seconds:.1f}s)", model=self._label, epoch=epoch + 1,
                      epochs=self._epochs, seconds=round(seconds, 3), **metrics)
