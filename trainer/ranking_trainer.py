"""Ranking Trainer: ``run_fn`` (the TFX adapter) over ``train_and_export`` (plain paths).

custom_config: ``hparams`` (``RankingHParams`` as a dict). The catalogue (movie features at
request time) comes from the Trainer's ``catalogue`` input (``fn_args.catalogue_uri``).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import tensorflow as tf

from recsys_pipeline.trainer import export, models
from recsys_pipeline.trainer.common import EpochProgress, TrainingData, load_training_data
from recsys_pipeline.trainer.hparams import RankingHParams, from_custom_config, to_custom_config

MODEL_KIND = "ranking"


def train(data: TrainingData, hp: RankingHParams, train_files: list[str],
          eval_files: list[str], callbacks: Sequence[tf.keras.callbacks.Callback] = ()):
    """Fits the rating model (eval RMSE per epoch); returns (model, history, seconds)."""
    model = models.build_ranking(data.sizes, hp, mean_rating=data.stats.mean_rating)
    started = time.monotonic()
    history = model.fit(data.dataset(train_files, hp.batch_size, shuffle=True, seed=hp.seed),
                        validation_data=data.dataset(eval_files, 8192),
                        epochs=hp.epochs, verbose=0,
                        callbacks=[EpochProgress("ranking", hp.epochs), *callbacks])
    return model, history, time.monotonic() - started


def export_model(model: models.RankingModel, data: TrainingData, path: str,
                 extra: dict[str, Any]) -> dict[str, Any]:
    """Saves the export of a trained rating model; returns its metadata."""
    module = export.RankingExport(
        model, export.ServingFeatures(data.tft_output, data.sizes, data.catalogue, data.stats))
    users = [u.decode() for u in sorted(data.stats.user_demographics)[:2]]
    movies = [m.decode() for m, _ in data.stats.popular(2)]
    metadata = {
        "kind": MODEL_KIND,
        "vocab_sizes": data.sizes,
        "train_examples": data.stats.num_examples,
        "mean_rating": data.stats.mean_rating,
        "warmup_inputs": {"user_id": [u for u in users for _ in movies],
                          "movie_id": movies * len(users)},
        **extra,
    }
    export.save(module, path, metadata)
    return metadata


def train_and_export(*, train_files: list[str], eval_files: list[str], transform_dir: str,
                     catalogue_dir: str, serving_model_dir: str,
                     hp: RankingHParams) -> dict[str, Any]:
    """Trains the rating model and saves its export; returns its metadata."""
    data = load_training_data(transform_dir, train_files, catalogue_dir)
    model, history, seconds = train(data, hp, train_files, eval_files)
    return export_model(model, data, serving_model_dir, extra={
        "train_seconds": round(seconds, 2), "final_loss": float(history.history["loss"][-1]),
        "trainer_eval_rmse": float(history.history["val_rmse"][-1]),
        "hparams": to_custom_config(hp)})


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
    )
