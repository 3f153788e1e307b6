"""Ranking Trainer: ``run_fn`` (the TFX adapter) over ``train_and_export`` (plain paths).

custom_config: ``hparams`` (``RankingHParams`` as a dict). The catalogue (item features at
request time) comes from the Trainer's ``catalogue`` input (``fn_args.catalogue_uri``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import tensorflow as tf

from recsys_pipeline import progress
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.trainer import distribute, export, models
from recsys_pipeline.trainer.common import (
    EpochProgress,
    TrainingData,
    export_metadata,
    first_batch,
    load_training_data,
    save_warm_start,
    start_from,
)
from recsys_pipeline.trainer.export_metadata import ExportMetadata, Training
from recsys_pipeline.trainer.hparams import RankingHParams, from_custom_config
from recsys_pipeline.trainer.warm_start import WarmStart
from recsys_pipeline.transform import features as F

MODEL_KIND = nodes.RANKING.name


def train(data: TrainingData, hp: RankingHParams, train_files: list[str],
          eval_files: list[str], callbacks: Sequence[tf.keras.callbacks.Callback] = (), *,
          members: Optional[list[models.RankingModel]] = None, epochs: Optional[int] = None):
    """Fits ``hp.ensemble`` rating models (eval RMSE per epoch) one after another, with seeds
    ``hp.seed``, ``hp.seed + 1``, ...; returns (model, Keras history of the last one, seconds).
    ``members``: models already built (``build_members``, e.g. warm-started), trained
    ``epochs`` each.

    With more than one, the model is their ``RankingEnsemble``: separately trained members
    differ in initialization *and* batch order, which is what makes their mean better than
    each (eight members trained jointly on the same batches: RMSE 0.909, separately 0.900, on
    ML-100K split seed 0).
    """
    members = members or build_members(data, hp, train_files)
    epochs = epochs or hp.epochs
    started = time.monotonic()
    for i, model in enumerate(members):
        if hp.ensemble > 1:
            progress.step(f"ranking member {i + 1}/{hp.ensemble}", member=i + 1,
                          members=hp.ensemble)
        # Across replicas Keras sums each one's RMSE: the exact one is computed after.
        history = model.fit(
            distribute.shard(data.dataset(train_files, hp.batch_size, shuffle=True,
                                          seed=hp.seed + i)),
            validation_data=None if distribute.task() else data.dataset(eval_files),
            epochs=epochs, verbose=0,
            callbacks=[EpochProgress(MODEL_KIND, epochs), *callbacks])
    model = members[0] if len(members) == 1 else models.RankingEnsemble(members)
    return model, history, time.monotonic() - started


def build_members(data: TrainingData, hp: RankingHParams,
                  train_files: list[str]) -> list[models.RankingModel]:
    """The ensemble's untrained members, built, member i initialized with seed
    ``hp.seed + i``."""
    batch = first_batch(data, train_files)
    members = []
    for i in range(hp.ensemble):
        member = models.build_ranking(data.sizes, dataclasses.replace(hp, seed=hp.seed + i),
                                      mean_rating=data.stats.mean_rating, numeric=data.numeric)
        models.build_weights(member, batch)  # now, while this member's seed holds
        members.append(member)
    return members


def eval_rmse(model: tf.keras.Model, data: TrainingData, eval_files: list[str]) -> float:
    """RMSE of a model's (or ensemble's) predictions on the eval split."""
    squared, n = 0.0, 0
    for batch in data.dataset(eval_files):
        error = model(batch) - batch[F.LABEL]
        squared += float(tf.reduce_sum(error * error))
        n += int(tf.size(error))
    return (squared / max(n, 1)) ** 0.5


def export_model(model: models.RankingModel, data: TrainingData, path: str,
                 training: Optional[Training] = None,
                 trainer_eval_rmse: Optional[float] = None,
                 start: Optional[WarmStart] = None) -> ExportMetadata:
    """Saves the export of a trained rating model; returns its metadata."""
    module = export.RankingExport(
        model, export.ServingFeatures(data.tft_output, data.sizes, data.catalogue, data.stats))
    users = [u.decode() for u in data.stats.users.ids[:2]]
    items = [m.decode() for m, _ in data.stats.popular(2)]
    metadata = export_metadata(
        MODEL_KIND, data, training, mean_rating=data.stats.mean_rating,
        trainer_eval_rmse=trainer_eval_rmse,
        warmup_inputs={"user_id": [u for u in users for _ in items],
                       "item_id": items * len(users)},
        warm_start=start.to_dict() if start else None)
    export.save(module, path, metadata)
    members = model.members if isinstance(model, models.RankingEnsemble) else [model]
    save_warm_start(members, MODEL_KIND, data, path)
    return metadata


def train_and_export(*, train_files: list[str], eval_files: list[str], transform_dir: str,
                     catalogue_dir: str, serving_model_dir: str,
                     hp: RankingHParams, base_model: Optional[str] = None) -> ExportMetadata:
    """Trains the rating model, from ``base_model`` when it fits (``warm_start.py``), and
    saves its export; returns its metadata."""
    data = load_training_data(transform_dir, train_files, catalogue_dir)
    with distribute.strategy().scope():  # TF_CONFIG's replicas, else one process
        members = build_members(data, hp, train_files)
        start = start_from(base_model, list(members), MODEL_KIND, data, train_files, hp)
    model, history, seconds = train(data, hp, train_files, eval_files, members=members,
                                    epochs=start.epochs)
    if hp.ensemble > 1 or distribute.task():
        rmse = eval_rmse(model, data, eval_files)
        progress.step(f"ranking ensemble of {hp.ensemble}: eval RMSE {rmse:.4f}",
                      members=hp.ensemble, eval_rmse=rmse)
    else:  # Keras' val_rmse is exact (summed squared errors over the whole eval split)
        rmse = float(history.history["val_rmse"][-1])
    written = distribute.output_dir(serving_model_dir)
    metadata = export_model(model, data, written, training=Training.of(seconds, history, hp),
                            trainer_eval_rmse=rmse, start=start)
    distribute.discard(written, serving_model_dir)
    return metadata


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    config = fn_args.custom_config or {}
    train_and_export(
        train_files=fn_args.train_files,
        eval_files=fn_args.eval_files,
        transform_dir=fn_args.transform_output,
        catalogue_dir=fn_args.catalogue_uri,
        serving_model_dir=fn_args.serving_model_dir,
        hp=from_custom_config(RankingHParams, config["hparams"]),
        base_model=fn_args.base_model,
    )
